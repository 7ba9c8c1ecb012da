"""``cxreader data synth``: write a SYNTHETIC dataset in the NIH ChestX-ray14 layout, or in the CheXpert,
MIMIC-CXR-JPG or PadChest layout (``--layout``); phantoms, no patient data."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxreader.errors import ConfigError

#: The layouts ``--layout`` accepts (:data:`cxreader.synthetic.layouts.LAYOUTS`).
LAYOUTS = ("nih", "chexpert", "mimic", "padchest")


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "synth",
        help="write a SYNTHETIC dataset in the NIH ChestX-ray14 (or CheXpert, MIMIC-CXR-JPG, PadChest) layout",
        description="Draw synthetic chest X-ray phantoms with the 14 findings at known places and write them "
        "with Data_Entry_2017_v2020.csv, the split lists, BBox_List_2017.csv, synthetic_findings.csv (side, "
        "zone, organ, box, extent, size, severity of every finding) and SYNTHETIC_README.txt. With --layout "
        "chexpert, mimic or padchest the same phantoms are written in that dataset's published layout, with its "
        "tables and labels. Everything is synthetic and deterministic given the seed.",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="destination folder (new or empty)"
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="nih",
        help="'nih' (ChestX-ray14, default), 'chexpert' (train.csv, valid.csv, CheXpert-v1.0-small/), 'mimic' "
        "(the three mimic-cxr-2.0.0 tables, files/pNN/...), 'padchest' (the PadChest labels CSV, 16-bit PNGs)",
    )
    parser.add_argument(
        "--images", type=int, default=2000, metavar="N", help="number of images (default 2000)"
    )
    parser.add_argument(
        "--size", type=int, default=128, metavar="PX", help="image side in pixels (default 128)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of everything (default 0)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="W",
        help="processes drawing images (layout nih); the output does not depend on it",
    )
    parser.add_argument(
        "--positive-rate",
        type=float,
        default=None,
        metavar="R",
        help="overall rate of every finding, 0 < R <= 0.5 (layout nih; default: 12-16%% per finding, about "
        "35%% No Finding)",
    )
    parser.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    if args.layout != "nih":
        return run_layout(args)
    from cxreader.synthetic.dataset import generate_synthetic_dataset

    summary = generate_synthetic_dataset(
        args.out,
        images=args.images,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        positive_rate=args.positive_rate,
    )
    print(summary.describe())
    print(summary.out_dir.resolve())
    return 0


def run_layout(args: argparse.Namespace) -> int:
    """``--layout chexpert|mimic|padchest``: :func:`cxreader.synthetic.layouts.write_layout`."""
    if args.workers != 1 or args.positive_rate is not None:
        raise ConfigError(f"--workers and --positive-rate are for --layout nih, not {args.layout}")
    from cxreader.synthetic.layouts import write_layout

    out = write_layout(args.layout, args.out, images=args.images, size=args.size, seed=args.seed)
    print(
        f"SYNTHETIC dataset (not patient data) in the {args.layout} layout: {args.images} images of "
        f"{args.size}x{args.size} pixels, seed {args.seed}"
    )
    print(out.resolve())
    return 0
