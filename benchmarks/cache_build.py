"""Cache build throughput from 1024² PNGs: PIL full-size decode + resize (the baseline) vs ``build_cache``.

The 8 untouched 1024x1024 NIH PNGs of ``../shared/data/nih/images_1024/`` are repeated to ``--files`` (320)
files in a temporary folder (symbolic links: the same bytes, read from the page cache after the first pass,
as the real release would be on a warm disk; decoding, not I/O, is what is measured).

* baseline: the CheXNet reference loaders' way, in one process: ``Image.open(path)`` decoded at full size,
  converted to grey and resized to ``--size`` with Lanczos.
* new: :func:`cxreader.data.cache.build_cache` with ``--workers`` processes, writing the memory-mapped cache
  (libspng PNG decoding when ``pyspng`` is installed), and the same with Pillow decoding only, and with one
  worker, to show where the gain comes from.

Each variant runs ``--rounds`` times, interleaved; the medians are printed with their ratio to the baseline.

Run: ``python benchmarks/cache_build.py [--files 320] [--size 256] [--workers 2] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from _rounds import interleaved_rounds, print_ratio_table, repeat_as_links
from cxreader.data.cache import build_cache

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "nih" / "images_1024"


def pil_baseline(paths: list[Path], size: int) -> float:
    """Images/s decoding each PNG at full size with Pillow and resizing it, in this process."""
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    return len(paths) / (time.perf_counter() - started)


def cache_run(folder: Path, out: Path, size: int, workers: int, fast_png: bool) -> float:
    shutil.rmtree(out, ignore_errors=True)
    summary = build_cache(folder, out, size=size, workers=workers, fast_png=fast_png)
    if summary.missing:
        raise SystemExit(f"unexpected unreadable images: {summary.missing[:3]}")
    return summary.images_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of 1024² PNGs")
    parser.add_argument("--files", type=int, default=320)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sources = sorted(args.source.glob("*.png"))
    if not sources:
        raise SystemExit(f"no PNGs in {args.source}")
    print(
        f"# cache build, {datetime.date.today()}, {os.cpu_count()} cores visible, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(f"command: python benchmarks/cache_build.py {' '.join(argv or sys.argv[1:])}")
    with tempfile.TemporaryDirectory(prefix="cxreader-cache-bench-") as tmp:
        folder = Path(tmp) / "images"
        paths = repeat_as_links(sources, folder, args.files)
        pil_baseline(paths[: len(sources)], args.size)  # warm the page cache
        variants = {
            "PIL full-size decode + Lanczos resize, 1 process (baseline)": lambda: pil_baseline(
                paths, args.size
            ),
            f"build_cache, {args.workers} workers, libspng PNG path": lambda: cache_run(
                folder, Path(tmp) / "cache", args.size, args.workers, True
            ),
            f"build_cache, {args.workers} workers, Pillow only": lambda: cache_run(
                folder, Path(tmp) / "cache", args.size, args.workers, False
            ),
            "build_cache, 1 worker, libspng PNG path": lambda: cache_run(
                folder, Path(tmp) / "cache", args.size, 1, True
            ),
        }
        results = interleaved_rounds(variants, args.rounds)
    print(f"\n{args.files} files of 1024x1024 -> {args.size}x{args.size}, median of {args.rounds} rounds\n")
    print_ratio_table(results, label="path", digits=1, ratio_digits=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
