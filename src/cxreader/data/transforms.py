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

#: ImageNet normalisation, which ImageNet-initialised models (CheXNet included) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_size_for(image_size: int) -> int:
    """The side at which images are decoded/cached for a given network input (224 → 256, as CheXNet's loaders)."""
    return int(round(image_size * 8 / 7))


def _to_float_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray) and not image.flags.writeable:
        image = image.copy()  # torch cannot share a read-only buffer (an image decoded by Pillow may be one)
    tensor = torch.as_tensor(image)
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    return tensor.float()


@dataclass(frozen=True, kw_only=True)
class _Preset:
    """What every preset has: the network's input side and the checkpoint's normalisation.

    Calling a preset turns a uint8 (or [0, 1] float) image into a float tensor, applies the subclass's
    ``_transform``, clamps to [0, 1] and normalises with ``mean`` and ``std``; a gray channel (C = 1)
    broadcasts to the three channels of ``mean``.
    """

    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(
        self, image: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        tensor = self._transform(_to_float_tensor(image), generator)
        return TF.normalize(tensor.clamp_(0.0, 1.0), self.mean, self.std)

    def _transform(self, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class EvalPreset(_Preset):
    """Resize the whole image to ``image_size``² (no crop: the costophrenic angles sit at the border),
    replicate the gray channel three times and normalise with the checkpoint's mean and std."""

    def _transform(self, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if tuple(tensor.shape[-2:]) != (self.image_size, self.image_size):
            tensor = TF.resize(tensor, [self.image_size, self.image_size], antialias=True)
        return tensor


@dataclass(frozen=True, kw_only=True)
class TrainPreset(_Preset):
    """Random-resized crop (area ``crop_scale``, aspect 0.9–1.1), a small rotation, mild brightness and
    contrast jitter, then the evaluation normalisation. No flips (see module docstring).

    The random values of one sample come from :meth:`draw`; :meth:`__call__` applies them to one image in a
    loader worker, and :class:`BatchTrainAugment` applies the same values to a whole uint8 batch on the
    training device (``augment: batch``), which leaves the loader nothing to do but copy cached rows.
    """

    crop_scale: tuple[float, float] = (0.75, 1.0)
    max_rotation_deg: float = 7.0
    jitter: float = 0.1

    def draw(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """The sample's random values, float32 ``(7,)`` in this order: crop area fraction,
        aspect ratio, top and left offsets (fractions of the free margin), angle in degrees, brightness and
        contrast factors."""
        u = torch.rand(7, generator=generator, dtype=torch.float64)
        low, high = self.crop_scale
        values = [
            low + (high - low) * u[0],
            torch.exp(math.log(0.9) + (math.log(1.1) - math.log(0.9)) * u[1]),
            u[2],
            u[3],
            self.max_rotation_deg * (2 * u[4] - 1),
            1 - self.jitter + 2 * self.jitter * u[5],
            1 - self.jitter + 2 * self.jitter * u[6],
        ]
        return torch.stack([torch.as_tensor(value) for value in values]).float()

    def _transform(self, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        height, width = tensor.shape[-2:]
        area, aspect, top_u, left_u, angle, brightness, contrast = self.draw(generator).tolist()
        crop_h = min(height, int(round(math.sqrt(area * height * width / aspect))))
        crop_w = min(width, int(round(math.sqrt(area * height * width * aspect))))
        top = int(top_u * (height - crop_h + 1)) if height > crop_h else 0
        left = int(left_u * (width - crop_w + 1)) if width > crop_w else 0
        tensor = TF.resized_crop(
            tensor, top, left, crop_h, crop_w, [self.image_size, self.image_size], antialias=True
        )
        if self.max_rotation_deg > 0:
            tensor = TF.rotate(tensor, angle, interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)
        if self.jitter > 0:
            mean = tensor.mean()
            tensor = (tensor - mean) * contrast + mean * brightness
        return tensor


@dataclass(frozen=True, kw_only=True)
class DeferredTrainPreset:
    """The loader half of ``augment: batch``: hand the uint8 image over untouched, with :meth:`TrainPreset.draw`'s
    values for it; :class:`BatchTrainAugment` does the rest on the training device."""

    preset: TrainPreset

    def __call__(self, image: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> dict:
        tensor = torch.as_tensor(image)
        if tensor.dtype != torch.uint8:
            raise TypeError(f"batched augmentation expects uint8 images, got {tensor.dtype}")
        return {"image": tensor[None] if tensor.ndim == 2 else tensor, "augment": self.preset.draw(generator)}


class BatchTrainAugment:
    """:class:`TrainPreset` for a whole batch at once, on any device: one ``affine_grid`` + ``grid_sample``
    does the crop, the resize and the rotation of every image, then jitter and normalisation, all batched.

    Same parameter distribution as the per-sample preset; the pixels differ slightly (bilinear sampling
    without antialiasing; the crop and rotation scales are close to 1, so there is little to alias).
    """

    def __init__(self, preset: TrainPreset):
        self.preset = preset

    def __call__(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``images``: uint8 ``(B, 1, H, W)``; ``params``: ``(B, 7)`` from :meth:`TrainPreset.draw`.
        Returns float32 ``(B, 3, S, S)`` normalised, on ``images``' device."""
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) images, got shape {tuple(images.shape)}")
        preset = self.preset
        height, width = images.shape[-2:]
        params = params.to(device=images.device, dtype=torch.float32)
        *_, brightness, contrast = params.unbind(1)
        grid, outside = self._sampling_grid(params, height, width, preset.image_size)
        tensor = F.grid_sample(
            images.float().div_(255.0), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        tensor = tensor.masked_fill_(outside[:, None], 0.0)
        if preset.jitter > 0:
            mean = tensor.mean(dim=(1, 2, 3), keepdim=True)
            tensor = (tensor - mean) * contrast.view(-1, 1, 1, 1) + mean * brightness.view(-1, 1, 1, 1)
        return TF.normalize(tensor.clamp_(0.0, 1.0), preset.mean, preset.std)

    def warp(self, masks: torch.Tensor, params: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
        """Warp masks ``(B, K, s, s)`` given in the frame of the ``image_shape`` (H, W) images exactly as
        :meth:`__call__` warps those images with the same ``params`` (crop, resize, rotation; bilinear, 0
        outside). The output keeps the masks' own side ``s``."""
        params = params.to(device=masks.device, dtype=torch.float32)
        grid, outside = self._sampling_grid(params, image_shape[0], image_shape[1], masks.shape[-1])
        warped = F.grid_sample(
            masks.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return warped.masked_fill_(outside[:, None], 0.0)

    def _sampling_grid(
        self, params: torch.Tensor, height: int, width: int, size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``grid_sample`` grid ``(B, size, size, 2)`` of a batch's crops and rotations, and where it
        falls outside the rotated crop. Crop fractions are those of an ``height x width`` image."""
        batch = params.shape[0]
        area, aspect, top_u, left_u, angle, _, _ = params.unbind(1)
        crop_h = torch.sqrt(area * height * width / aspect).clamp(max=height) / height  # fractions of H, W
        crop_w = torch.sqrt(area * height * width * aspect).clamp(max=width) / width
        centre_y = (top_u * (1 - crop_h) + crop_h / 2) * 2 - 1  # crop centre in grid coordinates
        centre_x = (left_u * (1 - crop_w) + crop_w / 2) * 2 - 1
        radians = torch.deg2rad(angle) if self.preset.max_rotation_deg > 0 else torch.zeros_like(angle)
        cos, sin = torch.cos(radians), torch.sin(radians)
        zeros = torch.zeros_like(cos)
        # Output grid → rotated (counter-clockwise for a positive angle, as TF.rotate; the output is square,
        # so the angle is the same in pixels); points rotated out of the crop are filled with 0, as TF.rotate
        # fills the corners of the cropped image; then scaled and shifted into the crop.
        rotation = torch.stack(
            [torch.stack([cos, -sin, zeros], dim=1), torch.stack([sin, cos, zeros], dim=1)], dim=1
        )
        grid = F.affine_grid(rotation, [batch, 1, size, size], align_corners=False)
        outside = (grid.abs() > 1).any(dim=-1)
        scale = torch.stack([crop_w, crop_h], dim=1).view(batch, 1, 1, 2)
        shift = torch.stack([centre_x, centre_y], dim=1).view(batch, 1, 1, 2)
        return grid * scale + shift, outside


@dataclass(frozen=True, kw_only=True)
class TenCropPreset(_Preset):
    """CheXNet's test-time augmentation: resize to ``load_size_for(image_size)``, take the four corner and the
    centre crops and their mirror images (torchvision ``TenCrop``); the caller averages the 10 predictions.
    Mirroring only averages probabilities here; nothing that names a side uses it."""

    def _transform(self, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        size = load_size_for(self.image_size)
        tensor = TF.resize(tensor, [size, size], antialias=True)
        return torch.stack(TF.ten_crop(tensor, [self.image_size, self.image_size]))


def resize_map(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (h, w) or (B, h, w) map to ``size`` (used for heatmaps at input size)."""
    squeeze = values.ndim == 2
    batch = values[None, None] if squeeze else values[:, None]
    out = F.interpolate(batch.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return out[0] if squeeze else out
