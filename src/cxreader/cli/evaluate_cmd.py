"""``cxreader evaluate``: score a checkpoint on a split, or any model's predictions file."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxreader.cli import arguments
from cxreader.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="per-finding AUROC with 95%% bootstrap CIs, thresholds, sensitivity/specificity/F1, calibration "
        "(ECE, Brier), subgroups, ROC and reliability plots",
        description="Either --checkpoint CKPT --data DIR [--split test] (thresholds chosen on the validation "
        "split), or --predictions PREDS.csv --labels Data_Entry.csv (no model needed).",
    )
    arguments.add_checkpoint(parser, required=False)
    parser.add_argument(
        "--data", default="", help="dataset root (default: the one the checkpoint was trained on)"
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
    from cxreader.evaluation.folder import FOLDER_FILES, write_evaluation_folder
    from cxreader.evaluation.subgroups import parse_attributes

    by = parse_attributes(args.by) if args.by else ()
    if args.predictions:
        if not args.labels:
            raise ConfigError("--predictions needs --labels Data_Entry_2017_v2020.csv")
        from cxreader.evaluation.predictions_file import read_labelled_predictions
        from cxreader.evaluation.report import build_report
        from cxreader.evaluation.subgroups import subgroup_columns

        joined = read_labelled_predictions(args.predictions, args.labels)
        labels, probs = joined.labels, joined.probs
        report = build_report(
            labels,
            probs,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            metadata={"predictions": str(args.predictions), "labels": str(args.labels)},
            groups=subgroup_columns(joined.table, by) if by else None,
        )
        out_dir = Path(args.out) if args.out else None
        title = f"ROC: {Path(args.predictions).name}"
    elif args.checkpoint:
        from cxreader.evaluation.checkpoint_eval import evaluate_checkpoint

        report, predictions = evaluate_checkpoint(
            args.checkpoint,
            data=args.data,
            split=args.split,
            tencrop=args.tencrop,
            batch_size=args.batch_size,
            workers=args.workers,
            cache=args.cache,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            by=by,
            calibrated=not args.uncalibrated,
        )
        out_dir = (
            Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / f"eval-{args.split}"
        )
        labels, probs = predictions.labels, predictions.probs
        synthetic = " (SYNTHETIC data)" if report.metadata.get("synthetic") else ""
        title = f"ROC: {Path(args.checkpoint).name} on {args.split}{synthetic}"
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
