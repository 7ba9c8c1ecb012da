"""End-to-end screening throughput: decode -> preprocess -> infer -> store, PyTorch vs ONNX Runtime backends.

Runs :func:`cxreader.screening.engine.screen` (the code behind ``cxreader screen``) over real NIH PNGs
(``../shared/data/nih/images_256``, the first ``--files``) into a fresh SQLite records database per run,
with the checkpoint's PyTorch backend (eager float32, the baseline) and with its ONNX exports (float32 and
static int8, calibrated on other NIH images than those screened). Heatmap descriptions are off for every
backend so that all do the same work. Images/s = images screened and stored per second of wall time; the
median over ``--rounds`` interleaved rounds is reported with the ratio to the baseline.

The model is CheXNet's DenseNet-121 at 224 px with RANDOM weights (no pretrained weights can be downloaded
here): timings only.

Run: ``python benchmarks/screening_e2e.py [--files 96] [--rounds 3] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys
import tempfile
from pathlib import Path

import torch

from _rounds import interleaved_rounds, print_ratio_table
from cxreader.export.onnx import export_onnx
from cxreader.inference.backends import OnnxBackend, TorchBackend
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, load_checkpoint, save_checkpoint
from cxreader.screening.engine import screen
from cxreader.storage.db import open_database

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "nih" / "images_256"


def run_once(backend, files: list[Path], database_path: Path, workers: int, batch: int) -> float:
    database_path.unlink(missing_ok=True)
    database = open_database(str(database_path))
    try:
        report = screen(
            files,
            backend=backend,
            database=database,
            batch_size=batch,
            workers=workers,
            describe=False,
            progress=False,
        )
    finally:
        database.close()
    if report.screened != len(files):
        raise SystemExit(f"screened {report.screened} of {len(files)} files ({report.failures[:3]})")
    return report.images_per_second


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of PNGs to screen")
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="screening's decode threads")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    pngs = sorted(args.images.glob("*.png"))
    files = pngs[: args.files]
    calibration = pngs[args.files : args.files + args.calibration_images]
    if len(files) < args.files or not calibration:
        raise SystemExit(f"need {args.files} + calibration PNGs in {args.images}, found {len(pngs)}")
    print(
        f"# screening end to end, {datetime.date.today()}, {os.cpu_count()} cores visible, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(f"command: python benchmarks/screening_e2e.py {' '.join(argv or sys.argv[1:])}")
    with tempfile.TemporaryDirectory(prefix="cxreader-screen-bench-") as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = create_model("chexnet_densenet121", init="none").eval()
        checkpoint = root / "densenet121.pt"
        save_checkpoint(
            checkpoint, model=model, contract=CheckpointContract(model_name="chexnet_densenet121")
        )
        fp32 = export_onnx(checkpoint, root / "densenet121.onnx", check_images=0).path
        print("calibrating int8 ...", file=sys.stderr, flush=True)
        int8 = export_onnx(
            checkpoint,
            root / "densenet121.int8.onnx",
            quantize="int8",
            calibration=calibration,
            check_images=0,
        ).path
        backends = {
            "PyTorch eager fp32 (baseline)": TorchBackend(load_checkpoint(checkpoint), device="cpu"),
            "ONNX Runtime fp32": OnnxBackend(fp32),
            "ONNX Runtime int8 static": OnnxBackend(int8),
        }
        run_once(backends["ONNX Runtime fp32"], files[:4], root / "warm.db", args.workers, args.batch)
        results = interleaved_rounds(
            {
                name: functools.partial(
                    run_once, backend, files, root / "records.db", args.workers, args.batch
                )
                for name, backend in backends.items()
            },
            args.rounds,
        )
    print(
        f"\n{len(files)} real NIH PNGs (256 px) -> DenseNet-121 224 px (RANDOM weights) -> SQLite records, "
        f"batch {args.batch}, {args.workers} decode threads, median of {args.rounds} rounds\n"
    )
    print_ratio_table(results, label="backend", digits=1, ratio_digits=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
