"""``cxreader evaluate``: score a checkpoint on a split, or any model's predictions file.

``--data DIR`` (or none) scores a checkpoint on its NIH split as always; ``--data NAME=DIR`` repeated scores it
dataset by dataset and over all of them; several ``--checkpoint`` with ``--cross-table`` print the matrix
"trained on × scored on" of mean AUROC over the shared findings (:mod:`cxreader.evaluation.cross_dataset`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cxreader.cli import arguments
from cxreader.errors import ConfigError
from cxreader.files import write_text_atomic


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="per-finding AUROC with 95%% bootstrap CIs, thresholds, sensitivity/specificity/F1, calibration "
        "(ECE, Brier), subgroups, ROC and reliability plots",
        description="Either --checkpoint CKPT --data DIR [--split test] (thresholds chosen on the validation "
        "split), or --predictions PREDS.csv --labels Data_Entry.csv (no model needed). With --data NAME=DIR "
        "repeated (nih, chexpert, mimic, padchest) the checkpoint is scored per dataset and overall; with "
        "several --checkpoint and --cross-table, each is scored on each dataset (a matrix of mean AUROC).",
    )
    arguments.add_checkpoint(
        parser,
        required=False,
        action="append",
        help=arguments.CHECKPOINT_HELP + "; repeat it with --cross-table",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="DIR | NAME=DIR",
        help="dataset root (default: the one(s) the checkpoint was trained on); or, repeated, NAME=DIR per "
        "dataset (nih, chexpert, mimic, padchest) to score on each of them",
    )
    parser.add_argument(
        "--cross-table",
        action="store_true",
        help="score every --checkpoint on every --data NAME=DIR dataset; print the Markdown matrix 'trained on "
        "x scored on' of mean AUROC over the findings each dataset shares with all the checkpoints",
    )
    parser.add_argument("--split", default="test", help="train | val | test (default test)")
    parser.add_argument(
        "--cache", default="", help="preprocessing cache folder to read instead of image files"
    )
    parser.add_argument(
        "--tencrop", action="store_true", help="average ten crops per image (CheXNet's test-time)"
    )
    parser.add_argument("--predictions", help="a predictions CSV: Image Index + 14 probability columns")
    parser.add_argument("--labels", help="Data_Entry_2017[_v2020].csv(.gz) with the true labels")
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the report as JSON here")
    parser.add_argument(
        "--by",
        metavar="ATTRS",
        help="also report AUROC by subgroup, from the Data_Entry table: a comma-separated list of sex "
        "(M/F), age (<40, 40-59, >=60) and view (PA/AP), e.g. --by sex,age,view",
    )
    parser.add_argument(
        "--out",
        help="folder for report.md, report.json, roc.png and reliability.png (checkpoint mode: "
        "default next to the checkpoint, eval-SPLIT/)",
    )
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="score the model's raw sigmoid outputs, not the calibrated probabilities the checkpoint's "
        "calibration gives (checkpoint mode)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    arguments.add_batch_size(parser, 32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from cxreader.evaluation.datasets import parse_dataset_roots
    from cxreader.evaluation.folder import FOLDER_FILES, write_evaluation_folder
    from cxreader.evaluation.subgroups import parse_attributes

    by = parse_attributes(args.by) if args.by else ()
    checkpoints = args.checkpoint or []
    data, datasets = parse_dataset_roots(args.data)
    if args.cross_table:
        return run_cross_table(args, checkpoints, datasets or ({"nih": data} if data else {}))
    if len(checkpoints) > 1:
        raise ConfigError("several --checkpoint are scored together with --cross-table")
    if args.predictions:
        report, labels, probs, out_dir, title = _evaluate_predictions(args, by)
    elif checkpoints:
        from cxreader.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoints[0])
        # No --data: the dataset(s) the checkpoint trained on.
        datasets = datasets or ({} if data else dict(loaded.contract.config.get("datasets") or {}))
        if datasets:
            return run_on_datasets(args, loaded, datasets)
        report, labels, probs, out_dir, title = _evaluate_checkpoint(args, loaded, data, by)
    else:
        raise ConfigError("give --checkpoint CKPT (with --data) or --predictions PREDS --labels CSV")

    print(report.to_markdown())  # ends with the disclaimer (and a SYNTHETIC banner where it applies)
    if args.json_out:
        report.write_json(args.json_out)
        print(f"JSON report: {args.json_out}")
    if out_dir is not None:
        write_evaluation_folder(report, labels, probs, out_dir, title=title)
        print(f"{', '.join(FOLDER_FILES)} in {out_dir}")
    return 0


def _evaluate_predictions(args: argparse.Namespace, by: tuple[str, ...]):
    """A predictions CSV against the Data_Entry labels: (report, labels, probs, folder or None, ROC title)."""
    if not args.labels:
        raise ConfigError("--predictions needs --labels Data_Entry_2017_v2020.csv")
    from cxreader.evaluation.predictions_file import read_labelled_predictions
    from cxreader.evaluation.report import build_report
    from cxreader.evaluation.subgroups import subgroup_columns

    joined = read_labelled_predictions(args.predictions, args.labels)
    report = build_report(
        joined.labels,
        joined.probs,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        metadata={"predictions": str(args.predictions), "labels": str(args.labels)},
        groups=subgroup_columns(joined.table, by) if by else None,
    )
    out_dir = Path(args.out) if args.out else None
    return report, joined.labels, joined.probs, out_dir, f"ROC: {Path(args.predictions).name}"


def _evaluate_checkpoint(args: argparse.Namespace, loaded, data: str, by: tuple[str, ...]):
    """One checkpoint on its NIH split: (report, labels, probs, folder, ROC title)."""
    from cxreader.evaluation.checkpoint_eval import evaluate_checkpoint

    options = dataclasses.asdict(_scoring_options(args))
    report, predictions = evaluate_checkpoint(loaded, data=data, by=by, **options)
    synthetic = " (SYNTHETIC data)" if report.metadata.get("synthetic") else ""
    title = f"ROC: {loaded.path.name} on {args.split}{synthetic}"
    return report, predictions.labels, predictions.probs, _out_dir(args, str(loaded.path)), title


def _out_dir(args: argparse.Namespace, checkpoint: str) -> Path:
    """``--out``, else ``eval-SPLIT/`` beside the checkpoint."""
    return Path(args.out) if args.out else Path(checkpoint).resolve().parent / f"eval-{args.split}"


def _scoring_options(args: argparse.Namespace):
    from cxreader.evaluation.cross_dataset import ScoringOptions

    return ScoringOptions(
        split=args.split,
        tencrop=args.tencrop,
        batch_size=args.batch_size,
        workers=args.workers,
        cache=args.cache,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        calibrated=not args.uncalibrated,
    )


def run_on_datasets(args: argparse.Namespace, loaded, datasets: dict[str, str]) -> int:
    """One checkpoint scored per dataset and over all of them; each dataset's folder under the output."""
    from cxreader.evaluation.cross_dataset import evaluate_on_datasets
    from cxreader.evaluation.folder import FOLDER_FILES, write_evaluation_folder

    if args.by:
        raise ConfigError(
            "--by reads the NIH Data_Entry table: score one NIH root (--data DIR) for subgroups"
        )
    report, scores = evaluate_on_datasets(loaded, datasets, _scoring_options(args))
    print(report.to_markdown())
    if args.json_out:
        report.write_json(args.json_out)
        print(f"JSON report: {args.json_out}")
    out_dir = _out_dir(args, str(loaded.path))
    synthetic = " (SYNTHETIC data)" if report.synthetic else ""
    for name, score in scores.items():
        title = f"ROC: {loaded.path.name} on {name} {args.split}{synthetic}"
        predictions = score.evaluated
        dataset_report = report.per_dataset[name]
        write_evaluation_folder(
            dataset_report, predictions.labels, predictions.probs, out_dir / name, title=title
        )
    report.write_json(out_dir / "report.json")
    write_text_atomic(out_dir / "report.md", report.to_markdown() + "\n")
    print(
        f"report.md, report.json in {out_dir}; {', '.join(FOLDER_FILES)} in {out_dir}/{{{','.join(scores)}}}"
    )
    return 0


def run_cross_table(args: argparse.Namespace, checkpoints: list[str], datasets: dict[str, str]) -> int:
    """Every checkpoint on every dataset: the Markdown matrix (and ``--json OUT``)."""
    from cxreader.evaluation.cross_dataset import cross_dataset_table

    if not checkpoints or not datasets:
        raise ConfigError(
            "--cross-table needs --checkpoint CKPT (one or more) and --data NAME=DIR (one or more)"
        )
    if args.predictions or args.by:
        raise ConfigError("--cross-table scores checkpoints; leave out --predictions and --by")
    table = cross_dataset_table(checkpoints, datasets, _scoring_options(args))
    print(table.to_markdown())
    if args.json_out:
        table.write_json(args.json_out)
        print(f"JSON table: {args.json_out}")
    return 0
