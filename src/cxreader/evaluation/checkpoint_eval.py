"""Evaluate a trained checkpoint on a split of its dataset, with thresholds chosen on the validation split.

The split is rebuilt exactly as training built it (the split method, seed and list files are read from the
checkpoint's saved configuration), so the test images are the ones training never saw. Subgroup attributes
(sex, age, view) come from the dataset's Data_Entry table.

Probabilities are the ones the model runner reports: calibrated by the checkpoint's calibration where it
carries one (:mod:`cxreader.inference.calibration`), unless the raw sigmoid outputs are asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, SequentialSampler

from cxreader.config import TrainConfig, config_from_dict
from cxreader.data.chestxray14 import Split, find_data_entry
from cxreader.data.dataset import ChestXrayDataset, collate_samples, image_source
from cxreader.data.nih_tables import read_data_entry
from cxreader.errors import ConfigError
from cxreader.evaluation.datasets import run_splits
from cxreader.evaluation.report import EvaluationReport, build_report
from cxreader.evaluation.subgroups import subgroup_columns_for_images
from cxreader.inference.batches import predict_batches
from cxreader.inference.calibration import contract_calibration
from cxreader.inference.gate import OutOfDistribution
from cxreader.inference.runtime import resolve_amp_dtype, resolve_device
from cxreader.models.checkpoint import LoadedCheckpoint, load_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class SplitPredictions:
    """A split's images, labels and the model's probabilities for them (and their pooled features, when asked
    for: the out-of-distribution detector's input)."""

    images: list[str]
    labels: np.ndarray
    probs: np.ndarray
    errors: list[str]
    features: np.ndarray | None = None


def subsample(count: int, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``range(count)`` (all when ``limit`` is 0 or not smaller), seeded, sorted."""
    if not limit or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def predict_split(
    checkpoint: LoadedCheckpoint,
    *,
    data: str,
    split: str,
    tencrop: bool = False,
    batch_size: int = 32,
    workers: int = 2,
    cache: str = "",
    split_overrides: dict[str, Any] | None = None,
    calibrated: bool = True,
    with_features: bool = False,
    limit: int = 0,
    seed: int = 0,
) -> SplitPredictions:
    """Probabilities of the checkpoint on one split (train/val/test) of ``data``.

    A checkpoint trained on several datasets is scored on its merged split (every dataset's part of it),
    its labels in the checkpoint's label space (:mod:`cxreader.evaluation.datasets`).

    Args:
        split_overrides: Config keys that rebuild the splits otherwise than the checkpoint's saved config
            (``split``, ``lists``, ``seed``), for checkpoints trained elsewhere.
        calibrated: Apply the checkpoint's calibration (when it has one); ``False``: raw sigmoid outputs.
        with_features: Also return the pooled last-layer features.
        limit: Score at most this many images of the split, a seeded random subset (0 = all).
        seed: Seed of that subset.
    """
    config = _saved_config(checkpoint, data=data, cache=cache, split_overrides=split_overrides)
    splits = run_splits(config, label_space=checkpoint.contract.labels)
    if split not in splits:
        raise ConfigError(f"split {split!r} not in this dataset (has: {', '.join(splits)})")
    return predict_images(
        checkpoint,
        config,
        splits[split],
        tencrop=tencrop,
        batch_size=batch_size,
        workers=workers,
        calibrated=calibrated,
        with_features=with_features,
        limit=limit,
        seed=seed,
    )


def _saved_config(
    checkpoint: LoadedCheckpoint, *, data: str, cache: str, split_overrides: dict[str, Any] | None
) -> TrainConfig:
    """The checkpoint's training config, with another NIH root, cache or split method where given."""
    saved = checkpoint.contract.config
    if saved.get("datasets") and (data or cache or split_overrides):
        raise ConfigError(
            f"{checkpoint.path} trained on datasets ({', '.join(saved['datasets'])}), each split by its own "
            "rule: its splits are rebuilt from its config, without another root, cache or split method "
            "(score it on other folders with evaluate --data NAME=DIR)"
        )
    return config_from_dict(
        {**saved, "data": data or saved.get("data", ""), "cache": cache, **(split_overrides or {})}
    )


def predict_images(
    checkpoint: LoadedCheckpoint,
    config: TrainConfig,
    chosen: Split,
    *,
    tencrop: bool = False,
    batch_size: int = 32,
    workers: int = 2,
    calibrated: bool = True,
    with_features: bool = False,
    limit: int = 0,
    seed: int = 0,
) -> SplitPredictions:
    """Probabilities of the checkpoint on the images of ``chosen`` (read as ``config`` says:
    :func:`~cxreader.data.dataset.image_source`), with its labels; arguments as :func:`predict_split`."""
    device = resolve_device("auto")
    preset = checkpoint.contract.tencrop_preset() if tencrop else checkpoint.contract.eval_preset()
    dataset = ChestXrayDataset(image_source(config, chosen), chosen.labels, preset)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=subsample(len(dataset), limit, seed).tolist() if limit else SequentialSampler(dataset),
        num_workers=workers,
        collate_fn=collate_samples,
    )
    output = predict_batches(
        checkpoint.model.to(device),
        loader,
        device=device,
        amp_dtype=resolve_amp_dtype("auto", device),
        with_features=with_features,
    )
    for error in output.errors:
        logger.warning("skipped unreadable image: %s", error)
    probs = output.probs
    calibration = (
        contract_calibration(checkpoint.contract, source=str(checkpoint.path)) if calibrated else None
    )
    if calibration is not None:
        probs = calibration.apply(probs).astype(np.float32)
    return SplitPredictions(
        images=[chosen.images[i] for i in output.indices],
        labels=chosen.labels[output.indices],
        probs=probs,
        errors=output.errors,
        features=output.features,
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
    by: Sequence[str] = (),
    calibrated: bool = True,
) -> tuple[EvaluationReport, SplitPredictions]:
    """AUROC with bootstrap CIs and calibration on ``split``; operating thresholds chosen on the validation
    split; AUROC by subgroup for each attribute in ``by`` (``sex``, ``age``, ``view``; see
    :mod:`cxreader.evaluation.subgroups`), read from the dataset's Data_Entry table. ``calibrated=False``
    scores the raw sigmoid outputs of a calibrated checkpoint. A checkpoint trained on several datasets is
    scored on their pooled split, per finding over the images whose label is known (per dataset:
    :func:`cxreader.evaluation.cross_dataset.evaluate_on_datasets`)."""
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    # The table is read first, so a missing one stops the run before any inference.
    table = _data_entry_table(loaded, data) if by else None
    kwargs = dict(
        data=data,
        tencrop=tencrop,
        batch_size=batch_size,
        workers=workers,
        cache=cache,
        calibrated=calibrated,
    )
    detector = OutOfDistribution.from_contract(loaded.contract)
    evaluated = predict_split(loaded, split=split, with_features=detector is not None, **kwargs)
    val = predict_split(loaded, split="val", **kwargs) if split != "val" else None
    metadata = {
        "checkpoint": str(loaded.path),
        "checkpoint_sha256": loaded.sha256,
        "split": split,
        "tencrop": tencrop,
        "calibrated": calibrated and loaded.contract.calibration is not None,
        "synthetic": loaded.contract.synthetic,
        "unreadable_images": len(evaluated.errors),
        **_gate_summary(detector, evaluated),
    }
    report = build_report(
        evaluated.labels,
        evaluated.probs,
        val_labels=val.labels if val is not None else None,
        val_probs=val.probs if val is not None else None,
        n_bootstrap=n_bootstrap,
        seed=seed,
        metadata=metadata,
        groups=subgroup_columns_for_images(table, evaluated.images, by) if table is not None else None,
        # The rule the checkpoint's own thresholds come from, so the report shows the operating point in use.
        operating_point=(loaded.contract.operating_point or {}).get("rule", "youden"),
        findings=loaded.contract.labels,
    )
    return report, evaluated


def _gate_summary(detector: OutOfDistribution | None, evaluated: SplitPredictions) -> dict[str, Any]:
    """How many of the evaluated images the input gate's out-of-distribution detector would refuse.

    The metrics are computed on every image of the split (comparable with published tables); this says how
    many of them a deployment of the model would have answered "not read" instead.
    """
    if detector is None or evaluated.features is None:
        return {"gate_out_of_distribution": False}
    scores = detector.score(evaluated.features)
    refused = int((scores > detector.threshold).sum())
    return {
        "gate_out_of_distribution": True,
        "gate_threshold": detector.threshold,
        "gate_refused": refused,
        "gate_refused_share": refused / len(scores) if len(scores) else 0.0,
    }


def _data_entry_table(checkpoint: LoadedCheckpoint, data: str) -> pd.DataFrame:
    """The Data_Entry table of the dataset root (``data``, else the one the checkpoint was trained on)."""
    root = data or checkpoint.contract.config.get("data", "")
    if not root:
        raise ConfigError("--by needs the dataset's Data_Entry table: pass --data DIR")
    return read_data_entry(find_data_entry(root))
