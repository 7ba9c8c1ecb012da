"""Batched inference over data loaders, shared by validation and ``evaluate``.

With ten-crop inputs (B, 10, C, H, W) the ten probabilities are averaged, as CheXNet's test script did
(Rajpurkar et al. 2017).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from cxreader.inference.runtime import forward_probabilities
from cxreader.labels import FINDINGS


@dataclass
class PredictionOutput:
    """Probabilities in dataset order: ``indices[i]`` is the dataset index of row ``probs[i]``."""

    indices: np.ndarray
    probs: np.ndarray
    errors: list[str] = field(default_factory=list)


def predict_batches(
    model: nn.Module,
    batches: Iterable[dict],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_batches: int = 0,
) -> PredictionOutput:
    """Run a model in eval mode over collated batches (see :func:`~cxreader.data.dataset.collate_samples`).

    The model's mode is restored afterwards: validation runs on the model being trained.
    """
    was_training = model.training
    model.eval()
    indices: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    errors: list[str] = []
    try:
        for step, batch in enumerate(batches):
            if max_batches and step >= max_batches:
                break
            errors.extend(batch.get("errors", []))
            if "image" not in batch:
                continue
            images = batch["image"]
            crops = 1
            if images.ndim == 5:  # ten-crop: (B, 10, C, H, W)
                crops = images.shape[1]
                images = images.flatten(0, 1)
            batch_probs, _ = forward_probabilities(
                model, images, device=device, amp_dtype=amp_dtype, channels_last=channels_last
            )
            if crops > 1:
                batch_probs = batch_probs.view(-1, crops, batch_probs.shape[-1]).mean(dim=1)
            probs.append(batch_probs.cpu().numpy())
            indices.append(batch["index"].numpy())
    finally:
        model.train(was_training)
    if not probs:
        empty = np.zeros((0, len(FINDINGS)), dtype=np.float32)
        return PredictionOutput(np.zeros(0, dtype=np.int64), empty, errors)
    return PredictionOutput(np.concatenate(indices), np.concatenate(probs).astype(np.float32), errors)
