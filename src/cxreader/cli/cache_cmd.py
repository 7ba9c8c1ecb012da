"""``cxreader data cache``: decode and resize a whole image release once into a memory-mapped uint8 cache.

Training and evaluation then read the cache (``--cache DIR``) instead of decoding PNGs every epoch. The
build runs on all cores, commits its progress every chunk, and resumes where it stopped when run again.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "cache",
        help="decode and resize every image once into a uint8 cache for training and evaluation",
        description="Decode every image of DIR (a ChestX-ray14 release with images/ or images_0NN/images/, "
        "or a plain folder of images) once, resize it to SIZExSIZE exactly as reading the file would, and "
        "store the rows in one memory-mapped array with an index. Unreadable images are reported and "
        "listed in the index as missing. An interrupted build continues when run again.",
    )
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="images to cache")
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="side of the stored images (default 256, the load size of a 224-pixel network)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: all CPU cores)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="cache folder (default DIR/cache_SIZE)"
    )
    parser.add_argument("--chunk", type=int, default=256, help="images per commit to disk (default 256)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild when the folder holds a cache of other images or another size",
    )
    parser.add_argument(
        "--no-fast-png",
        dest="fast_png",
        action="store_false",
        help="decode PNGs with Pillow only (the fast libspng path gives identical pixels)",
    )
    parser.set_defaults(func=run_cache)


def run_cache(args: argparse.Namespace) -> int:
    from cxreader.data.cache import build_cache
    from cxreader.progress import Progress

    out = args.out if args.out is not None else args.data / f"cache_{args.size}"
    try:
        with Progress(None, desc="caching", unit="img", leave=False) as bar:
            summary = build_cache(
                args.data,
                out,
                size=args.size,
                workers=args.workers,
                chunk_size=args.chunk,
                fast_png=args.fast_png,
                overwrite=args.overwrite,
                progress=bar.advance_to,
            )
    except ValueError as exc:
        from cxreader.errors import ConfigError

        raise ConfigError(str(exc)) from None
    ok = summary.total - len(summary.missing)
    print(
        f"cache {summary.out}: {ok} of {summary.total} images at {summary.size}x{summary.size} "
        f"({summary.decoded} decoded now, {summary.reused} kept from before)"
    )
    if summary.decoded:
        print(
            f"  {summary.decoded} images in {summary.seconds:.1f} s = {summary.images_per_s:.0f} images/s "
            f"with {summary.workers} worker(s)"
        )
    if summary.missing:
        print(
            f"  {len(summary.missing)} unreadable image(s), listed as missing in {summary.out / 'index.json'}:"
        )
        for name, reason in summary.missing[:10]:
            print(f"    {name}: {reason}")
        if len(summary.missing) > 10:
            print(f"    ... and {len(summary.missing) - 10} more")
    print(f"  use it with: cxreader train --cache {summary.out} ... (images resized to {summary.size} px)")
    return 0
