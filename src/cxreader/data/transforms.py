"""Train and evaluation presets, keyword-only, in the style of torchvision's reference scripts.

There is no horizontal flip: it swaps the patient's left and right, and captions name sides. Augmentation
randomness comes from a per-sample generator (seeded from run seed, epoch and sample index), so a sample is
transformed the same way whatever the number of loader workers or DDP processes, and a resumed run replays
exactly the augmentation an uninterrupted one would have drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from cxreader.models.chexnet import IMAGENET_MEAN, IMAGENET_STD


def load_size_for(image_size: int) -> int:
    """The side at which images are decoded/cached for a given network input (224 → 256, as CheXNet's loaders)."""
    return int(round(image_size * 8 / 7))


def _to_float_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(image)
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


def _normalise(tensor: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    tensor = tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor
    mean_t = torch.tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - mean_t) / std_t


@dataclass(frozen=True, kw_only=True)
class EvalPreset:
    """Resize the whole image to ``image_size``² (no crop: the costophrenic angles sit at the border),
    replicate the gray channel three times and normalise with the checkpoint's mean and std."""

    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(
        self, image: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        tensor = _to_float_tensor(image)
        if tuple(tensor.shape[-2:]) != (self.image_size, self.image_size):
            tensor = TF.resize(tensor, [self.image_size, self.image_size], antialias=True)
        return _normalise(tensor.clamp_(0.0, 1.0), self.mean, self.std)


@dataclass(frozen=True, kw_only=True)
class TrainPreset:
    """Random-resized crop (area ``crop_scale``, aspect 0.9–1.1), a small rotation, mild brightness and
    contrast jitter, then the evaluation normalisation. No flips (see module docstring)."""

    image_size: int
    crop_scale: tuple[float, float] = (0.75, 1.0)
    max_rotation_deg: float = 7.0
    jitter: float = 0.1
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(
        self, image: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        tensor = _to_float_tensor(image)
        height, width = tensor.shape[-2:]

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        area = uniform(*self.crop_scale) * height * width
        aspect = math.exp(uniform(math.log(0.9), math.log(1.1)))
        crop_h = min(height, int(round(math.sqrt(area / aspect))))
        crop_w = min(width, int(round(math.sqrt(area * aspect))))
        top = int(uniform(0, height - crop_h + 1)) if height > crop_h else 0
        left = int(uniform(0, width - crop_w + 1)) if width > crop_w else 0
        tensor = TF.resized_crop(
            tensor, top, left, crop_h, crop_w, [self.image_size, self.image_size], antialias=True
        )
        if self.max_rotation_deg > 0:
            angle = uniform(-self.max_rotation_deg, self.max_rotation_deg)
            tensor = TF.rotate(tensor, angle, interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)
        if self.jitter > 0:
            brightness = uniform(1 - self.jitter, 1 + self.jitter)
            contrast = uniform(1 - self.jitter, 1 + self.jitter)
            mean = tensor.mean()
            tensor = (tensor - mean) * contrast + mean * brightness
        return _normalise(tensor.clamp_(0.0, 1.0), self.mean, self.std)


@dataclass(frozen=True, kw_only=True)
class TenCropPreset:
    """CheXNet's test-time augmentation: resize to ``load_size_for(image_size)``, take the four corner and the
    centre crops and their mirror images (torchvision ``TenCrop``); the caller averages the 10 predictions.
    Mirroring only averages probabilities here; nothing that names a side uses it."""

    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(
        self, image: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        tensor = _to_float_tensor(image)
        size = load_size_for(self.image_size)
        tensor = TF.resize(tensor, [size, size], antialias=True).clamp_(0.0, 1.0)
        crops = TF.ten_crop(tensor, [self.image_size, self.image_size])
        return torch.stack([_normalise(crop, self.mean, self.std) for crop in crops])


def resize_map(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (h, w) or (B, h, w) map to ``size`` (used for heatmaps at input size)."""
    squeeze = values.ndim == 2
    batch = values[None, None] if squeeze else values[:, None]
    out = F.interpolate(batch.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return out[0] if squeeze else out
