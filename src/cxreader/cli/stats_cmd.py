"""``cxreader data stats``: images, patients and finding prevalence of each ChestX-ray14 split.

The table has the layout of the CheXNet reference implementation's "Table 1" (Rajpurkar et al., 2017):
one row per finding, one column per split, the percentage of positive images with one decimal; the image and
patient counts and the patient overlap between splits (0 for a patient-level split) follow. Only the tables
are read, never the images.

``--dataset chexpert|mimic|padchest`` reads another hospital's label table instead (CheXpert, Irvin et al. 2019;
MIMIC-CXR-JPG, Johnson et al. 2019; PadChest, Bustos et al. 2020) and prints, per split, the images, patients,
frontal images and, per label, the positive / negative / uncertain / unmentioned counts and percentages.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from cxreader.cli import arguments
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS, display_name

#: The datasets whose tables ``data stats`` reads.
DATASETS = ("nih", "chexpert", "mimic", "padchest")


def register_data(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "stats",
        help="images, patients and finding percentages per split",
        description="Print the finding percentages of each split (train %%, val %%, test %%), the image and "
        "patient counts and the patient overlap between splits. Reads only the tables, not the images.",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="nih",
        help="whose tables: 'nih' (ChestX-ray14, default), 'chexpert' (train.csv / valid.csv), 'mimic' "
        "(MIMIC-CXR-JPG chexpert, metadata and split tables), 'padchest' (the PadChest labels CSV)",
    )
    parser.add_argument(
        "--csv",
        action="append",
        type=Path,
        metavar="FILE",
        help="one label table instead of --data: nih Data_Entry CSV; chexpert train.csv or valid.csv "
        "(repeatable); mimic mimic-cxr-2.0.0-chexpert.csv[.gz] (metadata and split tables beside it); "
        "padchest the labels CSV",
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
    arguments.add_split_lists(
        parser,
        "a split given by a list file (official or CheXNet format); repeat for train, val, test",
        dest="lists",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    if args.dataset != "nih":
        return run_label_stats(args)
    csvs = args.csv or []
    if len(csvs) > 1:
        raise ConfigError("--dataset nih takes one --csv (the Data_Entry table)")
    lists: dict[str, Path] = {}
    for name, path in args.lists or []:
        if name in lists:
            raise ConfigError(f"--list {name}= given twice")
        lists[name] = Path(path)
    if args.split and lists:
        raise ConfigError("give either --split or --list, not both")
    if not lists and args.data is None and not csvs:
        raise ConfigError("give --data DIR (the ChestX-ray14 tables) or --list NAME=FILE for each split")
    from cxreader.data.chestxray14 import load_splits, split_statistics

    data_entry = csvs[0] if csvs else None
    splits = load_splits(args.data, split=args.split, lists=lists, seed=args.seed, data_entry=data_entry)
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


# --- CheXpert, MIMIC-CXR-JPG, PadChest ----------------------------------------------------------------------


def run_label_stats(args: argparse.Namespace) -> int:
    """``data stats --dataset chexpert|mimic|padchest``: per-split label counts of that dataset's tables."""
    if args.split or args.lists:
        raise ConfigError(f"--split and --list are for --dataset nih, not {args.dataset}")
    csvs = args.csv or []
    if (args.data is None) == (not csvs):
        raise ConfigError(f"--dataset {args.dataset}: give either --data DIR or --csv FILE")
    if args.dataset != "chexpert" and len(csvs) > 1:
        raise ConfigError(f"--dataset {args.dataset} takes one --csv")
    summaries, malformed = _label_summaries(args.dataset, args.data, csvs)
    if malformed:
        print(
            f"cxreader: note: {malformed} row(s) with a malformed Labels cell, counted as unmentioned",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(label_stats_json(args.dataset, summaries), indent=2))
    else:
        print(format_label_stats(args.dataset, summaries))
    return 0


def _label_summaries(dataset: str, root: Path | None, csvs: list[Path]) -> tuple[dict, int]:
    """The :class:`~cxreader.data.label_stats.SplitSummary` of each split and the malformed-row count."""
    if dataset == "chexpert":
        from cxreader.data.chexpert import chexpert_summaries, find_chexpert_tables

        return chexpert_summaries(csvs or find_chexpert_tables(root)), 0
    if dataset == "mimic":
        from cxreader.data.mimic import mimic_summaries, read_mimic_labels_file, read_mimic_root

        frame = read_mimic_labels_file(csvs[0]) if csvs else read_mimic_root(root)
        return mimic_summaries(frame), 0
    from cxreader.data.padchest import find_padchest_table, malformed_count, padchest_summaries, read_padchest

    frame = read_padchest(csvs[0] if csvs else find_padchest_table(root))
    return padchest_summaries(frame), malformed_count(frame)


def _percent(count: int, total: int) -> float | None:
    return None if total == 0 else round(100.0 * count / total, 1)


def label_stats_json(dataset: str, summaries: dict) -> dict:
    """``{"dataset", "splits": {split: {"images", "patients", "frontal", "views", "labels": {label: counts}}}}``.

    Each label has ``positive``, ``negative``, ``uncertain`` and ``unmentioned`` counts, plus the same four as
    percentages of the split's images (one decimal) under ``<kind>_percent``.
    """
    from cxreader.data.label_stats import COUNT_KINDS

    return {
        "dataset": dataset,
        "splits": {
            name: {
                "images": item.images,
                "patients": item.patients,
                "frontal": item.frontal,
                "views": item.views,
                "labels": {
                    label: {
                        **{kind: getattr(counts, kind) for kind in COUNT_KINDS},
                        **{
                            f"{kind}_percent": _percent(getattr(counts, kind), item.images)
                            for kind in COUNT_KINDS
                        },
                    }
                    for label, counts in item.labels.items()
                },
            }
            for name, item in summaries.items()
        },
    }


def format_label_stats(dataset: str, summaries: dict) -> str:
    """Plain text: per split a line of counts, then one row per label with its four counts and percentages."""
    from cxreader.data.label_stats import COUNT_KINDS

    blocks = []
    for name, item in summaries.items():
        lines = [
            f"{dataset} {name}: {item.images} images, {item.patients} patients, {item.frontal} frontal",
        ]
        if item.views:
            lines.append(
                "views: " + ", ".join(f"{view or '(none)'} {count}" for view, count in item.views.items())
            )
        width = max([len("label"), *(len(label) for label in item.labels)])
        lines.append(f"{'label':<{width}}" + "".join(f"  {kind:>18}" for kind in COUNT_KINDS))
        for label, counts in item.labels.items():
            cells = []
            for kind in COUNT_KINDS:
                value = getattr(counts, kind)
                percent = _percent(value, item.images)
                cells.append(f"{value} ({'n/a' if percent is None else f'{percent:.1f}%'})")
            lines.append(f"{label:<{width}}" + "".join(f"  {cell:>18}" for cell in cells))
        blocks.append("\n".join(lines))
    if dataset == "padchest":
        blocks.append(
            "PadChest lists only the findings a report mentions: negative and uncertain are always 0."
        )
    return "\n\n".join(blocks)
