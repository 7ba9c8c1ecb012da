"""Evaluate a trained checkpoint on a split of its dataset, with thresholds chosen on the validation split.

The split is rebuilt exactly as training built it (the split method, seed and list files are read from the
checkpoint's saved configuration), so the test images are the ones training never saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, SequentialSampler

from cxreader.config import config_from_dict
from cxreader.data.dataset import ChestXrayDataset, build_splits, collate_samples, image_source
from cxreader.errors import ConfigError
from cxreader.evaluation.report import EvaluationReport, build_report
from cxreader.inference.batches import predict_batches
from cxreader.inference.runtime import resolve_amp_dtype, resolve_device
from cxreader.models.checkpoint import LoadedCheckpoint, load_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class SplitPredictions:
    """A split's images, labels and the model's probabilities for them."""

    images: list[str]
    labels: np.ndarray
    probs: np.ndarray
    errors: list[str]


def predict_split(
    checkpoint: LoadedCheckpoint,
    *,
    data: str,
    split: str,
    tencrop: bool = False,
    batch_size: int = 32,
    workers: int = 2,
    cache: str = "",
) -> SplitPredictions:
    """Probabilities of the checkpoint on one split (train/val/test) of ``data``."""
    device = resolve_device("auto")
    saved = checkpoint.contract.config
    config = config_from_dict({**saved, "data": data or saved.get("data", ""), "cache": cache})
    splits = build_splits(config)
    if split not in splits:
        raise ConfigError(f"split {split!r} not in this dataset (has: {', '.join(splits)})")
    chosen = splits[split]
    preset = checkpoint.contract.tencrop_preset() if tencrop else checkpoint.contract.eval_preset()
    dataset = ChestXrayDataset(image_source(config, chosen), chosen.labels, preset)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SequentialSampler(dataset),
        num_workers=workers,
        collate_fn=collate_samples,
    )
    output = predict_batches(
        checkpoint.model.to(device), loader, device=device, amp_dtype=resolve_amp_dtype("auto", device)
    )
    for error in output.errors:
        logger.warning("skipped unreadable image: %s", error)
    return SplitPredictions(
        images=[chosen.images[i] for i in output.indices],
        labels=chosen.labels[output.indices],
        probs=output.probs,
        errors=output.errors,
    )


def evaluate_checkpoint(
    checkpoint: str | Path | LoadedCheckpoint,
    *,
    data: str = "",
    split: str = "test",
    tencrop: bool = False,
    batch_size: int = 32,
    workers: int = 2,
    cache: str = "",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[EvaluationReport, SplitPredictions]:
    """AUROC with bootstrap CIs on ``split``; operating thresholds chosen on the validation split."""
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    kwargs = dict(data=data, tencrop=tencrop, batch_size=batch_size, workers=workers, cache=cache)
    evaluated = predict_split(loaded, split=split, **kwargs)
    val = predict_split(loaded, split="val", **kwargs) if split != "val" else None
    metadata = {
        "checkpoint": str(loaded.path),
        "checkpoint_sha256": loaded.sha256,
        "split": split,
        "tencrop": tencrop,
        "synthetic": loaded.contract.synthetic,
        "unreadable_images": len(evaluated.errors),
    }
    report = build_report(
        evaluated.labels,
        evaluated.probs,
        val_labels=val.labels if val is not None else None,
        val_probs=val.probs if val is not None else None,
        n_bootstrap=n_bootstrap,
        seed=seed,
        metadata=metadata,
    )
    return report, evaluated
