"""The data of a training run, rebuilt the same way by training, calibration and evaluation.

A run reads either one NIH ChestX-ray14 root (``data``: the 14 CheXNet findings, split by ``split``) or several
datasets (``datasets``: name → root; :mod:`cxreader.data.harmonise`). A merged run predicts the union of the
findings its datasets define (:func:`~cxreader.data.label_maps.dataset_label_space`, in
:data:`~cxreader.labels.HARMONISED_LABELS` order); each dataset is split by patient on its own, with the run's
seed, and the parts are concatenated split by split, a label a dataset does not give left unknown (NaN).

Uncertain labels (CheXpert, MIMIC-CXR) become training targets by the run's policy (Irvin et al., "CheXpert: A
Large Chest Radiograph Dataset with Uncertainty Labels and Expert Comparison", AAAI 2019: ``ignore``,
``ones``, ``zeros``, or a soft target); the validation and test splits always leave them unknown, so that
AUROC, thresholds and calibration are measured on certain labels only.

Evaluating a checkpoint on one dataset (:func:`dataset_splits`) rebuilds that dataset's splits with the
checkpoint's seed, so its test images are ones the checkpoint never trained on when it trained on that
dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cxreader.config import TrainConfig
from cxreader.data.chestxray14 import Split
from cxreader.data.dataset import build_splits
from cxreader.data.harmonise import load_dataset_splits, merge_splits
from cxreader.data.label_maps import DATASETS, UncertaintyPolicy, dataset_label_space
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS, check_label_space

#: The dataset a run on one ``data`` root reads.
NIH = "nih"


def uncertainty_policy(config: TrainConfig) -> UncertaintyPolicy:
    """The run's uncertainty policy, parsed (``ignore``, ``ones``, ``zeros``, ``soft``, ``soft=V``).

    Raises:
        ConfigError: a malformed policy.
    """
    return UncertaintyPolicy.parse(config.uncertainty)


def run_datasets(config: TrainConfig | Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the datasets a run trained on: its ``datasets``, or ``("nih",)`` for a ``data`` run (a
    config, or a checkpoint's saved config dict)."""
    datasets = config.datasets if isinstance(config, TrainConfig) else config.get("datasets") or {}
    return tuple(datasets) or (NIH,)


def run_label_space(config: TrainConfig) -> tuple[str, ...]:
    """The findings a run's model predicts: :data:`FINDINGS` for a ``data`` run, else the union of the
    findings its datasets define, in :data:`~cxreader.labels.HARMONISED_LABELS` order."""
    if not config.merged:
        return FINDINGS
    return check_label_space(dataset_label_space(tuple(config.datasets)))


def run_splits(config: TrainConfig, *, label_space: Sequence[str] | None = None) -> dict[str, Split]:
    """The splits a run trains, validates and tests on (module docstring).

    Args:
        config: A ``data`` run (:func:`cxreader.data.dataset.build_splits`) or a merged one.
        label_space: Columns of a merged run's labels (default :func:`run_label_space`).
    """
    if not config.merged:
        return build_splits(config)
    label_space = tuple(label_space or run_label_space(config))
    parts = {
        name: merged_dataset_splits(config, name, root, label_space=label_space)
        for name, root in config.datasets.items()
    }
    return merge_splits(parts, label_space=label_space, roots=config.datasets)


def merged_dataset_splits(
    config: TrainConfig, name: str, root: str, *, label_space: Sequence[str], scoring: bool = False
) -> dict[str, Split]:
    """One dataset's splits as a merged run makes them: the training split's uncertain labels by the run's
    policy, the validation and test splits' left unknown (``scoring``: every split's left unknown, the labels
    a split is scored on)."""
    return load_dataset_splits(
        name,
        root,
        label_space=tuple(label_space),
        uncertainty=UncertaintyPolicy() if scoring else uncertainty_policy(config),
        scored_uncertainty=UncertaintyPolicy(),
        frontal_only=not config.laterals,
        seed=config.seed,
    )


def dataset_splits(
    saved: Mapping[str, Any], name: str, root: str, *, label_space: Sequence[str], cache: str = ""
) -> tuple[TrainConfig, dict[str, Split]]:
    """The splits of one dataset as a checkpoint's run would have made them, with the labels they are scored on
    (uncertain ones unknown).

    Args:
        saved: The checkpoint's saved training config.
        name: The dataset (``nih``, ``chexpert``, ``mimic``, ``padchest``).
        root: Its folder.
        label_space: The checkpoint's labels (the columns of the splits).
        cache: A preprocessing cache (``data`` runs scored on NIH only).

    Returns:
        The config that reads the splits' images (:func:`cxreader.data.dataset.image_source`) and the splits.
        A ``data`` run scored on NIH rebuilds its own split method (``split``, ``lists``, ``seed``); any other
        pairing splits the dataset by patient with the run's seed, as a merged run does.
    """
    from cxreader.config import config_from_dict

    base = config_from_dict({**saved, "data": "", "datasets": {}, "cache": "", "sampling": "proportional"})
    if name == NIH and not saved.get("datasets"):
        config = replace(base, data=str(root), cache=cache)
        return config, build_splits(config)
    if cache:
        raise ConfigError("--cache reads one NIH root only; leave it out when scoring NAME=DIR datasets")
    config = replace(base, split="random", lists={}, datasets={name: str(root)})
    return config, merged_dataset_splits(config, name, str(root), label_space=label_space, scoring=True)


def parse_dataset_roots(values: Sequence[str], known: Sequence[str] = DATASETS) -> tuple[str, dict[str, str]]:
    """Read repeated ``--data`` values: one ``DIR`` (an NIH root), or ``NAME=DIR`` for each dataset.

    Returns:
        ``(data, datasets)``: the one root, or ``""`` and name → root (in the order given).

    Raises:
        ConfigError: a plain folder mixed with ``NAME=DIR`` values, two plain folders, an unknown name or a
            name given twice.
    """
    data, datasets = "", {}
    for value in values:
        name, sep, root = value.partition("=")
        if sep and name.strip().lower() in known:
            name = name.strip().lower()
            if name in datasets:
                raise ConfigError(f"--data {name}=… given twice")
            datasets[name] = str(Path(root.strip()).expanduser())
        elif sep and not Path(value).exists():
            raise ConfigError(f"--data {value}: unknown dataset {name!r}; expected one of {', '.join(known)}")
        elif data:
            raise ConfigError(f"--data given twice ({data}, {value}); name each dataset: --data NAME=DIR")
        else:
            data = value
    if data and datasets:
        raise ConfigError(f"--data {data}: name it (nih={data}) when other datasets are given as NAME=DIR")
    return data, datasets
