"""Box supervision of the class activation maps, for the training images that have boxes.

Li et al., "Thoracic Disease Identification and Localization with Limited Supervision" (CVPR 2018), train a
ChestX-ray14 classifier on image labels for every image and, for the few images with NIH boxes, also on the
boxes: each position of the last feature grid is scored per finding, positions inside the finding's box are
positives, those outside are negatives. Here the per-position scores are the head's logits at every position
(the class activation map before any pooling, :meth:`cxreader.models.chexnet.CheXNet.forward`); the box term
is the binary cross-entropy of those logits against the fraction of each grid cell the box covers, averaged
over the (image, finding) pairs that have boxes, and added to the image-level loss with weight
``box_weight``. Images and findings without boxes contribute nothing to it: the image labels alone train
them, as in Li et al.

Only boxes of the TRAINING split are used, so validation and test boxes stay unseen; the run's log says how
many. Boxes are given in the image's own pixels (``BBox_List_2017.csv``: the 1024-pixel PNGs of the release),
or in an ``N x N`` space (``box_space``). They follow the training augmentation exactly: the masks are warped
with the same crop, resize and rotation as the image (:meth:`cxreader.data.transforms.BatchTrainAugment.warp`),
which is why box supervision needs ``augment: batch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS

#: Side of the box masks before warping (the feature grid they are pooled to is at most 16-32 cells).
MASK_SIZE = 64


class BoxTargets:
    """Box masks of the training images, by image name: ``(14, MASK_SIZE, MASK_SIZE)`` uint8 and which
    findings have a box."""

    def __init__(self, masks: dict[str, np.ndarray], boxes: int):
        self.masks = masks
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.masks)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        train_images: Sequence[str],
        image_path_of: Callable[[str], Path] | None,
        *,
        box_space: int = 0,
    ) -> BoxTargets:
        """Masks of the boxes in ``path`` whose image is in ``train_images``.

        Args:
            path: A ``BBox_List_2017.csv``-format file.
            train_images: Names of the training split's images.
            image_path_of: name -> image file, for the image's size (only the header is read); unused with
                ``box_space``.
            box_space: Boxes in ``N x N`` pixels (0: in the image's own pixels).

        Raises:
            DataError: the file is malformed, or a box image's size cannot be read.
            ConfigError: none of the file's boxes is on a training image.
        """
        from cxreader.data.nih_tables import read_bbox_list

        frame = read_bbox_list(path)
        frame = frame[frame["image"].isin(train_images)]
        if frame.empty:
            raise ConfigError(f"{path}: none of its boxes is on an image of the training split")
        masks: dict[str, np.ndarray] = {}
        for name, rows in frame.groupby("image"):
            if box_space:
                width = height = float(box_space)
            else:
                file = image_path_of(name)
                try:
                    with Image.open(file) as image:
                        width, height = (float(v) for v in image.size)
                except (OSError, ValueError) as exc:
                    raise DataError(Path(file), f"cannot read the size of a boxed image ({exc})") from None
            mask = np.zeros((len(FINDINGS), MASK_SIZE, MASK_SIZE), dtype=np.uint8)
            for row in rows.itertuples():
                x0 = int(math.floor(row.x / width * MASK_SIZE))
                y0 = int(math.floor(row.y / height * MASK_SIZE))
                x1 = int(math.ceil((row.x + row.w) / width * MASK_SIZE))
                y1 = int(math.ceil((row.y + row.h) / height * MASK_SIZE))
                x0, y0 = max(0, x0), max(0, y0)
                x1, y1 = min(MASK_SIZE, max(x1, x0 + 1)), min(MASK_SIZE, max(y1, y0 + 1))
                mask[FINDINGS.index(row.finding), y0:y1, x0:x1] = 1
            masks[str(name)] = mask
        return cls(masks, len(frame))

    def batch(self, names: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(masks (B, 14, S, S) float, known (B, 14) bool)`` of a batch; None when no image has boxes."""
        if not any(name in self.masks for name in names):
            return None
        masks = np.zeros((len(names), len(FINDINGS), MASK_SIZE, MASK_SIZE), dtype=np.uint8)
        for row, name in enumerate(names):
            if name in self.masks:
                masks[row] = self.masks[name]
        tensor = torch.from_numpy(masks).to(device)
        known = tensor.flatten(2).amax(dim=2) > 0
        return tensor.float(), known


def box_loss(maps: torch.Tensor, masks: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean per-position BCE of the class maps' logits against the boxes' cover of each cell (Li et al. 2018).

    Args:
        maps: ``(B, 14, h, w)`` logits at every position of the feature grid.
        masks: ``(B, 14, S, S)`` warped box masks in [0, 1] (any ``S``; pooled to ``h x w`` by area).
        known: ``(B, 14)`` which (image, finding) pairs have a box.
    """
    if not bool(known.any()):
        return maps.sum() * 0.0
    cover = F.adaptive_avg_pool2d(masks, maps.shape[-2:]).clamp(0.0, 1.0)
    losses = F.binary_cross_entropy_with_logits(maps.float(), cover.float(), reduction="none").mean(
        dim=(2, 3)
    )
    return (losses * known).sum() / known.sum()
