"""A preprocessing cache: every image decoded and resized once into one memory-mapped uint8 array.

Training CheXNet on ChestX-ray14 decodes 112,120 PNGs of 1024² pixels every epoch; decoding and resizing
costs far more CPU time than reading 256² bytes. ``build_cache`` pays that cost once.

Layout of a cache folder (why: a map-style dataset needs random access by index, because the training loop
shuffles globally with a ``DistributedSampler`` whose permutation must not depend on the number of processes;
raw rows of a memory-mapped array give that with no decoding at all, the operating system's page cache is
shared by every loader worker and DDP process of a node, and a row can be rewritten in place, which makes an
interrupted build resumable row by row. Sequential shard formats such as WebDataset need a shuffle buffer
instead of a global permutation, and compressed rows would bring the decoding cost back):

* ``images.u8``: raw ``uint8`` array of shape ``(N, S, S)`` in C order, row ``i`` = ``index.json``'s entry
  ``i``. 256² pixels take 64 KiB, so the whole release at 256 px is 7.3 GB.
* ``index.json``: format, version, ``size`` S, ``complete`` flag and one entry per image: ``name`` (the
  ChestX-ray14 ``Image Index``), ``source`` path, the source's ``mtime_ns`` and ``bytes`` when it was read,
  ``status`` (``ok``, ``missing`` or ``pending``) and, for a missing image, the ``reason`` it could not be read.
  Written atomically, at the start of a build and at its end.
* ``progress.jsonl``: the build's journal, present only while a build is unfinished. After each chunk of
  images, the pixel rows are flushed to disk (``fsync``) *before* one line recording their status is appended
  and flushed, so every row the journal names holds its pixels (write-ahead rule). A rerun replays the
  journal, ignores a half-written last line, and decodes only what is left.

Every row equals :func:`cxreader.data.io.read_image_uint8` of its source at ``size`` (a test compares them).
PNG files whose pixels need no conversion beyond Pillow's luma are decoded with libspng (``pyspng``) when it
is installed, which is faster than Pillow's decoder for the NIH files (benchmarks/BENCHMARKS.md); the result
then goes through exactly the same Pillow conversion and Lanczos resize, so the pixels are identical. Any
other file, or any failure of that fast path, goes through ``read_image_uint8`` itself.
"""

from __future__ import annotations

import datetime
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxreader import __version__
from cxreader.data.chestxray14 import ImageLocator, base_name, scan_files
from cxreader.data.io import REDUCING_GAP, gray_uint8, read_image_uint8
from cxreader.errors import DataError, ImageReadError
from cxreader.files import write_text_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "CacheBuildSummary",
    "CacheImageSource",
    "CacheIndex",
    "build_cache",
    "decode_for_cache",
    "list_image_files",
    "read_cache_index",
]

CACHE_FORMAT = "cxreader-cache"
CACHE_VERSION = 2  # 2: resized with reducing_gap 2 (version 1 used 3)
IMAGES_FILE = "images.u8"
INDEX_FILE = "index.json"
JOURNAL_FILE = "progress.jsonl"

#: File name endings the directory scan takes as images (case-insensitive); explicit path lists take any.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp", ".jp2", ".j2k", ".webp")

# PNG chunks whose presence leaves the pixel values Pillow decodes unchanged (Pillow applies neither gamma
# nor colour profiles); a file with any other chunk (eXIf orientation, tRNS, PLTE, APNG frames, ...) takes
# the reference path.
_FAST_PNG_CHUNKS = frozenset(
    {
        b"IHDR",
        b"IDAT",
        b"IEND",
        b"tIME",
        b"tEXt",
        b"zTXt",
        b"iTXt",
        b"pHYs",
        b"gAMA",
        b"sRGB",
        b"cHRM",
        b"iCCP",
    }
)
_FAST_PNG_COLOUR_TYPES = {0: "L", 2: "RGB", 6: "RGBA"}  # PNG colour type -> Pillow mode (8 bits per sample)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------------
# Decoding


def decode_for_cache(path: str | Path, size: int, *, fast_png: bool = True) -> np.ndarray:
    """The cache row of one image: equal to ``read_image_uint8(path, size=size)``.

    Args:
        size: Side of the square output.
        fast_png: Use libspng for plain 8-bit PNGs when ``pyspng`` is installed (same pixels, faster).

    Raises:
        ImageReadError: the file cannot be read (as :func:`~cxreader.data.io.read_image_uint8`).
    """
    if fast_png:
        try:
            raw = Path(path).read_bytes()
        except OSError:
            raw = b""  # the reference path reports the reason
        pixels = _fast_png_uint8(raw, size)
        if pixels is not None:
            return pixels
        if raw:
            return read_image_uint8(path, size=size, data=raw)
    return read_image_uint8(path, size=size)


def _fast_png_uint8(raw: bytes, size: int) -> np.ndarray | None:
    """libspng decode + Pillow's conversion and resize, or ``None`` when the file needs the reference path."""
    mode = _plain_png_mode(raw)
    if mode is None:
        return None
    try:
        import pyspng
    except ImportError:
        return None
    try:
        array = pyspng.load(raw)
    except Exception:  # a corrupt file: let the reference decoder name the reason
        return None
    height, width = array.shape[:2]
    limit = Image.MAX_IMAGE_PIXELS
    if width == 0 or height == 0 or (limit is not None and width * height > limit):
        return None
    return gray_uint8("", Image.fromarray(np.ascontiguousarray(array), mode=mode), size)


def _plain_png_mode(raw: bytes) -> str | None:
    """The Pillow mode of an 8-bit grey/RGB/RGBA PNG with only harmless chunks, else ``None``."""
    if not raw.startswith(_PNG_SIGNATURE) or raw[12:16] != b"IHDR" or len(raw) < 33:
        return None
    bit_depth, colour_type = raw[24], raw[25]
    mode = _FAST_PNG_COLOUR_TYPES.get(colour_type)
    if bit_depth != 8 or mode is None:
        return None
    position = 8
    while position + 8 <= len(raw):
        length = int.from_bytes(raw[position : position + 4], "big")
        kind = raw[position + 4 : position + 8]
        if kind not in _FAST_PNG_CHUNKS:
            return None
        if kind == b"IEND":
            return mode
        position += 12 + length
    return None  # no IEND: truncated, the reference path names it


# --------------------------------------------------------------------------------------------------------
# The index


@dataclass
class CacheIndex:
    """The parsed ``index.json`` of a cache folder (see the module docstring)."""

    folder: Path
    size: int
    entries: list[dict[str, Any]]
    complete: bool
    created: str = ""

    @property
    def count(self) -> int:
        return len(self.entries)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "size": self.size,
            "dtype": "uint8",
            "shape": [self.count, self.size, self.size],
            "images_file": IMAGES_FILE,
            "complete": self.complete,
            "created": self.created,
            "updated": _now(),
            "cxreader_version": __version__,
            "decoder": f"cxreader.data.io.read_image_uint8 (Lanczos, reducing_gap={REDUCING_GAP})",
            "entries": self.entries,
        }


def read_cache_index(folder: str | Path) -> CacheIndex:
    """Read and check a cache folder's ``index.json``.

    Raises:
        DataError: no cache there, not a cxreader cache, a newer format, or an images file of the wrong size.
    """
    folder = Path(folder)
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        raise DataError(
            folder, f"not a cxreader cache (no {INDEX_FILE}); build one with `cxreader data cache`"
        )
    try:
        payload = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(index_path, f"unreadable cache index ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise DataError(index_path, "not a cxreader cache index")
    version = int(payload.get("version", 0))
    if version != CACHE_VERSION:
        newer = "a newer" if version > CACHE_VERSION else "an older"
        raise DataError(
            index_path,
            f"written by {newer} cxreader (cache version {version}, this one reads {CACHE_VERSION}): its rows "
            "would differ from decoding the images now; rebuild it with `cxreader data cache --overwrite`",
        )
    try:
        size = int(payload["size"])
        entries = list(payload["entries"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(index_path, f"cache index without {exc}") from None
    images = folder / IMAGES_FILE
    expected = len(entries) * size * size
    actual = images.stat().st_size if images.is_file() else -1
    if actual != expected:
        found = "missing" if actual < 0 else f"{actual} bytes"
        raise DataError(images, f"cache images file is {found}; the index needs {expected} bytes")
    return CacheIndex(
        folder=folder,
        size=size,
        entries=entries,
        complete=bool(payload.get("complete", False)),
        created=str(payload.get("created", "")),
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------------
# Reading


class CacheImageSource:
    """An :class:`~cxreader.data.dataset.ImageSource` reading rows of a built cache.

    The memory map is opened lazily in each process and is not pickled, so DataLoader workers share the
    operating system's page cache instead of copying the array.

    Args:
        cache_dir: A folder written by :func:`build_cache`.
        names: Image names (``Image Index``; a directory prefix is ignored), in dataset order.
        expected_size: The side the caller needs (``load_size_for(image_size)``); refused when it differs.

    Raises:
        DataError: no complete cache there, another image size, or names absent from the cache.
    """

    def __init__(self, cache_dir: str | Path, names: Sequence[str], expected_size: int | None = None):
        index = read_cache_index(cache_dir)
        self.folder = index.folder
        if not index.complete:
            raise DataError(
                self.folder,
                "cache build is unfinished (interrupted?); run `cxreader data cache` again to complete it",
            )
        if expected_size is not None and index.size != expected_size:
            raise DataError(
                self.folder,
                f"cache holds {index.size}x{index.size} images but {expected_size}x{expected_size} are needed; "
                f"build one with `cxreader data cache --size {expected_size}`",
            )
        self.size = index.size
        self.count = index.count
        rows_by_name = {entry["name"]: row for row, entry in enumerate(index.entries)}
        self.names = [base_name(str(name)) for name in names]
        absent = [name for name in self.names if name not in rows_by_name]
        if absent:
            shown = ", ".join(absent[:3])
            raise DataError(
                self.folder,
                f"{len(absent)} image(s) are not in the cache (first: {shown}); rebuild it from the same data",
            )
        self.rows = np.array([rows_by_name[name] for name in self.names], dtype=np.int64)
        # Unreadable sources stay errors per sample (the dataset skips them and reports file and reason).
        self._unreadable = {
            row: (entry.get("source") or entry["name"], entry.get("reason") or "unreadable")
            for row, entry in enumerate(index.entries)
            if entry["status"] != "ok"
        }
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # reopened in the worker: never pickle the mapped array
        return state

    @property
    def images(self) -> np.ndarray:
        """The whole ``(N, S, S)`` array, memory-mapped read-only."""
        if self._images is None:
            self._images = np.memmap(
                self.folder / IMAGES_FILE, dtype=np.uint8, mode="r", shape=(self.count, self.size, self.size)
            )
        return self._images

    def load(self, index: int) -> np.ndarray:
        """The uint8 ``(S, S)`` image of dataset item ``index`` (a copy, safe to modify).

        Raises:
            ImageReadError: the source file could not be read when the cache was built.
        """
        row = int(self.rows[index])
        if row in self._unreadable:
            source, reason = self._unreadable[row]
            raise ImageReadError(source, f"{reason} (recorded by the cache build)")
        return np.array(self.images[row])

    def name(self, index: int) -> str:
        return self.names[index]


# --------------------------------------------------------------------------------------------------------
# Building


@dataclass
class CacheBuildSummary:
    """What one :func:`build_cache` call did."""

    out: Path
    size: int
    total: int
    decoded: int
    reused: int
    missing: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1

    @property
    def images_per_s(self) -> float:
        """Images decoded by this call per second of wall time."""
        return self.decoded / self.seconds if self.seconds > 0 else 0.0


def list_image_files(data: str | Path | Sequence[str | Path]) -> list[Path]:
    """The images a cache is built from: a ChestX-ray14 release, a folder of images, or explicit paths.

    A release (``images/`` or ``images_001/images/ …``) is listed through its layout; another folder gives
    its files ending in :data:`IMAGE_SUFFIXES`. The result is sorted by file name.

    Raises:
        DataError: the folder does not exist, holds no images, or two paths share a file name.
    """
    if isinstance(data, (str, Path)):
        root = Path(data)
        if not root.is_dir():
            raise DataError(root, "not a directory")
        locator = ImageLocator(root)
        files = locator.files if locator.directories else scan_files([root])
        paths = {name: path for name, path in files.items() if name.lower().endswith(IMAGE_SUFFIXES)}
        if not paths:
            raise DataError(root, f"no image files ({', '.join(IMAGE_SUFFIXES)}) found")
        return [paths[name] for name in sorted(paths)]
    listed = [Path(path) for path in data]
    seen: dict[str, Path] = {}
    for path in listed:
        if path.name in seen:
            raise DataError(path, f"two images share the name {path.name!r} (also {seen[path.name]})")
        seen[path.name] = path
    return sorted(listed, key=lambda path: path.name)


def build_cache(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    size: int = 256,
    workers: int | None = None,
    chunk_size: int = 256,
    fast_png: bool = True,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CacheBuildSummary:
    """Decode and resize every image once into a memory-mapped uint8 cache (see the module docstring).

    Resumable: run it again after an interruption and it decodes only the images not yet committed; run it
    on a finished cache and it re-decodes only the sources whose size or modification time changed. An
    unreadable image is logged, recorded in the index as ``missing`` with its reason, and skipped.

    Args:
        data: A ChestX-ray14 release folder, a folder of images, or a list of image paths.
        out: The cache folder (created).
        size: Side of the stored square images (256 for a 224-pixel network, as CheXNet's loaders).
        workers: Decoding processes (default: all CPU cores; 0 or 1 decodes in this process).
        chunk_size: Images per commit to disk (the most work an interruption can lose).
        fast_png: Decode plain 8-bit PNGs with libspng when installed (identical pixels, faster).
        overwrite: Start afresh when ``out`` holds a cache of other images or another size.
        progress: Called as ``progress(done, total)`` after every commit.

    Raises:
        DataError: no images, an existing cache of other images or another size (without ``overwrite``), or
            an output folder that cannot be written.
        ValueError: ``size``, ``workers`` or ``chunk_size`` out of range.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    started = time.perf_counter()
    out = Path(out)
    sources = list_image_files(data)
    try:
        out.mkdir(parents=True, exist_ok=True)
        index = _open_or_start(out, sources, size, overwrite=overwrite)
    except OSError as exc:
        raise DataError(out, f"cannot write the cache ({exc.strerror or exc})") from None

    todo = [row for row, entry in enumerate(index.entries) if entry["status"] == "pending"]
    reused = index.count - len(todo)
    if todo:
        logger.info(
            "caching %d image(s) at %dx%d in %s (%d already done)", len(todo), size, size, out, reused
        )
        if index.complete:
            index.complete = False  # rows are about to change: readers must not trust the cache until the end
            _write_index(index)
    done = 0
    journal_path = out / JOURNAL_FILE
    with (
        open(out / IMAGES_FILE, "r+b") as images_file,
        open(journal_path, "a", encoding="utf-8") as journal,
    ):
        pending_results: list[list[Any]] = []

        def commit() -> None:
            nonlocal done
            if not pending_results:
                return
            os.fsync(images_file.fileno())  # pixels first: the journal only names rows already on disk
            journal.write(json.dumps({"rows": pending_results}) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
            for row, status, reason, mtime_ns, n_bytes in pending_results:
                index.entries[row].update(status=status, reason=reason, mtime_ns=mtime_ns, bytes=n_bytes)
                if status == "missing":
                    logger.warning("skipped %s: %s", index.entries[row]["source"], reason)
            done += len(pending_results)
            pending_results.clear()
            if progress is not None:
                progress(done, len(todo))

        tasks = [(row, index.entries[row]["source"]) for row in todo]
        for result in _decode_rows(tasks, out / IMAGES_FILE, index.count, size, workers, fast_png):
            pending_results.append(result)
            if len(pending_results) >= chunk_size:
                commit()
        commit()

    index.complete = True
    _write_index(index)
    journal_path.unlink(missing_ok=True)
    missing = [
        (entry["name"], entry["reason"] or "") for entry in index.entries if entry["status"] == "missing"
    ]
    return CacheBuildSummary(
        out=out,
        size=size,
        total=index.count,
        decoded=done,
        reused=reused,
        missing=missing,
        seconds=time.perf_counter() - started,
        workers=max(1, workers),
    )


def _open_or_start(out: Path, sources: list[Path], size: int, *, overwrite: bool) -> CacheIndex:
    """The index to continue: the existing one with its journal replayed, or a fresh one."""
    names = [path.name for path in sources]
    if (out / INDEX_FILE).is_file() and not overwrite:
        index = read_cache_index(out)
        if index.size != size:
            raise DataError(
                out,
                f"holds a {index.size}x{index.size} cache; pass --overwrite to rebuild it at {size}x{size}, "
                "or choose another --out",
            )
        if [entry["name"] for entry in index.entries] != names:
            old = {entry["name"] for entry in index.entries}
            new, gone = sorted(set(names) - old), sorted(old - set(names))
            example = f"new: {new[0]}" if new else f"no longer present: {gone[0]}" if gone else "other order"
            raise DataError(
                out,
                f"holds a cache of other images ({index.count} cached, {len(names)} now; {example}); "
                "pass --overwrite to rebuild it, or choose another --out",
            )
        _replay_journal(out / JOURNAL_FILE, index)
        for entry, path in zip(index.entries, sources, strict=True):
            entry["source"] = str(path)
            if entry["status"] != "pending" and (entry.get("mtime_ns"), entry.get("bytes")) != _stat(path):
                entry.update(status="pending", reason=None)  # the file changed since it was cached
        return index

    (out / JOURNAL_FILE).unlink(missing_ok=True)
    images = out / IMAGES_FILE
    with open(images, "wb") as handle:
        handle.truncate(len(sources) * size * size)  # sparse: blocks are allocated as rows are written
    entries = [
        {
            "name": path.name,
            "source": str(path),
            "mtime_ns": None,
            "bytes": None,
            "status": "pending",
            "reason": None,
        }
        for path in sources
    ]
    index = CacheIndex(folder=out, size=size, entries=entries, complete=False, created=_now())
    _write_index(index)
    return index


def _replay_journal(path: Path, index: CacheIndex) -> None:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                rows = json.loads(line)["rows"]
            except (ValueError, KeyError, TypeError):
                break  # a line cut by the interruption, and nothing after it was committed
            for row, status, reason, mtime_ns, n_bytes in rows:
                if 0 <= row < index.count:
                    index.entries[row].update(status=status, reason=reason, mtime_ns=mtime_ns, bytes=n_bytes)


def _write_index(index: CacheIndex) -> None:
    write_text_atomic(index.folder / INDEX_FILE, json.dumps(index.to_json(), separators=(",", ":")) + "\n")


def _stat(path: str | Path) -> tuple[int | None, int | None]:
    try:
        info = os.stat(path)
    except OSError:
        return None, None
    return info.st_mtime_ns, info.st_size


# Per-process state of the decoding workers: the mapped output array and the settings.
_WORKER: dict[str, Any] = {}


def _init_worker(images_path: str, count: int, size: int, fast_png: bool, in_pool: bool = False) -> None:
    if in_pool:
        # Ctrl-C is the parent's to handle (it stops the pool); workers must not print their own tracebacks.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["images"] = np.memmap(images_path, dtype=np.uint8, mode="r+", shape=(count, size, size))
    _WORKER["size"] = size
    _WORKER["fast_png"] = fast_png


def _decode_row(task: tuple[int, str]) -> list[Any]:
    """Decode one source into its row; ``[row, status, reason, mtime_ns, bytes]``."""
    row, source = task
    # Stat before reading: a file replaced during the read is then seen as changed by the next build.
    mtime_ns, n_bytes = _stat(source)
    try:
        pixels = decode_for_cache(source, _WORKER["size"], fast_png=_WORKER["fast_png"])
    except ImageReadError as exc:
        return [row, "missing", exc.reason, mtime_ns, n_bytes]
    _WORKER["images"][row] = pixels
    return [row, "ok", None, mtime_ns, n_bytes]


def _decode_rows(
    tasks: list[tuple[int, str]], images_path: Path, count: int, size: int, workers: int, fast_png: bool
) -> Iterator[list[Any]]:
    """Results in completion order; with ``workers`` > 1 a process pool decodes (Pillow holds the GIL)."""
    if not tasks:
        return
    init_args = (str(images_path), count, size, fast_png)
    if workers <= 1:
        _init_worker(*init_args)
        try:
            for task in tasks:
                yield _decode_row(task)
            _WORKER["images"].flush()
        finally:
            _WORKER.clear()
        return
    with multiprocessing.get_context().Pool(
        workers, initializer=_init_worker, initargs=(*init_args, True)
    ) as pool:
        yield from pool.imap_unordered(_decode_row, tasks, chunksize=4)
