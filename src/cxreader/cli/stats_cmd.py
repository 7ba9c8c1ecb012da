"""``cxreader data stats``: images, patients and finding prevalence of each ChestX-ray14 split.

The table has the layout of the CheXNet reference implementation's "Table 1" (Rajpurkar et al., 2017):
one row per finding, one column per split, the percentage of positive images with one decimal; the image and
patient counts and the patient overlap between splits (0 for a patient-level split) follow. Only the tables
are read, never the images.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from cxreader.cli import arguments
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS, display_name


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "stats",
        help="images, patients and finding percentages per split",
        description="Print the finding percentages of each split (train %%, val %%, test %%), the image and "
        "patient counts and the patient overlap between splits. Reads only the tables, not the images.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="ChestX-ray14 root holding Data_Entry_2017[_v2020].csv[.gz] (and the official lists); images "
        "are not needed",
    )
    parser.add_argument(
        "--split",
        choices=("random", "official"),  # chestxray14.SPLIT_METHODS, less 'lists' (given by --list)
        help="'random': seeded 70/10/20 patient split of the table (default without --list); 'official': "
        "NIH test_list.txt, train/val carved by patient from train_val_list.txt",
    )
    parser.add_argument(
        "--list",
        dest="lists",
        action="append",
        type=arguments.name_value,
        metavar="NAME=FILE",
        help="a split given by a list file (official or CheXNet format); repeat for train, val, test",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    lists: dict[str, Path] = {}
    for name, path in args.lists or []:
        if name in lists:
            raise ConfigError(f"--list {name}= given twice")
        lists[name] = Path(path)
    if args.split and lists:
        raise ConfigError("give either --split or --list, not both")
    if not lists and args.data is None:
        raise ConfigError("give --data DIR (the ChestX-ray14 tables) or --list NAME=FILE for each split")
    from cxreader.data.chestxray14 import load_splits, split_statistics

    splits = load_splits(args.data, split=args.split, lists=lists, seed=args.seed)
    stats = split_statistics(splits)
    if args.json:
        print(json.dumps(stats_json(stats), indent=2))
    else:
        print(format_stats_table(stats))
    return 0


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def stats_json(stats: dict) -> dict:
    """The JSON form of :func:`~cxreader.data.chestxray14.split_statistics`, percentages to one decimal.

    Returns:
        ``{"splits": {name: {"images", "patients", "percent": {finding: %}}}, "patient_overlap": {...}}``;
        a percentage that cannot be computed (no known label) is ``None``.
    """
    return {
        "splits": {
            name: {
                "images": item.images,
                "patients": item.patients,
                "percent": {finding: _rounded(item.percent[finding]) for finding in FINDINGS},
            }
            for name, item in stats["splits"].items()
        },
        "patient_overlap": dict(stats["patient_overlap"]),
    }


def format_stats_table(stats: dict) -> str:
    """Plain-text table: findings × splits in percent (one decimal), then counts and the overlap line."""
    splits = stats["splits"]
    names = list(splits)
    label_width = max(len("patients"), *(len(display_name(finding)) for finding in FINDINGS))
    width = max(
        8, *(len(f"{name} %") for name in names), *(len(str(item.images)) for item in splits.values())
    )

    def row(label: str, cells: list[str]) -> str:
        return f"{label:<{label_width}}" + "".join(f"  {cell:>{width}}" for cell in cells)

    lines = [row("finding", [f"{name} %" for name in names])]
    lines.append("-" * len(lines[0]))
    for finding in FINDINGS:
        values = [splits[name].percent[finding] for name in names]
        lines.append(row(display_name(finding), ["n/a" if math.isnan(v) else f"{v:.1f}" for v in values]))
    lines.append("-" * len(lines[0]))
    lines.append(row("images", [str(splits[name].images) for name in names]))
    lines.append(row("patients", [str(splits[name].patients) for name in names]))
    overlap = stats["patient_overlap"]
    if overlap:
        text = ", ".join(f"{pair} {count}" for pair, count in overlap.items())
        verdict = "no patient in two splits" if not any(overlap.values()) else "WARNING: patients shared"
        lines.append(f"patient overlap: {text} ({verdict})")
    return "\n".join(lines)
