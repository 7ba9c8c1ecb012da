"""Project errors: every one names the file (or field) at fault and the reason, on one line."""

from __future__ import annotations

from pathlib import Path


class CXReaderError(Exception):
    """Base class of all errors cxreader reports to the user as one clear line."""


class DataError(CXReaderError):
    """A dataset file (CSV, split list, box list, report) that does not have the expected shape."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageReadError(DataError):
    """An image file that cannot be read: truncated, not an image, unsupported encoding, 3-D volume, ...

    The reason often quotes a decoder's exception, which can span lines and pages: it is collapsed to one line
    and cut at :attr:`MAX_REASON_CHARS`, so every message, log line and stored reason stays one line.
    """

    MAX_REASON_CHARS = 300

    def __init__(self, path: str | Path, reason: str):
        super().__init__(path, one_line(reason, self.MAX_REASON_CHARS))


class CheckpointError(CXReaderError):
    """A checkpoint that cannot be loaded: wrong labels, unknown layout, incompatible keys."""


class ConfigError(CXReaderError):
    """A configuration value that is missing or invalid."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` as one line: every run of whitespace (newlines included) one space, cut to at most ``limit``
    characters with a closing "…" where it was longer (a decoder's or a server's message can span pages)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def exception_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type and its message (:func:`one_line`)."""
    return f"{type(exc).__name__}: {one_line(exc, limit)}"
