"""Screening throughput, end to end on 2 CPU cores: read → decode → preprocess → infer → store, images/s.

Writes ``--images`` SYNTHETIC radiographs (``cxreader.synthetic``, 256 px PNG by default) to a temporary
folder, then screens them three times, each into a fresh SQLite records database:

* **baseline**: the naive sequential loop a first implementation would write: for each file, read and hash
  it, decode it, apply the evaluation preset, run the model on that one image, store the record and commit;
* **engine**: :func:`cxreader.screening.screen` without descriptions: files read and preprocessed by a small
  thread pool ahead of batched inference, one commit per batch;
* **engine + descriptions**: the same with class activation maps (read from the inference pass's feature
  maps) and grounded descriptions of every positive finding, as ``cxreader screen`` does by default.

The model is the demo checkpoint when one is found (``--checkpoint``, else ``/tmp/loc-demo/run/best.pt`` or
``/tmp/speed-demo/run/best.pt``), else a ``densenet_small`` with random weights at 128 px (throughput does not
depend on the weights); the report says which. The process is pinned to 2 cores (``sched_setaffinity``) and
PyTorch to 2 intra-op threads. Run: ``python benchmarks/screening_throughput.py [--images 500]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from cxreader import DISCLAIMER
from cxreader.data.io import load_image
from cxreader.inference.backends import ModelBackend, load_backend
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint
from cxreader.screening.engine import (
    PreparedImage,
    discover_files,
    image_result,
    register_backend,
    screen,
)
from cxreader.storage.db import Database, open_database
from cxreader.storage.write import add_image_result
from cxreader.synthetic.dataset import generate_synthetic_dataset

DEMO_CHECKPOINTS = (Path("/tmp/loc-demo/run/best.pt"), Path("/tmp/speed-demo/run/best.pt"))


def pin_cores(cores: int) -> list[int]:
    """Restrict this process to its first ``cores`` allowed CPUs; returns the CPUs it runs on."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[:cores]
    os.sched_setaffinity(0, chosen)
    torch.set_num_threads(len(chosen))
    return chosen


def pick_checkpoint(requested: str | None, folder: Path) -> tuple[Path, str]:
    """The checkpoint to time and a sentence saying what it is."""
    if requested:
        return Path(requested), f"checkpoint {requested}"
    for candidate in DEMO_CHECKPOINTS:
        if candidate.is_file():
            return candidate, f"demo checkpoint {candidate} (trained on synthetic data)"
    path = folder / "random-densenet_small.pt"
    torch.manual_seed(0)
    contract = CheckpointContract(model_name="densenet_small", input_size=128, synthetic=True)
    save_checkpoint(path, model=create_model("densenet_small", init="none"), contract=contract)
    return path, "densenet_small with random weights at 128 px (no demo checkpoint found)"


def naive_loop(files: list[Path], backend: ModelBackend, database: Database) -> int:
    """The baseline: one file at a time, decode → preprocess → infer (batch of 1) → store → commit."""
    thresholds = [float(value) for value in backend.contract.thresholds]
    stored = 0
    with database.session() as session:
        checkpoint_id = register_backend(session, backend)
        for path in files:
            data = path.read_bytes()
            sha256 = hashlib.sha256(data).hexdigest()
            image = load_image(path, data=data)
            if backend.gate.rules(image):
                continue  # refused by the input gate: the model never runs on it
            tensor = backend.transform(image.pixels)
            probabilities = backend.predict(tensor[None])[0]
            prepared = PreparedImage(
                path=str(path),
                sha256=sha256,
                image=image,
                tensor=tensor,
                display=None,
                width=image.pixels.shape[1],
                height=image.pixels.shape[0],
            )
            result = image_result(
                prepared,
                probabilities,
                thresholds,
                checkpoint_id=checkpoint_id,
                source_path=str(path),
                synthetic=True,
            )
            add_image_result(session=session, result=result)
            stored += 1
    return stored


def timed(label: str, function) -> dict[str, float | str]:
    started = time.perf_counter()
    images = function()
    seconds = time.perf_counter() - started
    rate = images / seconds
    print(f"  {label:<24} {images:>5} images in {seconds:7.2f} s = {rate:7.1f} images/s", flush=True)
    return {
        "label": label,
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_second": round(rate, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="side of the synthetic PNGs")
    parser.add_argument(
        "--checkpoint", help="checkpoint to time (default: the demo one, else random weights)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="reading threads of the engine")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    cores = pin_cores(args.cores)
    with tempfile.TemporaryDirectory(prefix="cxreader-screening-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate_synthetic_dataset(folder / "data", images=args.images, size=args.size, seed=0)
        print(f"{args.images} synthetic {args.size} px PNGs written in {time.perf_counter() - started:.1f} s")
        checkpoint, model_note = pick_checkpoint(args.checkpoint, folder)
        backend = load_backend(checkpoint, device="cpu")
        print(
            f"model: {model_note}; input {backend.contract.input_size} px; CPUs {cores}, "
            f"{torch.get_num_threads()} PyTorch threads; load average {os.getloadavg()[0]:.1f}"
        )
        with torch.no_grad():  # warm-up: the first forward pass allocates
            backend.predict(
                torch.zeros(args.batch_size, 3, backend.contract.input_size, backend.contract.input_size)
            )
        files = discover_files([folder / "data"]).files

        def fresh(name: str) -> Database:
            return open_database(str(folder / f"{name}.sqlite3"))

        results = []
        database = fresh("baseline")
        results.append(timed("baseline (sequential)", lambda: naive_loop(files, backend, database)))
        database.close()
        for label, describe in (("engine", False), ("engine + descriptions", True)):
            database = fresh(label.replace(" ", "").replace("+", "-"))

            def run(describe: bool = describe, database: Database = database) -> int:
                report = screen(
                    [folder / "data"],
                    backend=backend,
                    database=database,
                    batch_size=args.batch_size,
                    workers=args.workers,
                    describe=describe,
                    progress=False,
                )
                return report.screened

            results.append(timed(label, run))
            database.close()
    base = results[0]["images_per_second"]
    for row in results[1:]:
        print(f"  {row['label']} / baseline = {row['images_per_second'] / base:.2f}x")
    print(DISCLAIMER)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": model_note,
                    "images": args.images,
                    "size": args.size,
                    "batch_size": args.batch_size,
                    "workers": args.workers,
                    "cpus": cores,
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
