"""``cxreader train``: train CheXNet alone or under ``torchrun --nproc_per_node=N -m cxreader train …``.

``--data DIR`` trains on one NIH ChestX-ray14 root (the 14 findings); ``--data nih=DIR --data chexpert=DIR2
…`` trains one model on several datasets, over the union of the findings they define (merged training).
"""

from __future__ import annotations

import argparse

from cxreader.cli import arguments

DATA_HELP = (
    "dataset root (NIH ChestX-ray14 layout, or `cxreader data synth` output); or, repeated, NAME=DIR for each "
    "dataset of a merged run (NAME: nih, chexpert, mimic, padchest): one model over the union of their findings"
)
#: Command-line options that override a config key of the same name (dashes → underscores).
OVERRIDES = (
    ("--split", str, "random (seeded 70/10/20 by patient) | official (NIH lists) | lists (--list files)"),
    ("--cache", str, "preprocessing cache folder (cxreader data cache) to read instead of the image files"),
    ("--model", str, "registered model: chexnet_densenet121 | densenet_small | densenet_small_s8"),
    ("--pooling", str, "avg (CheXNet) | lse (log-sum-exp, Wang et al. 2017: sharper heatmaps)"),
    ("--boxes", str, "BBox_List_2017.csv-format file: box supervision of the heatmaps (Li et al. 2018)"),
    ("--box-weight", float, "weight of the box term of the loss (default 1.0)"),
    ("--init", str, "imagenet (torchvision weights, needs them downloaded) | none (random)"),
    ("--weights", str, "local weights file (DenseNet-121 / public CheXNet layouts)"),
    ("--image-size", int, "network input size"),
    ("--epochs", int, "maximum epochs"),
    ("--batch-size", int, "GLOBAL batch size (split across DDP processes)"),
    ("--lr", float, "Adam learning rate"),
    ("--workers", int, "data loader workers per process"),
    ("--device", str, "auto | cpu | cuda | hpu"),
    ("--amp", str, "auto | off | bf16 | fp16"),
    ("--channels-last", str, "auto | on | off"),
    ("--augment", str, "auto | sample (in loader workers) | batch (batched on the device; auto on GPUs)"),
    ("--sync-bn", str, "auto | on | off"),
    ("--early-stopping-patience", int, "epochs without improvement before stopping (0 = off)"),
    ("--max-train-batches", int, "cap on training batches per epoch (0 = all)"),
    ("--max-val-batches", int, "cap on validation batches (0 = all)"),
    ("--seed", int, "seed of split, sampler and augmentation"),
    (
        "--uncertainty",
        str,
        "merged runs: what CheXpert/MIMIC uncertain labels become as training targets (Irvin et al. 2019): "
        "ignore (unknown, no loss; default) | ones | zeros | soft | soft=V",
    ),
    (
        "--sampling",
        str,
        "merged runs: proportional (every image once per epoch; default) | balanced (each dataset an equal "
        "share of every epoch, drawn with replacement)",
    ),
    (
        "--operating-point",
        str,
        "youden (default) | f1 | sensitivity=X | specificity=X: how thresholds are chosen on the calibrated "
        "validation probabilities at the end of training",
    ),
)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", action="append", default=[], metavar="DIR | NAME=DIR", help=DATA_HELP)
    for flag, kind, text in OVERRIDES:
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument(
        "--laterals",
        action="store_const",
        const=True,
        default=None,
        help="merged runs: keep lateral views too (default: frontal views only, like NIH)",
    )
    arguments.add_split_lists(
        parser,
        "a split list file (train=…, val=…, test=…); implies --split lists",
        default=[],
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=arguments.name_value,
        metavar="KEY=VALUE",
        help="any other config key, e.g. --set weight_decay=1e-5",
    )


def overrides_from_args(args: argparse.Namespace) -> dict:
    from cxreader.evaluation.datasets import parse_dataset_roots

    overrides = {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in OVERRIDES
    }
    data, datasets = parse_dataset_roots(args.data)
    overrides.update(data=data or None, datasets=datasets or None, laterals=args.laterals)
    lists = dict(args.list)
    if lists:
        overrides["lists"] = lists
        overrides["split"] = overrides.get("split") or "lists"
    overrides.update(args.set)
    return {key: value for key, value in overrides.items() if value is not None}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a CheXNet model (single process, or DDP under torchrun)",
        description="Train CheXNet: BCE with logits, Adam, reduce-on-plateau, early stopping, best checkpoint by "
        "validation mean AUROC. Under `torchrun --nproc_per_node=N -m cxreader train …` the same command runs "
        "DDP (gloo on CPU, NCCL on CUDA). With --data NAME=DIR repeated (nih, chexpert, mimic, padchest) one "
        "model learns the union of the datasets' findings; a label a dataset does not give is unknown and "
        "adds no loss.",
    )
    parser.add_argument(
        "--out", required=True, help="run folder: best.pt, last.pt, metrics.jsonl, tensorboard/"
    )
    parser.add_argument(
        "--config", default="chexnet", help="YAML recipe (path, or packaged name: chexnet, demo)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly")
    add_override_arguments(parser)
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from cxreader.config import load_config
    from cxreader.training.engine import train

    config = load_config(args.config, overrides_from_args(args))
    result = train(config, args.out, resume=args.resume)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best validation mean AUROC {result.best_val_mean_auroc:.4f} at epoch {result.best_epoch} "
            f"({result.epochs_run} epochs); checkpoints in {result.out_dir}"
        )
    return 0
