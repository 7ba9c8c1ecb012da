"""Several hospitals' datasets as splits in one label space: each published layout read into patient-level
splits (the official ones where published), and several datasets merged into one set of splits.

Datasets: NIH ChestX-ray14 (Wang et al., CVPR 2017), CheXpert (Irvin et al., AAAI 2019), MIMIC-CXR-JPG
(Johnson et al., arXiv:1901.07042, 2019) and PadChest (Bustos et al., Medical Image Analysis 66, 2020). How their
labels map to :data:`~cxreader.labels.HARMONISED_LABELS`, and what an uncertain label becomes:
:mod:`cxreader.data.label_maps`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxreader.data.chestxray14 import SPLIT_NAMES, ImageLocator, Split, load_splits
from cxreader.data.chexpert import chexpert_image_paths, read_chexpert
from cxreader.data.label_maps import (
    UncertaintyPolicy,
    check_dataset,
    dataset_label_space,
    harmonised_labels,
    padchest_informative,
    silent_rows,
)
from cxreader.data.mimic import MIMIC_SPLITS, SPLIT_FILE, find_mimic_tables, read_mimic_root
from cxreader.data.padchest import find_padchest_table, padchest_image_paths, read_padchest
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS, HARMONISED_LABELS, check_label_space

# --- splits ---------------------------------------------------------------------------------------------------


def patient_assignment(
    patient_ids: np.ndarray, fractions: Sequence[float], seed: int, *, source: str | Path
) -> np.ndarray:
    """The split index of each image for a seeded patient-level split (no patient in two splits).

    Patients are shuffled with ``numpy.random.default_rng(seed)`` and cut where the running image count comes
    closest to each fraction's share; every split with a positive fraction gets at least one patient.

    Raises:
        DataError: fewer patients than splits to fill (``source`` names the table).
    """
    patients, inverse, counts = np.unique(np.asarray(patient_ids), return_inverse=True, return_counts=True)
    needed = [1 if fraction > 0 else 0 for fraction in fractions]
    if sum(needed) > len(patients):
        raise DataError(
            source, f"{len(patients)} patient(s) cannot fill {sum(needed)} splits without sharing a patient"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    cumulative = np.concatenate([[0], np.cumsum(counts[order])])
    bounds = [0]
    for index, share in enumerate(np.cumsum(fractions)[:-1], start=1):
        best = int(np.argmin(np.abs(cumulative - share * cumulative[-1])))
        low, high = bounds[-1] + needed[index - 1], len(patients) - sum(needed[index:])
        bounds.append(min(max(best, low), high))
    bounds.append(len(patients))
    slot = np.empty(len(patients), dtype=np.int64)
    for index in range(len(fractions)):
        slot[order[bounds[index] : bounds[index + 1]]] = index
    return slot[inverse.reshape(-1)]


@dataclass
class _Table:
    """One dataset's images before splitting: the columns ``image, path, patient_id, view_position,
    frontal, split`` (``split`` the official split, ``""`` where the dataset publishes none) and labels."""

    frame: pd.DataFrame
    labels: np.ndarray
    label_names: tuple[str, ...]
    source: Path
    #: The labels of the val and test splits where they follow another uncertainty policy than ``labels``.
    scored_labels: np.ndarray | None = None

    def rows(self, keep: np.ndarray) -> _Table:
        """The table of the rows ``keep`` selects."""
        scored = self.scored_labels[keep] if self.scored_labels is not None else None
        return _Table(
            self.frame[keep].reset_index(drop=True), self.labels[keep], self.label_names, self.source, scored
        )


def _labels_by_policies(
    dataset: str,
    frame: pd.DataFrame,
    label_space: tuple[str, ...],
    policies: tuple[UncertaintyPolicy, UncertaintyPolicy],
) -> tuple[np.ndarray, np.ndarray | None]:
    """The labels by the training policy, and by the scoring policy where that one differs (one table read)."""
    trained, scored = policies
    labels = harmonised_labels(dataset, frame, label_space, trained)
    return labels, (harmonised_labels(dataset, frame, label_space, scored) if scored != trained else None)


def _chexpert_table(
    root: Path, label_space: tuple[str, ...], policies: tuple[UncertaintyPolicy, UncertaintyPolicy]
) -> _Table:
    tables = {name: _find(root, f"{name}.csv", "CheXpert") for name in ("train", "valid")}
    parts = []
    for name, path in tables.items():
        part = read_chexpert(path)
        part["split"] = "test" if name == "valid" else ""
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[~silent_rows(frame)].reset_index(drop=True)
    shared = set(parts[0]["patient_id"]) & set(parts[1]["patient_id"])
    if shared:
        raise DataError(
            tables["valid"], f"patient {min(shared)} is in train.csv too (the test set is by patient)"
        )
    views = frame["AP/PA"].str.strip()
    lateral = ~frame["frontal"] & (views == "")
    table = pd.DataFrame(
        {
            "image": frame["Path"].str.strip(),
            "path": chexpert_image_paths(root, frame["Path"]),
            "patient_id": frame["patient_id"].astype(np.int64),
            "view_position": views.mask(lateral, "LATERAL"),
            "frontal": frame["frontal"],
            "split": frame["split"],
        }
    )
    labels, scored = _labels_by_policies("chexpert", frame, label_space, policies)
    return _Table(table, labels, label_space, tables["train"], scored)


def _find(root: Path, name: str, what: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(root / name, f"{what} table not found (plain or .gz)")


def _mimic_table(
    root: Path, label_space: tuple[str, ...], policies: tuple[UncertaintyPolicy, UncertaintyPolicy]
) -> _Table:
    frame = read_mimic_root(root)
    split_file = find_mimic_tables(root, (SPLIT_FILE,))[SPLIT_FILE]
    unknown = sorted(set(frame["split"]) - set(MIMIC_SPLITS))
    if unknown:
        raise DataError(split_file, f"split {unknown[0]!r} is not one of {', '.join(MIMIC_SPLITS)}")
    splits_of = frame.groupby("subject_id")["split"].nunique()
    if (splits_of > 1).any():
        raise DataError(split_file, f"subject {splits_of[splits_of > 1].index[0]} is in more than one split")
    frame = frame[~silent_rows(frame)].reset_index(drop=True)
    base = root.absolute()
    table = pd.DataFrame(
        {
            "image": frame["path"],
            "path": [str(base / path) for path in frame["path"]],
            "patient_id": frame["subject_id"].astype(np.int64),
            "view_position": frame["ViewPosition"],
            "frontal": frame["frontal"],
            "split": frame["split"].map(MIMIC_SPLITS),
        }
    )
    labels, scored = _labels_by_policies("mimic", frame, label_space, policies)
    return _Table(table, labels, label_space, split_file, scored)


def _padchest_table(root: Path, label_space: tuple[str, ...]) -> _Table:
    path = find_padchest_table(root)
    frame = read_padchest(path)
    frame = frame[[padchest_informative(labels) for labels in frame["labels"]]].reset_index(drop=True)
    patient_codes = pd.factorize(frame["PatientID"], sort=True)[0]
    table = pd.DataFrame(
        {
            "image": frame["ImageID"],
            "path": padchest_image_paths(root, frame),
            "patient_id": patient_codes.astype(np.int64),
            "view_position": frame["Projection"],
            "frontal": frame["frontal"],
            "split": "",
        }
    )
    return _Table(table, harmonised_labels("padchest", frame, label_space), label_space, path)


def _splits_of(dataset: str, table: _Table, fractions: Mapping[str, float], seed: int) -> dict[str, Split]:
    """Split ``table``: its official split where it has one, else by patient with ``fractions`` and ``seed``."""
    frame = table.frame
    split = frame["split"].to_numpy(dtype=object).copy()
    unsplit = split == ""
    if unsplit.any():
        names = list(fractions)
        shares = [fractions[name] / sum(fractions.values()) for name in names]
        chosen = patient_assignment(
            frame["patient_id"].to_numpy()[unsplit], shares, seed, source=table.source
        )
        split[unsplit] = np.asarray(names, dtype=object)[chosen]
    return {name: _split(name, dataset, table, split == name) for name in SPLIT_NAMES}


def _split(name: str, dataset: str, table: _Table, rows: np.ndarray) -> Split:
    frame = table.frame[rows]
    scored = table.scored_labels is not None and name != "train"
    return Split(
        name=name,
        images=frame["image"].tolist(),
        labels=(table.scored_labels if scored else table.labels)[rows],
        patient_ids=frame["patient_id"].to_numpy(),
        view_position=frame["view_position"].to_numpy(dtype=object),
        label_names=table.label_names,
        paths=frame["path"].tolist(),
        datasets=np.full(len(frame), dataset, dtype=object),
    )


def _nih_splits(
    root: Path, label_space: tuple[str, ...], seed: int, fractions: tuple[float, float, float]
) -> dict[str, Split]:
    splits = load_splits(root, split="random", seed=seed, fractions=fractions)
    locator = ImageLocator(root)
    columns = [FINDINGS.index(label) if label in FINDINGS else -1 for label in label_space]
    out = {}
    for name, split in splits.items():
        labels = np.full((len(split), len(label_space)), np.nan, dtype=np.float32)
        for index, column in enumerate(columns):
            if column >= 0:
                labels[:, index] = split.labels[:, column]
        located = not locator.missing(split.images)
        out[name] = Split(
            name=name,
            images=split.images,
            labels=labels,
            patient_ids=split.patient_ids,
            view_position=split.view_position,
            pixel_spacing=split.pixel_spacing,
            original_size=split.original_size,
            label_names=label_space,
            paths=[str(locator.locate(image).absolute()) for image in split.images] if located else None,
        )
    return out


def _fractions(val_fraction: float, test_fraction: float) -> tuple[float, float, float]:
    val_fraction, test_fraction = float(val_fraction), float(test_fraction)
    if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction {val_fraction:g} and test_fraction {test_fraction:g} must be non-negative and sum "
            "to less than 1"
        )
    return 1.0 - val_fraction - test_fraction, val_fraction, test_fraction


def load_dataset_splits(
    dataset: str,
    root: str | Path,
    *,
    label_space: Sequence[str] = HARMONISED_LABELS,
    uncertainty: UncertaintyPolicy = UncertaintyPolicy(),  # noqa: B008  (frozen: safe as a default)
    scored_uncertainty: UncertaintyPolicy | None = None,
    frontal_only: bool = True,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> dict[str, Split]:
    """The train, val and test :class:`Split` of one dataset, labels in ``label_space``.

    Splits are patient-level (no patient in two of them) and follow the published split where there is one:

    * ``chexpert`` — ``root`` holds ``train.csv`` and ``valid.csv`` (plain or .gz) and the
      ``CheXpert-v1.0[-small]/`` folders (``Path`` is relative to ``root``; ``root`` may also be the release
      folder itself). ``valid.csv`` is the test split; ``train.csv`` is split by patient into train and val,
      ``val_fraction`` of its images to val (``test_fraction`` is not used).
    * ``mimic`` — ``root`` holds the three ``mimic-cxr-2.0.0-*.csv[.gz]`` tables and
      ``files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg``; the split table's ``train`` / ``validate`` / ``test``
      are train / val / test (the fractions and seed are not used).
    * ``padchest`` — ``root`` holds the labels CSV (plain or .gz) and the images (see
      :func:`~cxreader.data.padchest.padchest_image_paths`); rows with uninformative labels are dropped
      (module docstring); the rest is split by patient at random. Patient ids are the ``PatientID`` codes
      numbered 0, 1, ... in sorted order.
    * ``nih`` — a ChestX-ray14 root: :func:`~cxreader.data.chestxray14.load_splits` ``split="random"``, the 14
      findings placed in ``label_space``; ``paths`` are set when every image is under the root, else None.

    Images whose labels say nothing (all CheXpert observations empty, uninformative PadChest lists: module
    docstring) are left out. The random splits put ``1 - val_fraction - test_fraction``, ``val_fraction`` and ``test_fraction`` of the
    images into train, val and test, shuffling patients with ``seed``.

    Args:
        label_space: The labels, in order, of every split's ``labels`` (a label the dataset does not define is
            NaN throughout).
        uncertainty: The policy for CheXpert / MIMIC-CXR-JPG uncertain mentions.
        scored_uncertainty: Another policy for the val and test splits (a run's training targets follow
            ``uncertainty``, the labels it is scored on may not); default: ``uncertainty`` for every split. The
            table is read once either way.
        frontal_only: Keep frontal views only (CheXpert ``Frontal/Lateral`` Frontal, MIMIC ``ViewPosition``
            PA or AP, PadChest ``Projection`` PA, AP or AP_horizontal; NIH has frontal views only).

    Returns:
        ``{"train", "val", "test"}`` Splits with ``label_names``, absolute ``paths``, ``datasets``, patient
        ids and the view position of each image.

    Raises:
        ConfigError: unknown dataset or label, fractions out of range.
        DataError: a missing table or column (the message names the file), a patient in two official splits,
            fewer patients than splits.
    """
    check_dataset(dataset)
    label_space = check_label_space(label_space)
    fractions = _fractions(val_fraction, test_fraction)
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, f"not a directory (the {dataset} dataset root)")
    if dataset == "nih":
        return _nih_splits(root, label_space, seed, fractions)
    policies = (uncertainty, scored_uncertainty or uncertainty)
    if dataset == "chexpert":
        table = _chexpert_table(root, label_space, policies)
    elif dataset == "mimic":
        table = _mimic_table(root, label_space, policies)
    else:
        table = _padchest_table(root, label_space)
    if frontal_only:
        table = table.rows(table.frame["frontal"].to_numpy(dtype=bool))
    shares = dict(zip(SPLIT_NAMES, fractions, strict=True))
    if dataset == "chexpert":
        shares = {"train": 1.0 - fractions[1], "val": fractions[1]}
    return _splits_of(dataset, table, shares, seed)


# --- merging --------------------------------------------------------------------------------------------------


def _columns(split: Split, label_space: tuple[str, ...]) -> np.ndarray:
    out = np.full((len(split), len(label_space)), np.nan, dtype=np.float32)
    for index, label in enumerate(label_space):
        if label in split.label_names:
            out[:, index] = split.labels[:, split.label_names.index(label)]
    return out


def _paths(dataset: str, split: Split, roots: Mapping[str, str | Path]) -> list[str]:
    if split.paths is not None:
        return split.paths
    if dataset not in roots:
        raise ConfigError(
            f"the {dataset} split {split.name!r} has no image paths: give its release root (roots={{{dataset!r}: DIR}})"
        )
    locator = ImageLocator(roots[dataset])
    missing = locator.missing(split.images)
    if missing:
        raise DataError(locator.root, f"{len(missing)} image(s) not found (first: {', '.join(missing[:3])})")
    return [str(locator.locate(image).absolute()) for image in split.images]


def merge_splits(
    parts: Mapping[str, Mapping[str, Split]],
    label_space: Sequence[str] | None = None,
    *,
    roots: Mapping[str, str | Path] | None = None,
) -> dict[str, Split]:
    """One Split per split name out of several datasets' splits.

    Args:
        parts: Dataset name (one of :data:`DATASETS`) → its splits (as :func:`load_dataset_splits` returns).
        label_space: The merged label order; by default :func:`dataset_label_space` of the datasets. A label
            a part's split lacks is NaN for its images.
        roots: Dataset name → release root, to find the images of a split without ``paths`` (an NIH split
            of :func:`~cxreader.data.chestxray14.load_splits`).

    Returns:
        Split name → Split, names in order of first appearance. Patient ids are shifted per dataset (by one
        more than the largest id of the datasets before it) so that no two datasets share an id; ``datasets``
        names each image's dataset. When no part carries paths (NIH alone) ``paths`` stays None; otherwise
        every image gets an absolute path.

    Raises:
        ConfigError: no parts, an unknown dataset or label, or a split without paths and no root for it.
        DataError: an NIH image not found under its root.
    """
    if not parts:
        raise ConfigError("no splits to merge")
    label_space = (
        check_label_space(label_space) if label_space is not None else dataset_label_space(list(parts))
    )
    for dataset in parts:
        check_dataset(dataset)
    with_paths = any(split.paths is not None for splits in parts.values() for split in splits.values())
    offsets, offset = {}, 0
    for dataset, splits in parts.items():
        offsets[dataset] = offset
        ids = [split.patient_ids for split in splits.values() if len(split)]
        offset += int(max(int(values.max()) for values in ids)) + 1 if ids else 0
    names = list(dict.fromkeys(name for splits in parts.values() for name in splits))
    merged = {}
    for name in names:
        pieces = [(dataset, splits[name]) for dataset, splits in parts.items() if name in splits]
        merged[name] = Split(
            name=name,
            images=[image for _, split in pieces for image in split.images],
            labels=np.concatenate([_columns(split, label_space) for _, split in pieces]),
            patient_ids=np.concatenate([split.patient_ids + offsets[dataset] for dataset, split in pieces]),
            view_position=np.concatenate([split.view_position for _, split in pieces]),
            pixel_spacing=np.concatenate([split.pixel_spacing for _, split in pieces]),
            original_size=np.concatenate([split.original_size for _, split in pieces]),
            label_names=label_space,
            paths=[path for dataset, split in pieces for path in _paths(dataset, split, roots or {})]
            if with_paths
            else None,
            datasets=np.concatenate([split.datasets for _, split in pieces]),
        )
    return merged
