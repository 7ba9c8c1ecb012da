"""Cross-dataset generalisation on SYNTHETIC data: a model per dataset and one merged, each scored on every dataset.

Writes three SYNTHETIC datasets in the NIH ChestX-ray14, CheXpert and PadChest layouts (``cxreader data synth
--layout …``: the same phantom generator, each set with its own seed and its own published label format: the
CheXpert labeler's observations with uncertain mentions, PadChest's report terms), trains a small model on each
(``cxreader train --data NAME=DIR``) and one on all three (``--data nih=… --data chexpert=… --data
padchest=…``), and prints the table of ``cxreader evaluate --cross-table``: mean AUROC on each dataset's test
split over the findings that dataset defines and every model predicts (the CheXpert model predicts 7 of the 14
NIH findings, so every column averages at most those 7 and the findings the extra sets add).

What it measures on synthetic data: how the label formats (which findings a set names, how it names them, its
unknown and uncertain labels) and the size of the training set carry across datasets; not the shift between
hospitals, scanners and patients that real data has (Zech et al., PLOS Medicine 2018), since all three sets are
drawn by one generator.

Usage:
    python benchmarks/cross_dataset.py [--images 1000] [--size 64] [--epochs 6] [--image-size 64]
        [--sampling proportional] [--work DIR] [--json OUT]

Defaults keep the whole run under 15 minutes on two CPU cores (measured: see the printed timings).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

LAYOUTS = ("nih", "chexpert", "padchest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images per dataset (default 1000)")
    parser.add_argument(
        "--size", type=int, default=64, help="side of the generated images in px (default 64)"
    )
    parser.add_argument("--image-size", type=int, default=64, help="network input size (default 64)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs per model (default 6)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="densenet_small", help="registered model (default densenet_small)")
    parser.add_argument(
        "--sampling", default="proportional", help="sampling of the merged run: proportional | balanced"
    )
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the CIs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=Path, help="folder for the datasets and runs (default: a temporary one)"
    )
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    return parser.parse_args(argv)


def cli(argv: list[str]) -> None:
    """Run one ``cxreader`` command in this process; its standard output is kept off the report."""
    from cxreader.cli.__main__ import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"cxreader {' '.join(argv[:1])} failed with exit code {code}")


def write_datasets(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    folders = {}
    for index, layout in enumerate(LAYOUTS):
        folder = work / "data" / layout
        if not (folder / "SYNTHETIC_README.txt").exists():
            cli(
                ["data", "synth", "--layout", layout, "--out", str(folder), "--images", str(args.images)]
                + ["--size", str(args.size), "--seed", str(args.seed + index)]
            )
        folders[layout] = folder
    return folders


def train(run: Path, datasets: dict[str, Path], args: argparse.Namespace, *extra: str) -> Path:
    """Train one model on ``datasets`` into ``run``; return its best.pt. A finished run in ``run`` (best.pt with
    its end-of-training calibration) is reused, an interrupted one resumed."""
    from cxreader.models.checkpoint import read_checkpoint

    best, last = run / "best.pt", run / "last.pt"
    if best.exists() and read_checkpoint(best)["contract"].get("calibration"):
        return best
    data = [argument for name, root in datasets.items() for argument in ("--data", f"{name}={root}")]
    options = ["--model", args.model, "--init", "none", "--image-size", str(args.image_size)]
    options += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", "0.002"]
    options += ["--workers", "0", "--seed", str(args.seed), "--early-stopping-patience", "0"]
    resume = ["--resume"] if last.exists() else []
    cli(["train", *data, "--out", str(run), *options, "--set", "synthetic=true", *resume, *extra])
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cross-dataset-")))
        folders = write_datasets(work, args)
        synthesis = time.perf_counter() - started
        checkpoints, seconds = [], {}
        for name, root in folders.items():
            clock = time.perf_counter()
            checkpoints.append(train(work / "runs" / name, {name: root}, args))
            seconds[name] = time.perf_counter() - clock
            print(f"trained on {name} in {seconds[name]:.0f} s", file=sys.stderr, flush=True)
        clock = time.perf_counter()
        merged = train(work / "runs" / "merged", folders, args, "--sampling", args.sampling)
        checkpoints.append(merged)
        seconds["merged"] = time.perf_counter() - clock
        print(f"trained on all three in {seconds['merged']:.0f} s", file=sys.stderr, flush=True)
        clock = time.perf_counter()
        table = cross_table(checkpoints, folders, args)
        scoring = time.perf_counter() - clock
    total = time.perf_counter() - started
    print(f"## Cross-dataset mean AUROC (SYNTHETIC data, {args.images} images per dataset)\n")
    print(table.to_markdown())
    print(
        f"Recipe: {args.model} from random weights, {args.image_size} px input, {args.epochs} epochs, batch "
        f"{args.batch_size}, Adam lr 0.002; merged run: sampling {args.sampling}, uncertain labels ignored. "
        f"Seed {args.seed}. Command: `python benchmarks/cross_dataset.py {' '.join(argv or sys.argv[1:])}`."
    )
    timings = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    print(
        f"\nWall time {total / 60:.1f} min on {os.cpu_count()} CPU core(s): synthesis {synthesis:.0f} s; "
        f"training {timings}; scoring {scoring:.0f} s."
    )
    if args.json:
        payload = {**table.to_json_dict(), "seconds": {**seconds, "synthesis": synthesis, "total": total}}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def cross_table(checkpoints: list[Path], folders: dict[str, Path], args: argparse.Namespace):
    from cxreader.evaluation.cross_dataset import ScoringOptions, cross_dataset_table

    options = ScoringOptions(split="test", workers=0, n_bootstrap=args.bootstrap, seed=args.seed)
    return cross_dataset_table(checkpoints, {name: str(root) for name, root in folders.items()}, options)


if __name__ == "__main__":
    sys.exit(main())
