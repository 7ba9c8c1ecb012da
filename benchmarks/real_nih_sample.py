"""Train and evaluate CheXNet from random weights on the 418 real NIH images in ../shared/data/nih/.

The point is that the whole pipeline runs on real NIH files (the Data_Entry CSV verbatim, real PNGs, a
patient-level split inside the set); with 418 images and no ImageNet weights the AUROCs are expected to be
near chance. It also measures the CPU training and inference rate of DenseNet-121 at 224 px.

Usage:
    python benchmarks/real_nih_sample.py [--epochs 3] [--model chexnet_densenet121] [--out DIR]

The script lays the shared files out as a ChestX-ray14 release in a temporary folder (symlinks, nothing is
copied into the repository), trains with `cxreader train`, evaluates with `cxreader evaluate`, and prints
the figures that go into benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cxreader.cli.__main__ import main as cxreader_main
from cxreader.models import create_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih"


def layout_release(root: Path) -> Path:
    """../shared/data/nih as an NIH release: Data_Entry_2017_v2020.csv + images/ (256 px renditions)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").symlink_to(SHARED / "labels.csv")
    (root / "images").symlink_to(SHARED / "images_256", target_is_directory=True)
    return root


def cpu_rates(model_name: str, size: int = 224, batch: int = 16, repeats: int = 5) -> dict[str, float]:
    """Median images/s of one training step and of batched inference, eager fp32 on this CPU."""
    torch.manual_seed(0)
    model = create_model(model_name, init="none")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.randn(batch, 3, size, size), torch.rand(batch, 14).round()
    train_times, infer_times = [], []
    for step in range(repeats + 1):
        model.train()
        started = time.perf_counter()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            train_times.append(time.perf_counter() - started)
        model.eval()
        with torch.no_grad():
            started = time.perf_counter()
            model(images)
            if step:
                infer_times.append(time.perf_counter() - started)
    return {
        "train_images_per_s": batch / statistics.median(train_times),
        "inference_images_per_s": batch / statistics.median(infer_times),
    }


def run(args: argparse.Namespace) -> dict:
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark needs the shared real data")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="cxreader-real-nih-"))
    data = layout_release(out / "nih")
    run_dir = out / "run"
    started = time.perf_counter()
    code = cxreader_main(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(run_dir),
            "--config",
            "chexnet",
            "--model",
            args.model,
            "--init",
            "none",
            "--split",
            "random",
            "--epochs",
            str(args.epochs),
            "--batch-size",
            "16",
            "--workers",
            "2",
            "--image-size",
            str(args.image_size),
            "--early-stopping-patience",
            "0",
        ]
    )
    train_seconds = time.perf_counter() - started
    if code:
        raise SystemExit(code)
    report_path = out / "report.json"
    cxreader_main(
        [
            "evaluate",
            "--checkpoint",
            str(run_dir / "best.pt"),
            "--split",
            "test",
            "--json",
            str(report_path),
            "--workers",
            "2",
        ]
    )
    report = json.loads(report_path.read_text())
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result = {
        "model": args.model,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1),
        "train_images_per_epoch": history[0]["train_images"],
        "epoch_train_images_per_s": [round(r["train_images_per_s"], 2) for r in history],
        "best_val_mean_auroc": max(r["val_mean_auroc"] for r in history),
        "test_mean_auroc": report["mean_auroc"],
        "test_mean_auroc_ci95": report["mean_auroc_ci95"],
        "test_images": report["n_images"],
        "cpu_rates_224": cpu_rates(args.model, args.image_size),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="chexnet_densenet121")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", default="")
    run(parser.parse_args())
