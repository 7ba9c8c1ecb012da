"""``cxreader calibrate``: give an existing checkpoint a calibration, an operating point and an OOD detector."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxreader.cli import arguments
from cxreader.errors import ConfigError

#: ``--split-from`` choices: the checkpoint's own split settings, or one of the split methods of ``train``.
SPLIT_SOURCES = ("checkpoint", "random", "official", "lists")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit calibration, operating point and out-of-distribution detector for an existing checkpoint",
        description="Scores the checkpoint's validation split and a training subsample (rebuilt as `cxreader "
        "evaluate` rebuilds them), fits per-finding calibration (temperature scaling, Guo et al. 2017; "
        "isotonic where it wins cross-validation), thresholds on the calibrated validation probabilities by "
        "the operating-point rule, and the input gate's Mahalanobis out-of-distribution detector (Lee et al. "
        "2018), and writes a new checkpoint with the same weights. What `cxreader train` does at the end of "
        "training, for checkpoints made before it did or elsewhere.",
    )
    arguments.add_checkpoint(parser)
    parser.add_argument("--out", required=True, help="the new checkpoint (may be the same file)")
    parser.add_argument(
        "--data", default="", help="dataset root (default: the one the checkpoint was trained on)"
    )
    parser.add_argument(
        "--cache", default="", help="preprocessing cache folder to read instead of image files"
    )
    parser.add_argument(
        "--split-from",
        choices=SPLIT_SOURCES,
        default="checkpoint",
        help="how to rebuild the train/val splits: as the checkpoint's training did (default), or by "
        "--split random|official, or from --list files",
    )
    arguments.add_split_lists(
        parser,
        "split list files (train=..., val=...); implies --split-from lists",
        default=[],
    )
    parser.add_argument(
        "--operating-point",
        default="youden",
        metavar="RULE",
        help="youden (default) | f1 | sensitivity=X | specificity=X: how each finding's threshold is "
        "chosen on the calibrated validation probabilities",
    )
    parser.add_argument(
        "--false-alarm-rate",
        type=float,
        default=0.01,
        help="share of validation images the out-of-distribution detector refuses (default 0.01)",
    )
    parser.add_argument(
        "--train-images",
        type=arguments.positive_int,
        default=20000,
        help="training images the detector is fitted on, at most (a seeded subsample; default 20000)",
    )
    arguments.add_batch_size(parser, 32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample and the calibration folds")
    parser.set_defaults(func=run_calibrate)


def split_overrides(args: argparse.Namespace) -> dict:
    """Config keys that rebuild the splits as ``--split-from`` / ``--list`` ask."""
    lists = dict(args.list)
    source = "lists" if lists else args.split_from
    if source == "checkpoint":
        return {}
    if source == "lists":
        if not {"train", "val"} <= set(lists):
            raise ConfigError("--split-from lists needs --list train=FILE --list val=FILE")
        return {"split": "lists", "lists": lists}
    return {"split": source}


def run_calibrate(args: argparse.Namespace) -> int:
    from cxreader.evaluation.thresholds import OperatingPointRule
    from cxreader.training.calibrate import calibrate_checkpoint

    rule = OperatingPointRule.parse(args.operating_point)  # a malformed rule stops before any inference
    if not 0.0 < args.false_alarm_rate < 1.0:
        raise ConfigError(f"--false-alarm-rate must be in (0, 1), got {args.false_alarm_rate}")
    fit = calibrate_checkpoint(
        args.checkpoint,
        args.out,
        data=args.data,
        cache=args.cache,
        split_overrides=split_overrides(args),
        rule=rule,
        false_alarm_rate=args.false_alarm_rate,
        train_images=args.train_images,
        batch_size=args.batch_size,
        workers=args.workers,
        seed=args.seed,
    )
    print(fit.table())
    seconds = fit.seconds
    print(
        f"validation pass {seconds['validation_pass']:.1f} s, training subsample pass "
        f"{seconds['train_pass']:.1f} s, fits "
        f"{seconds['calibration'] + seconds['operating_point'] + seconds['ood']:.1f} s"
    )
    print(f"wrote {Path(args.out)} (same weights; thresholds now on the calibrated scale)")
    return 0
