"""A map-style dataset of chest radiographs yielding dict samples (torchxrayvision's convention).

Each sample is ``{"image": float tensor (3, S, S), "labels": float tensor (K,) with NaN for unknown, "id": image
name, "index": int}``, K the split's label space (14 for NIH) (with batched augmentation: ``"image"`` uint8
``(1, L, L)`` and ``"augment"`` its random values, applied on the device by the training loop). An image that
cannot be read yields a sample with ``"error"`` set; the collate function drops it and the training loop
reports the file and the reason, so one bad file in 100,000 does not stop a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cxreader.config import TrainConfig
from cxreader.data.cache import CacheImageSource
from cxreader.data.chestxray14 import ImageLocator, Split, load_splits
from cxreader.data.transforms import load_size_for
from cxreader.errors import ConfigError, CXReaderError, DataError

logger = logging.getLogger(__name__)


class ImageSource(Protocol):
    """Where decoded uint8 grayscale images come from (files, or a preprocessing cache)."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> np.ndarray: ...

    def name(self, index: int) -> str: ...


class FileImageSource:
    """Decode image files on demand, resized to ``load_size``² (``None`` = full size).

    Args:
        names: The sample id of each file (e.g. a split's ``images``, unique where file names repeat, as
            CheXpert's ``view1_frontal.jpg`` do); by default the file name.
    """

    def __init__(
        self, paths: Sequence[str | Path], load_size: int | None, *, names: Sequence[str] | None = None
    ):
        self.paths = [str(path) for path in paths]
        self.load_size = load_size
        if names is not None and len(names) != len(self.paths):
            raise ValueError(f"{len(names)} names for {len(self.paths)} image paths")
        self.names = None if names is None else [str(name) for name in names]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        from cxreader.data.io import read_image_uint8

        return read_image_uint8(self.paths[index], size=self.load_size)

    def name(self, index: int) -> str:
        return self.names[index] if self.names is not None else Path(self.paths[index]).name


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The per-sample augmentation generator: a function of (seed, epoch, index) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 100_003 + index) % (2**63 - 1))


class ChestXrayDataset(Dataset):
    """Images from an :class:`ImageSource` with their labels (one row per image).

    Args:
        labels: (N, K) array in the split's label order (K = 14 for NIH), NaN where a label is unknown.
        transform: ``transform(uint8_image, generator) -> tensor``, or ``-> dict`` of sample fields (e.g. the
            uint8 image and its augmentation values for batched augmentation on the device).
        seed: Augmentation seed; call :meth:`set_epoch` every epoch.
    """

    def __init__(
        self,
        source: ImageSource,
        labels: np.ndarray,
        transform: Callable[[np.ndarray, torch.Generator], torch.Tensor],
        *,
        seed: int = 0,
    ):
        if len(source) != len(labels):
            raise ValueError(f"{len(source)} images but {len(labels)} label rows")
        self.source = source
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"id": self.source.name(index), "index": index, "labels": self.labels[index]}
        try:
            image = self.source.load(index)
        except CXReaderError as exc:
            sample["error"] = str(exc)
            return sample
        transformed = self.transform(image, sample_generator(self.seed, self.epoch, index))
        if isinstance(transformed, dict):
            sample.update(transformed)
        else:
            sample["image"] = transformed
        return sample


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack good samples; list the failed ones under ``"errors"`` (file: reason)."""
    good = [sample for sample in samples if "error" not in sample]
    batch: dict[str, Any] = {"errors": [sample["error"] for sample in samples if "error" in sample]}
    if good:
        batch["image"] = torch.stack([sample["image"] for sample in good])
        batch["labels"] = torch.stack([sample["labels"] for sample in good])
        batch["index"] = torch.tensor([sample["index"] for sample in good], dtype=torch.long)
        batch["id"] = [sample["id"] for sample in good]
        if "augment" in good[0]:
            batch["augment"] = torch.stack([sample["augment"] for sample in good])
    return batch


def build_splits(config: TrainConfig) -> dict[str, Split]:
    """The splits a training config asks for (see :func:`cxreader.data.chestxray14.load_splits`)."""
    if not config.data and config.split != "lists":
        raise ConfigError(
            "no dataset: pass --data DIR (a ChestX-ray14 release or `cxreader data synth` output)"
        )
    return load_splits(
        config.data or None,
        split=config.split,
        lists=config.lists or None,
        seed=config.seed,
    )


def image_source(config: TrainConfig, split: Split) -> ImageSource:
    """Decode from files (checked up front: a missing file named in the labels stops the run with its name),
    or read a preprocessing cache when the config names one.

    A split that carries ``paths`` (CheXpert, MIMIC-CXR-JPG, PadChest, merged datasets: see
    :mod:`cxreader.data.harmonise`) is read from those paths; an NIH split from the release at ``config.data``.
    """
    load_size = load_size_for(config.image_size)
    if config.cache:
        return CacheImageSource(config.cache, split.images, expected_size=load_size)
    if split.paths is not None:
        missing = [path for path in split.paths if not Path(path).is_file()]
        if missing:
            raise DataError(
                Path(missing[0]).parent,
                f"{len(missing)} image file(s) of split {split.name!r} are missing "
                f"(first: {', '.join(missing[:3])})",
            )
        return FileImageSource(split.paths, load_size, names=split.images)
    locator = ImageLocator(config.data)
    missing = locator.missing(split.images)
    if missing:
        shown = ", ".join(missing[:3])
        raise DataError(
            Path(config.data),
            f"{len(missing)} image file(s) named in the labels are missing from images/ or images_0NN/images/ "
            f"(first: {shown})",
        )
    return FileImageSource([locator.locate(name) for name in split.images], load_size)
