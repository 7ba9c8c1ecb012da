"""Batched inference over data loaders, shared by validation and ``evaluate``.

With ten-crop inputs (B, 10, C, H, W) the ten probabilities are averaged, as CheXNet's test script did
(Rajpurkar et al. 2017). On request the pooled last-layer features come back too (what the input gate's
out-of-distribution detector is fitted on, :func:`~cxreader.inference.gate.pooled_features`).

These are the model's raw sigmoid outputs: validation during training and the fitting of a calibration need
them uncalibrated; applying a checkpoint's calibration is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from cxreader.inference.gate import pooled_features
from cxreader.inference.runtime import forward_probabilities
from cxreader.labels import NUM_FINDINGS
from cxreader.models.checkpoint import unwrap


@dataclass
class PredictionOutput:
    """Probabilities in dataset order: ``indices[i]`` is the dataset index of row ``probs[i]``.

    ``features`` holds the pooled features ``(N, C)`` (float32) when they were asked for, else ``None``.
    """

    indices: np.ndarray
    probs: np.ndarray
    errors: list[str] = field(default_factory=list)
    features: np.ndarray | None = None


def predict_batches(
    model: nn.Module,
    batches: Iterable[dict],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_batches: int = 0,
    with_features: bool = False,
) -> PredictionOutput:
    """Run a model in eval mode over collated batches (see :func:`~cxreader.data.dataset.collate_samples`).

    The model's mode is restored afterwards: validation runs on the model being trained. With
    ``with_features`` the pooled last-layer features of each image come back as well (averaged over ten
    crops like the probabilities).
    """
    was_training = model.training
    model.eval()
    indices: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    pooled: list[np.ndarray] = []
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
            batch_probs, feature_maps = forward_probabilities(
                model, images, device=device, amp_dtype=amp_dtype, channels_last=channels_last
            )
            if crops > 1:
                batch_probs = batch_probs.view(-1, crops, batch_probs.shape[-1]).mean(dim=1)
            probs.append(batch_probs.cpu().numpy())
            if with_features:
                batch_pooled = pooled_features(feature_maps).astype(np.float32)
                pooled.append(batch_pooled.reshape(-1, crops, batch_pooled.shape[-1]).mean(axis=1))
            indices.append(batch["index"].numpy())
    finally:
        model.train(was_training)
    if not probs:
        # One column per output of the model (its contract's labels; 14 for a CheXNet model).
        empty = np.zeros((0, int(getattr(unwrap(model), "num_classes", NUM_FINDINGS))), dtype=np.float32)
        no_features = np.zeros((0, 0), dtype=np.float32) if with_features else None
        return PredictionOutput(np.zeros(0, dtype=np.int64), empty, errors, no_features)
    return PredictionOutput(
        np.concatenate(indices),
        np.concatenate(probs).astype(np.float32),
        errors,
        np.concatenate(pooled) if with_features else None,
    )
