"""Training data loader throughput: decoding PNGs (the baseline) vs reading the preprocessing cache.

Both loaders are the training loop's own: :class:`~cxreader.data.dataset.ChestXrayDataset` with the training
transform (``TrainPreset`` at 224 px: random-resized crop, rotation, jitter, normalisation), the loop's
collate function, ``--workers`` (2) loader processes, batches of 16, shuffled. Only the image source differs:

* baseline: ``FileImageSource``, each 1024² NIH PNG decoded and resized to 256 px per sample;
* new: ``CacheImageSource``, the same images read from a cache built beforehand (not timed);
* ``augment: batch``: the loader hands over uint8 rows and each sample's augmentation values; the crop,
  rotation and jitter run batched on the training device (:class:`~cxreader.data.transforms.BatchTrainAugment`).
  Shown twice: the loader alone (what feeds a GPU) and with the batched augmentation run on this CPU.
* also shown: the cache with the evaluation transform, and the cache alone (uint8 rows, no transform),
  the ceiling the cache itself sets.

The 8 real 1024² PNGs of ``../shared/data/nih/images_1024/`` are repeated to ``--files`` (256) files through
symbolic links. Each loader runs whole epochs for at least ``--seconds`` per round after a warm-up epoch
(worker start-up is not counted); the median images/s over ``--rounds`` rounds is reported.

Run: ``python benchmarks/loader_throughput.py [--files 256] [--workers 2] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from _rounds import interleaved_rounds, print_ratio_table, repeat_as_links
from cxreader.data.cache import CacheImageSource, build_cache
from cxreader.data.dataset import ChestXrayDataset, FileImageSource, collate_samples
from cxreader.data.transforms import (
    BatchTrainAugment,
    DeferredTrainPreset,
    EvalPreset,
    TrainPreset,
    load_size_for,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "nih" / "images_1024"
IMAGE_SIZE = 224
AUGMENTED_ON_CPU = "cache, augment: batch, BatchTrainAugment run on this CPU in the main process"


class RawRows(Dataset):
    """The cache's uint8 rows as tensors, without any transform."""

    def __init__(self, source: CacheImageSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.source.load(index))


def loader_for(dataset: Dataset, workers: int, batch: int, raw: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=RandomSampler(dataset, generator=torch.Generator().manual_seed(0)),
        num_workers=workers,
        collate_fn=None if raw else collate_samples,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def images_per_second(loader: DataLoader, seconds: float, augment: BatchTrainAugment | None = None) -> float:
    """Whole epochs until ``seconds`` have passed; images per second (``augment``: applied to each batch in
    this process, as the training loop does on its device with ``augment: batch``)."""
    count = 0
    started = time.perf_counter()
    while True:
        for batch in loader:
            images = batch if isinstance(batch, torch.Tensor) else batch["image"]
            if augment is not None:
                images = augment(images, batch["augment"])
            count += images.shape[0]
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of 1024² PNGs")
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum timed seconds per round")
    args = parser.parse_args(argv)
    sources = sorted(args.source.glob("*.png"))
    if not sources:
        raise SystemExit(f"no PNGs in {args.source}")
    # The main process only collects batches here, as in training; the batched augmentation row gives it the
    # machine's threads, as a CPU training run would (on a GPU that work is the device's).
    torch.set_num_threads(1)
    print(
        f"# loader throughput, {datetime.date.today()}, {os.cpu_count()} cores visible, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    print(f"command: python benchmarks/loader_throughput.py {' '.join(argv or sys.argv[1:])}")
    load_size = load_size_for(IMAGE_SIZE)
    with tempfile.TemporaryDirectory(prefix="cxreader-loader-bench-") as tmp:
        folder = Path(tmp) / "images"
        paths = repeat_as_links(sources, folder, args.files)
        build_cache(folder, Path(tmp) / "cache", size=load_size, workers=args.workers)
        names = [path.name for path in paths]
        labels = np.zeros((len(paths), 14), dtype=np.float32)
        preset = TrainPreset(image_size=IMAGE_SIZE)
        cache_source = CacheImageSource(Path(tmp) / "cache", names, expected_size=load_size)
        loaders = {
            "PNG files (decode 1024² + resize per sample), TrainPreset (baseline)": loader_for(
                ChestXrayDataset(FileImageSource(paths, load_size), labels, preset),
                args.workers,
                args.batch,
                False,
            ),
            "cache (memory-mapped uint8 rows), TrainPreset": loader_for(
                ChestXrayDataset(cache_source, labels, preset), args.workers, args.batch, False
            ),
            "cache, EvalPreset (evaluation: resize + normalise)": loader_for(
                ChestXrayDataset(cache_source, labels, EvalPreset(image_size=IMAGE_SIZE)),
                args.workers,
                args.batch,
                False,
            ),
            "cache, augment: batch (uint8 rows + augmentation values; crops done on the device)": loader_for(
                ChestXrayDataset(cache_source, labels, DeferredTrainPreset(preset=preset)),
                args.workers,
                args.batch,
                False,
            ),
            AUGMENTED_ON_CPU: loader_for(
                ChestXrayDataset(cache_source, labels, DeferredTrainPreset(preset=preset)),
                args.workers,
                args.batch,
                False,
            ),
            "cache rows only, no transform": loader_for(
                RawRows(cache_source), args.workers, args.batch, True
            ),
        }
        batch_augment = BatchTrainAugment(preset)
        for loader in loaders.values():  # warm-up epoch: starts the persistent workers
            for _ in loader:
                pass

        def timed(loader: DataLoader, augment: BatchTrainAugment | None):
            def run() -> float:
                torch.set_num_threads((os.cpu_count() or 1) if augment is not None else 1)
                return images_per_second(loader, args.seconds, augment)

            return run

        variants = {
            name: timed(loader, batch_augment if name == AUGMENTED_ON_CPU else None)
            for name, loader in loaders.items()
        }
        results = interleaved_rounds(variants, args.rounds)
        del loaders, variants  # stop the loader workers before the folder goes
    print(
        f"\n{args.files} images, {args.workers} loader workers, batch {args.batch}, "
        f"{IMAGE_SIZE} px training crops from {load_size} px, median of {args.rounds} rounds\n"
    )
    print_ratio_table(results, label="loader", digits=0, ratio_digits=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
