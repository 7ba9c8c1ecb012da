"""CPU inference: PyTorch eager float32 (the baseline) against channels_last, ONNX Runtime float32 and int8.

For each model, every backend is timed in the same run, interleaved round by round so that load from other
processes falls on all of them alike, and the medians over the rounds are reported:

* batched throughput: images/s running batches of ``--batch`` (16) images;
* single-image latency: median milliseconds of one forward pass on one image.

Ratios are against PyTorch eager float32 measured in the same run (throughput ratio = new / baseline,
latency ratio = baseline / new, so > 1 is faster in both). Models:

* ``densenet121``: CheXNet's DenseNet-121 at 224 px with RANDOM weights (no pretrained weights can be
  downloaded here). Timings only: probabilities of a random network say nothing about accuracy. Its int8
  model is calibrated on real NIH images (``--calibration``, default ``../shared/data/nih/images_256``).
* ``demo``: the model ``cxreader demo`` trains on SYNTHETIC data (``--demo-run``, default
  ``/tmp/speed-demo/run``), timed at its own input size; for it the script also reports the mean AUROC of
  every backend on the synthetic test split and the largest per-image probability difference to PyTorch
  float32. Its int8 model is calibrated on synthetic training images (the images that model reads).

Run: ``python benchmarks/cpu_inference.py [--models densenet121 demo] [--rounds 5] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cxreader.export.onnx import export_onnx
from cxreader.inference.backends import OnnxBackend
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CALIBRATION = REPO.parent / "shared" / "data" / "nih" / "images_256"


def _time(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Backend:
    """One way to run the model: ``run(batch)`` returns probabilities for a normalised float32 batch."""

    def __init__(self, name: str, run: Callable[[np.ndarray], np.ndarray]):
        self.name = name
        self.run = run
        self.throughput: list[float] = []
        self.latency: list[float] = []


def torch_backends(model: torch.nn.Module, threads: int, *, bf16: bool) -> list[Backend]:
    torch.set_num_threads(threads)
    eager = model.eval()
    channels_last = create_model_like(model).to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def run_eager(batch: np.ndarray) -> np.ndarray:
        return torch.sigmoid(eager(torch.from_numpy(batch))).numpy()

    @torch.inference_mode()
    def run_channels_last(batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(channels_last(images)).numpy()

    @torch.inference_mode()
    def run_bf16(batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = channels_last(images)
        return torch.sigmoid(logits.float()).numpy()

    backends = [
        Backend("pytorch eager fp32", run_eager),
        Backend("pytorch channels_last fp32", run_channels_last),
    ]
    if bf16:
        backends.append(Backend("pytorch channels_last bf16 autocast", run_bf16))
    return backends


def create_model_like(model: torch.nn.Module) -> torch.nn.Module:
    """A second copy of the model (so memory-format changes don't touch the baseline)."""
    import copy

    return copy.deepcopy(model)


def onnx_backends(fp32: Path, int8: Path | None, threads: int) -> list[Backend]:
    backends = [Backend("onnxruntime fp32", OnnxBackend(fp32, threads=threads, spin=True).predict)]
    if int8 is not None:
        backends.append(
            Backend("onnxruntime int8 static", OnnxBackend(int8, threads=threads, spin=True).predict)
        )
    return backends


def measure(backends: list[Backend], size: int, *, batch: int, rounds: int, singles: int) -> None:
    rng = np.random.default_rng(0)
    big = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    one = big[:1].copy()
    for backend in backends:  # warm-up: first calls allocate and pick kernels
        backend.run(big)
        backend.run(one)
    for round_index in range(rounds):
        order = backends if round_index % 2 == 0 else list(reversed(backends))
        for backend in order:
            backend.throughput.append(batch / _time(lambda b=backend: b.run(big)))
            times = [_time(lambda b=backend: b.run(one)) for _ in range(singles)]
            backend.latency.append(statistics.median(times) * 1000)
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)


def report(title: str, backends: list[Backend], batch: int) -> None:
    base = backends[0]
    base_tp = statistics.median(base.throughput)
    base_lat = statistics.median(base.latency)
    print(f"\n### {title}\n")
    print(f"| backend | batch {batch} images/s | x eager | single-image ms | x eager |")
    print("|---|---:|---:|---:|---:|")
    for backend in backends:
        tp = statistics.median(backend.throughput)
        lat = statistics.median(backend.latency)
        print(f"| {backend.name} | {tp:.1f} | {tp / base_tp:.2f} | {lat:.1f} | {base_lat / lat:.2f} |")


def densenet121(args: argparse.Namespace, tmp: Path) -> None:
    torch.manual_seed(0)
    model = create_model("chexnet_densenet121", init="none").eval()
    contract = CheckpointContract(model_name="chexnet_densenet121", input_size=224)
    checkpoint = tmp / "densenet121.pt"
    save_checkpoint(checkpoint, model=model, contract=contract)
    fp32 = export_onnx(checkpoint, tmp / "densenet121.onnx", check_images=0).path
    int8 = None
    if args.calibration.is_dir():
        print("calibrating DenseNet-121 int8 on real NIH images ...", file=sys.stderr, flush=True)
        summary = export_onnx(
            checkpoint,
            tmp / "densenet121.int8.onnx",
            quantize="int8",
            calibration=args.calibration,
            calibration_images=args.calibration_images,
        )
        int8 = summary.path
    backends = torch_backends(model, args.threads, bf16=args.bf16) + onnx_backends(fp32, int8, args.threads)
    measure(backends, 224, batch=args.batch, rounds=args.rounds, singles=args.singles)
    report("DenseNet-121, 224 px, RANDOM weights (timing only)", backends, args.batch)


def demo(args: argparse.Namespace, tmp: Path) -> None:
    from cxreader.config import config_from_dict
    from cxreader.data.chestxray14 import ImageLocator
    from cxreader.data.dataset import build_splits, image_source
    from cxreader.evaluation.metrics import per_class_auroc

    checkpoint = args.demo_run / "best.pt"
    if not checkpoint.is_file():
        print(f"\n(no demo model at {checkpoint}: run `cxreader demo --out {args.demo_run.parent}` first)")
        return
    loaded = load_checkpoint(checkpoint)
    contract = loaded.contract
    data = str(args.demo_data) if args.demo_data else contract.config.get("data", "")
    config = config_from_dict({**contract.config, "cache": "", "data": data})
    splits = build_splits(config)
    locator = ImageLocator(config.data)
    calibration = [locator.locate(name) for name in splits["train"].images[: args.calibration_images]]
    fp32 = export_onnx(checkpoint, tmp / "demo.onnx", check_images=0).path
    int8 = export_onnx(checkpoint, tmp / "demo.int8.onnx", quantize="int8", calibration=calibration).path
    backends = torch_backends(loaded.model, args.threads, bf16=args.bf16) + onnx_backends(
        fp32, int8, args.threads
    )
    size = contract.input_size
    measure(backends, size, batch=args.batch, rounds=args.rounds, singles=args.singles)
    report(f"demo model ({contract.model_name}, {size} px, trained on SYNTHETIC data)", backends, args.batch)

    test = splits["test"]
    source = image_source(config, test)
    preset = contract.eval_preset()
    batch = np.stack([preset(source.load(i)).numpy() for i in range(len(source))]).astype(np.float32)
    probs = {
        b.name: np.concatenate([b.run(batch[s : s + 64]) for s in range(0, len(batch), 64)]) for b in backends
    }
    reference = probs[backends[0].name]
    base_auroc = float(np.nanmean(per_class_auroc(test.labels, reference)))
    print(
        f"\nAUROC agreement on the SYNTHETIC test split ({len(batch)} images, mean over findings present):\n"
    )
    print("| backend | mean AUROC | difference | probability difference: max | 99th percentile | mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in probs.items():
        auroc = float(np.nanmean(per_class_auroc(test.labels, values)))
        diff = np.abs(values - reference)
        print(
            f"| {name} | {auroc:.4f} | {auroc - base_auroc:+.4f} | {diff.max():.4f} | "
            f"{np.quantile(diff, 0.99):.4f} | {diff.mean():.4f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["densenet121", "demo"], choices=["densenet121", "demo"]
    )
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (medians are reported)")
    parser.add_argument("--singles", type=int, default=5, help="single-image calls per round")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="threads for PyTorch and ONNX Runtime")
    parser.add_argument(
        "--bf16", action="store_true", help="also time PyTorch bf16 autocast (CPUs with BF16)"
    )
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--demo-run", type=Path, default=Path("/tmp/speed-demo/run"))
    parser.add_argument(
        "--demo-data",
        type=Path,
        default=None,
        help="the demo's synthetic data (default: as in its checkpoint)",
    )
    args = parser.parse_args(argv)
    print(
        f"# CPU inference, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores visible, {args.threads} threads, torch {torch.__version__}, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(f"command: python benchmarks/cpu_inference.py {' '.join(argv or sys.argv[1:])}")
    with tempfile.TemporaryDirectory(prefix="cxreader-bench-") as tmp:
        if "densenet121" in args.models:
            densenet121(args, Path(tmp))
        if "demo" in args.models:
            demo(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
