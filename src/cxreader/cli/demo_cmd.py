"""``cxreader demo``: the whole pipeline, offline, on a SYNTHETIC dataset, in a few minutes on 2 CPU cores.

Synthesise a dataset in the NIH layout → train a compact DenseNet (the ``demo`` recipe) → evaluate on the
held-out synthetic test split (AUROC with CIs, thresholds from validation) → predict a few images and describe
their positive findings from the class activation maps (side, zone, organ, extent, severity).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cxreader import DISCLAIMER
from cxreader.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthesise data, train, evaluate and predict end to end (offline, minutes on a CPU)",
        description="Runs the whole pipeline on a SYNTHETIC dataset. Results describe synthetic images, not "
        "patients. " + DISCLAIMER,
    )
    parser.add_argument("--out", default="cxreader-demo", help="output folder (default ./cxreader-demo)")
    parser.add_argument("--images", type=int, default=2400, help="synthetic images to generate")
    parser.add_argument("--size", type=int, default=128, help="synthetic image size in pixels")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo recipe's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=None, help="data loader workers (default: the demo recipe's, 0)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing demo run in --out")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import os
    import shutil

    from cxreader.config import load_config
    from cxreader.evaluation.checkpoint_eval import evaluate_checkpoint
    from cxreader.evaluation.folder import write_evaluation_folder
    from cxreader.inference.predict import Predictor, format_predictions
    from cxreader.inference.runtime import cpu_has_native_bf16, resolve_device
    from cxreader.localization.explain import describe_predictions
    from cxreader.synthetic.dataset import generate_synthetic_dataset
    from cxreader.training.engine import train

    out = Path(args.out)
    run_dir = out / "run"
    data_dir = out / "synthetic-data"
    if run_dir.exists():
        if not args.force:
            raise ConfigError(
                f"{run_dir} exists: pass --force to replace the demo run, or choose another --out"
            )
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    print(
        f"[1/4] synthesising {args.images} SYNTHETIC chest images ({args.size} px) in {data_dir} ...",
        flush=True,
    )
    if data_dir.exists():
        shutil.rmtree(data_dir)
    summary = generate_synthetic_dataset(
        data_dir, images=args.images, size=args.size, seed=args.seed, workers=min(2, os.cpu_count() or 1)
    )
    print(
        f"      {summary.images} images of {summary.patients} synthetic patients in {summary.seconds:.1f} s"
    )

    # Box supervision (Li et al. 2018) with the synthetic set's BBox_List_2017.csv: NIH's 8 boxed findings,
    # boxes of the training split only (cxreader.training.box_supervision). Not in demo.yaml, whose tiny
    # variants (the tests) train on data without a box file.
    overrides = {
        "data": str(data_dir),
        "seed": args.seed,
        "device": "auto",
        "boxes": str(data_dir / "BBox_List_2017.csv"),
    }
    # bf16 autocast where the CPU computes bf16 in hardware (cxreader.inference.runtime.cpu_has_native_bf16);
    # on a GPU, amp "auto" already picks bf16 or fp16.
    if resolve_device("auto").type == "cpu":
        overrides["amp"] = "bf16" if cpu_has_native_bf16() else "off"
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = load_config("demo", overrides)
    print(
        f"[2/4] training {config.model} ({config.image_size} px, {config.epochs} epochs max, box-supervised "
        f"heatmaps, autocast {config.amp}) -> {run_dir}",
        flush=True,
    )
    result = train(config, run_dir)
    print(f"      best validation mean AUROC {result.best_val_mean_auroc:.3f} at epoch {result.best_epoch}")

    print("[3/4] evaluating best.pt on the held-out SYNTHETIC test split ...", flush=True)
    report, predictions = evaluate_checkpoint(run_dir / "best.pt", split="test", workers=config.workers)
    eval_dir = write_evaluation_folder(
        report,
        predictions.labels,
        predictions.probs,
        run_dir / "eval-test",
        title="ROC on the SYNTHETIC test split (cxreader demo)",
    )
    print(report.to_markdown())

    print("[4/4] predicting and describing a few test images (heatmap-grounded) ...", flush=True)
    predictor = Predictor(run_dir / "best.pt", device="auto")
    sample = [data_dir / "images" / name for name in predictions.images[:3]]
    results = predictor.predict_files(sample, keep_images=True)
    describe_predictions(predictor.backend, results)
    print(format_predictions(results, predictor.thresholds))

    elapsed = time.perf_counter() - started
    print(
        f"\nDone in {elapsed / 60:.1f} min. Mean AUROC on the SYNTHETIC test split: {report.mean_auroc:.3f}\n"
        f"  data:        {data_dir}  (synthetic, NIH layout)\n"
        f"  checkpoints: {run_dir / 'best.pt'}, {run_dir / 'last.pt'}\n"
        f"  metrics:     {run_dir / 'metrics.jsonl'}, TensorBoard logs in {run_dir / 'tensorboard'}\n"
        f"  evaluation:  {eval_dir / 'report.md'}, {eval_dir / 'report.json'}, {eval_dir / 'roc.png'}, {eval_dir / 'reliability.png'}\n"
        "Everything above was computed on SYNTHETIC images. " + DISCLAIMER
    )
    return 0
