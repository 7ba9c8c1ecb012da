"""What the throughput benchmarks share: repeated input files, interleaved timing rounds, the median/ratio
table they print, and the SYNTHETIC DenseNet-121 checkpoint they time."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path


def interleaved_rounds(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every variant once per round, in alternating order (forward, then reversed), so that load from other
    processes falls on all of them alike; each call returns its figure (images/s)."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(rounds):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            results[name].append(variants[name]())
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def print_ratio_table(results: dict[str, list[float]], *, label: str, digits: int, ratio_digits: int) -> None:
    """A Markdown table of the median images/s of each variant and its ratio to the first one (the baseline)."""
    base = statistics.median(next(iter(results.values())))
    print(f"| {label} | images/s | x baseline |")
    print("|---|---:|---:|")
    for name, values in results.items():
        value = statistics.median(values)
        print(f"| {name} | {value:.{digits}f} | {value / base:.{ratio_digits}f} |")


def repeat_as_links(sources: list[Path], folder: Path, count: int) -> list[Path]:
    """``count`` symbolic links in ``folder`` (created) cycling over ``sources``: the same bytes, read from the
    page cache after the first pass, so decoding rather than disk I/O is what gets measured."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        source = sources[i % len(sources)]
        link = folder / f"{i:05d}_{source.name}"
        link.symlink_to(source.resolve())
        paths.append(link)
    return paths


def random_checkpoint(path: Path, input_size: int) -> Path:
    """A DenseNet-121 with random weights (a SYNTHETIC model: its outputs mean nothing; the work per image is
    CheXNet's), thresholds 0.5."""
    from cxreader.labels import FINDINGS
    from cxreader.models import create_model
    from cxreader.models.checkpoint import CheckpointContract, save_checkpoint

    model = create_model("chexnet_densenet121", init="none")
    contract = CheckpointContract(
        model_name="chexnet_densenet121",
        input_size=input_size,
        thresholds=(0.5,) * len(FINDINGS),
        synthetic=True,
    )
    save_checkpoint(path, model=model, contract=contract)
    return path
