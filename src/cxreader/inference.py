"""Batched inference shared by validation, ``evaluate``, ``predict`` and screening.

Probabilities are ``sigmoid(logits)``: each finding is an independent output (CheXNet, Rajpurkar et al. 2017).
With ten-crop inputs (B, 10, C, H, W) the ten probabilities are averaged, as CheXNet's test script did.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


def resolve_amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``auto`` → bf16 on CUDA where supported (else fp16) and on HPU; none on CPU."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "hpu":
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """One AMP path (nanoGPT): autocast when a dtype is set, a no-op otherwise."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


@dataclass
class PredictionOutput:
    """Probabilities in dataset order: ``indices[i]`` is the dataset index of row ``probs[i]``."""

    indices: np.ndarray
    probs: np.ndarray
    errors: list[str] = field(default_factory=list)


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Iterable[dict],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_batches: int = 0,
) -> PredictionOutput:
    """Run a model in eval mode over collated batches (see :func:`~cxreader.data.dataset.collate_samples`)."""
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
            images = batch["image"].to(device, non_blocking=True)
            crops = 1
            if images.ndim == 5:  # ten-crop: (B, 10, C, H, W)
                crops = images.shape[1]
                images = images.flatten(0, 1)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp_dtype):
                logits = model(images)
            batch_probs = torch.sigmoid(logits.float())
            if crops > 1:
                batch_probs = batch_probs.view(-1, crops, batch_probs.shape[-1]).mean(dim=1)
            probs.append(batch_probs.cpu().numpy())
            indices.append(batch["index"].numpy())
    finally:
        model.train(was_training)
    if not probs:
        return PredictionOutput(np.zeros(0, dtype=np.int64), np.zeros((0, 14), dtype=np.float32), errors)
    return PredictionOutput(np.concatenate(indices), np.concatenate(probs).astype(np.float32), errors)
