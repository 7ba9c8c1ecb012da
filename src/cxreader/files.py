"""Files written whole or not at all, and content digests.

Every file cxreader writes for someone else to read (checkpoints, reports, plots, caches' side files, heatmap
PNGs, exported models, synthetic datasets) goes through :func:`atomic_write`: the bytes go to a temporary file
in the same folder, are flushed to disk, and the temporary file is renamed over the target with ``os.replace``.
A reader sees the old file or the whole new one; an interrupted write leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Open a binary stream whose contents replace ``path`` only when the block ends without an error.

    Args:
        path: The target file; its folder is created when missing. The finished file is readable by all
            (0644, where ``mkstemp`` would leave 0600): results are meant to be shared.
        durable: fsync before the rename; False only for bulk files that can be made again (synthetic images).

    Yields:
        A binary file object to write to (``torch.save``, ``savefig`` and ``onnx.save`` accept it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` with :func:`atomic_write`; returns the path."""
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` with :func:`atomic_write`; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    """The hexadecimal SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The hexadecimal SHA-256 of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def printable_path(path: str | Path) -> str:
    """A path as text that every database, log and terminal accepts.

    File names are bytes on POSIX; one that is not valid UTF-8 reaches Python with surrogate escapes, which no
    UTF-8 encoder (PostgreSQL, SQLite, a terminal) accepts. Such bytes are written as ``\\xNN`` escapes.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string beginning with ``= + - @``, tab or carriage return
    gets a leading single quote (OWASP's rule against CSV injection); other values are returned unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
