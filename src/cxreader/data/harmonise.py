"""Several hospitals' datasets in one label space: label maps, uncertainty policies, patient-level splits.

Datasets: NIH ChestX-ray14 (Wang et al., CVPR 2017), CheXpert (Irvin et al., AAAI 2019), MIMIC-CXR-JPG
(Johnson et al., arXiv:1901.07042, 2019) and PadChest (Bustos et al., Medical Image Analysis 66, 2020). Each
names its findings its own way; :data:`DATASET_LABEL_MAPS` maps every source label cxreader uses to one label
of :data:`~cxreader.labels.HARMONISED_LABELS`, and :data:`DEFINED_LABELS` says which harmonised labels a
dataset defines. A label a dataset does not define is *unknown* for its images: NaN, masked in the loss,
never 0 (torchxrayvision's convention, Cohen et al., "TorchXRayVision: A library of chest X-ray datasets and
models", MIDL 2022).

CheXpert and MIMIC-CXR-JPG (the same 14 CheXpert labeler observations, coded 1 / 0 / -1 uncertain / empty):

============================  ============================
source observation            harmonised label
============================  ============================
Enlarged Cardiomediastinum    Enlarged_Cardiomediastinum
Cardiomegaly                  Cardiomegaly
Lung Opacity                  Lung_Opacity
Lung Lesion                   Lung_Lesion
Edema                         Edema
Consolidation                 Consolidation
Pneumonia                     Pneumonia
Atelectasis                   Atelectasis
Pneumothorax                  Pneumothorax
Pleural Effusion              Effusion
Fracture                      Fracture
Support Devices               Support_Devices
No Finding                    (unmapped: the absence of all others, not a finding)
Pleural Other                 (unmapped: thickening, plaques, calcification and scarring in one label)
============================  ============================

Infiltration, Mass, Nodule, Emphysema, Fibrosis, Pleural_Thickening and Hernia are not CheXpert observations:
unknown (NaN) for CheXpert and MIMIC images. Coded cells go through an :class:`UncertaintyPolicy`. An image
whose 14 observations are all empty (a MIMIC study without a label row; 12 rows of CheXpert's train.csv) has
all labels NaN: the labeler said nothing about it. :func:`load_dataset_splits` drops those images.

PadChest lists, per image, the report's finding names (lower case); a name is mapped when it names the finding
itself or one of its kinds (the counts are images of the 160,861-row table, ``Labels`` as published):

==========================  ===========================================================================
harmonised label            PadChest names (images)
==========================  ===========================================================================
Atelectasis                 laminar atelectasis (5190), atelectasis (2905), lobar atelectasis (860),
                            segmental atelectasis (174), atelectasis basal (40), total atelectasis (28),
                            round atelectasis (6)
Cardiomegaly                cardiomegaly (15022)
Effusion                    pleural effusion (9853), loculated pleural effusion (306),
                            loculated fissural effusion (137), empyema (5)
Infiltration                interstitial pattern (7799), infiltrates (7089), alveolar pattern (5738),
                            reticular interstitial pattern (710), reticulonodular interstitial pattern
                            (286), ground glass pattern (275) — the patterns as torchxrayvision maps them
Mass                        pulmonary mass (1039), mass (56)
Nodule                      nodule (3748), multiple nodules (358)
Pneumonia                   pneumonia (7953), atypical pneumonia (244)
Pneumothorax                pneumothorax (533), hydropneumothorax (48)
Consolidation               consolidation (2497), air bronchogram (197)
Edema                       pulmonary edema (1456)
Emphysema                   emphysema (1538)
Fibrosis                    pulmonary fibrosis (1228)
Pleural_Thickening          apical pleural thickening (3625), pleural thickening (1055), calcified pleural
                            thickening (644), calcified pleural plaques (247), pleural plaques (26)
Hernia                      hiatal hernia (2363)
Enlarged_Cardiomediastinum  superior mediastinal enlargement (790), mediastinal enlargement (347)
Fracture                    callus rib fracture (2967), rib fracture (848), vertebral fracture (369),
                            clavicle fracture (338), humeral fracture (308), fracture (16)
Support_Devices             NSG tube (5390), pacemaker (3508), central venous catheter via jugular vein
                            (3204), endotracheal tube (2429), tracheostomy tube (1825), central venous
                            catheter via subclavian vein (1654), dual chamber device (1352), artificial
                            heart valve (720), single chamber device (689), chest drain tube (621),
                            reservoir central venous catheter (549), artificial mitral heart valve (450),
                            central venous catheter (445), artificial aortic heart valve (326), dai (275,
                            an implanted defibrillator), central venous catheter via umbilical vein (170),
                            catheter (74), electrical device (43), ventriculoperitoneal drain tube (35),
                            gastrostomy tube (10), nephrostomy tube (3) — the CheXpert labeler's devices
                            (tubes, lines, catheters, pacemakers, defibrillators, valves)
==========================  ===========================================================================

Lung_Opacity and Lung_Lesion are not defined for PadChest: they are parents of findings PadChest names
separately (an image listing only ``pneumonia`` would otherwise be a Lung_Opacity negative). The other
PadChest names stay unmapped: 127 of the table's 193, among them ``normal``, ``COPD signs``, ``aortic
elongation``, ``scoliosis``, ``costophrenic angle blunting``, ``pseudonodule``, ``subcutaneous emphysema``,
``pericardial effusion``, ``mediastinal mass``, ``sternotomy`` and ``suture material``; :func:`unmapped_labels`
counts them. PadChest lists only what a report mentions, so a defined label absent from an image's list is 0
(negative). An image whose list says nothing about findings — a malformed ``Labels`` cell (103 rows of the
table), an empty list (777), or only ``exclude`` / ``unchanged`` / ``suboptimal study``
(:data:`PADCHEST_UNINFORMATIVE`; 6,302 rows in all) — has all labels NaN in :func:`harmonised_labels` and is
dropped by :func:`load_dataset_splits`.

NIH maps its 14 findings to themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxreader.data.chestxray14 import SPLIT_NAMES, ImageLocator, Split, load_splits
from cxreader.data.chexpert import CHEXPERT_LABELS, chexpert_image_paths, read_chexpert
from cxreader.data.mimic import MIMIC_SPLITS, SPLIT_FILE, find_mimic_tables, read_mimic_root
from cxreader.data.padchest import find_padchest_table, padchest_image_paths, read_padchest
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS, HARMONISED_LABELS, check_label_space

#: The datasets cxreader reads, by the names a Split's ``datasets`` uses.
DATASETS = ("nih", "chexpert", "mimic", "padchest")
#: The uncertainty policies of Irvin et al. 2019, plus U-Ignore.
UNCERTAINTY_POLICIES = ("ignore", "ones", "zeros", "soft")

_CHEXPERT_MAP = {
    "Enlarged Cardiomediastinum": "Enlarged_Cardiomediastinum",
    "Cardiomegaly": "Cardiomegaly",
    "Lung Opacity": "Lung_Opacity",
    "Lung Lesion": "Lung_Lesion",
    "Edema": "Edema",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax",
    "Pleural Effusion": "Effusion",
    "Fracture": "Fracture",
    "Support Devices": "Support_Devices",
}
#: The CheXpert / MIMIC-CXR-JPG observations left out of the harmonised space, and why (module docstring).
CHEXPERT_UNMAPPED = ("No Finding", "Pleural Other")

#: Harmonised label → the PadChest names that mean it (module docstring).
PADCHEST_SOURCES: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "atelectasis",
        "laminar atelectasis",
        "lobar atelectasis",
        "segmental atelectasis",
        "atelectasis basal",
        "total atelectasis",
        "round atelectasis",
    ),
    "Cardiomegaly": ("cardiomegaly",),
    "Effusion": ("pleural effusion", "loculated pleural effusion", "loculated fissural effusion", "empyema"),
    "Infiltration": (
        "infiltrates",
        "interstitial pattern",
        "reticular interstitial pattern",
        "reticulonodular interstitial pattern",
        "alveolar pattern",
        "ground glass pattern",
    ),
    "Mass": ("mass", "pulmonary mass"),
    "Nodule": ("nodule", "multiple nodules"),
    "Pneumonia": ("pneumonia", "atypical pneumonia"),
    "Pneumothorax": ("pneumothorax", "hydropneumothorax"),
    "Consolidation": ("consolidation", "air bronchogram"),
    "Edema": ("pulmonary edema",),
    "Emphysema": ("emphysema",),
    "Fibrosis": ("pulmonary fibrosis",),
    "Pleural_Thickening": (
        "pleural thickening",
        "apical pleural thickening",
        "calcified pleural thickening",
        "pleural plaques",
        "calcified pleural plaques",
    ),
    "Hernia": ("hiatal hernia",),
    "Enlarged_Cardiomediastinum": ("mediastinal enlargement", "superior mediastinal enlargement"),
    "Fracture": (
        "fracture",
        "rib fracture",
        "callus rib fracture",
        "clavicle fracture",
        "vertebral fracture",
        "humeral fracture",
    ),
    "Support_Devices": (
        "NSG tube",
        "endotracheal tube",
        "tracheostomy tube",
        "chest drain tube",
        "ventriculoperitoneal drain tube",
        "gastrostomy tube",
        "nephrostomy tube",
        "pacemaker",
        "dual chamber device",
        "single chamber device",
        "dai",
        "electrical device",
        "central venous catheter",
        "central venous catheter via jugular vein",
        "central venous catheter via subclavian vein",
        "central venous catheter via umbilical vein",
        "reservoir central venous catheter",
        "catheter",
        "artificial heart valve",
        "artificial mitral heart valve",
        "artificial aortic heart valve",
    ),
}
#: PadChest names that say nothing about findings: a list of only these leaves every label unknown.
PADCHEST_UNINFORMATIVE = frozenset({"exclude", "unchanged", "suboptimal study"})

#: Per dataset: source label → harmonised label (see the tables of the module docstring).
DATASET_LABEL_MAPS: dict[str, dict[str, str]] = {
    "nih": {finding: finding for finding in FINDINGS},
    "chexpert": dict(_CHEXPERT_MAP),
    "mimic": dict(_CHEXPERT_MAP),
    "padchest": {name: label for label, names in PADCHEST_SOURCES.items() for name in names},
}
#: Per dataset: the harmonised labels it defines, in :data:`~cxreader.labels.HARMONISED_LABELS` order.
DEFINED_LABELS: dict[str, tuple[str, ...]] = {
    dataset: tuple(label for label in HARMONISED_LABELS if label in set(mapping.values()))
    for dataset, mapping in DATASET_LABEL_MAPS.items()
}


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


# --- uncertainty ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UncertaintyPolicy:
    """What a CheXpert-coded observation becomes as a training target (Irvin et al. 2019).

    The CheXpert and MIMIC-CXR-JPG labelers code each observation ``1`` (positive), ``0`` (negative), ``-1``
    (uncertain) or leave it empty (not mentioned). Positives and negatives stay 1 and 0. An uncertain mention
    becomes NaN under ``ignore`` (U-Ignore: masked in the loss), 1 under ``ones`` (U-Ones), 0 under ``zeros``
    (U-Zeros), or ``soft_value`` under ``soft`` (a soft target in (0, 1)). An observation the report does not
    mention becomes 0 under every policy: Irvin et al. train on unmentioned observations as negatives.

    Attributes:
        name: One of :data:`UNCERTAINTY_POLICIES`.
        soft_value: The target of an uncertain mention under ``soft``, strictly between 0 and 1.
    """

    name: str = "ignore"
    soft_value: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in UNCERTAINTY_POLICIES:
            raise ConfigError(
                f"unknown uncertainty policy {self.name!r}; expected one of {', '.join(UNCERTAINTY_POLICIES)}"
            )
        value = float(self.soft_value)
        if not 0.0 < value < 1.0:
            raise ConfigError(f"the soft uncertainty target must be strictly between 0 and 1, got {value:g}")
        object.__setattr__(self, "soft_value", value)

    @classmethod
    def parse(cls, text: str) -> UncertaintyPolicy:
        """``ignore``, ``ones``, ``zeros``, ``soft`` or ``soft=V`` (0 < V < 1).

        Raises:
            ConfigError: anything else.
        """
        name, sep, value = str(text).strip().partition("=")
        name = name.strip().lower()
        if not sep:
            return cls(name)
        if name != "soft":
            raise ConfigError(f"uncertainty policy {text!r}: only 'soft' takes a value (soft=0.3)")
        try:
            soft = float(value)
        except ValueError:
            raise ConfigError(f"uncertainty policy {text!r}: {value.strip()!r} is not a number") from None
        if math.isnan(soft):
            raise ConfigError(f"uncertainty policy {text!r}: the soft target must be a number in (0, 1)")
        return cls(name, soft)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> UncertaintyPolicy:
        """The inverse of :meth:`to_json`."""
        return cls(str(data.get("name", "ignore")), float(data.get("soft_value", 0.5)))  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        """``{"name", "soft_value"}``, for the training config a checkpoint carries."""
        return {"name": self.name, "soft_value": self.soft_value}

    @property
    def uncertain_target(self) -> float:
        """What an uncertain (-1) mention becomes (NaN under ``ignore``)."""
        return {"ignore": math.nan, "ones": 1.0, "zeros": 0.0, "soft": self.soft_value}[self.name]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map coded observations (1 / 0 / -1 / NaN) to float32 targets (see the class docstring).

        Raises:
            ValueError: a value other than 1, 0, -1 or NaN.
        """
        values = np.asarray(values, dtype=np.float64)
        unmentioned = np.isnan(values)
        bad = ~(unmentioned | np.isin(values, (1.0, 0.0, -1.0)))
        if bad.any():
            raise ValueError(f"coded observation {values[bad][0]!r} is not 1, 0, -1 or NaN (empty)")
        targets = np.where(values == -1.0, self.uncertain_target, values)
        return np.where(unmentioned, 0.0, targets).astype(np.float32)


# --- label maps -----------------------------------------------------------------------------------------------


def dataset_label_space(datasets: Sequence[str]) -> tuple[str, ...]:
    """The union of the labels the datasets define, in :data:`~cxreader.labels.HARMONISED_LABELS` order.

    NIH alone gives :data:`~cxreader.labels.FINDINGS` exactly.

    Raises:
        ConfigError: no dataset, or an unknown one.
    """
    if not datasets:
        raise ConfigError("no dataset given")
    defined = {label for dataset in datasets for label in DEFINED_LABELS[_check_dataset(dataset)]}
    return tuple(label for label in HARMONISED_LABELS if label in defined)


def _padchest_informative(labels: object) -> bool:
    return labels is not None and not set(labels) <= PADCHEST_UNINFORMATIVE  # type: ignore[arg-type]


def _padchest_labels(frame: pd.DataFrame, label_space: tuple[str, ...]) -> np.ndarray:
    mapping = DATASET_LABEL_MAPS["padchest"]
    defined = set(DEFINED_LABELS["padchest"])
    out = np.full((len(frame), len(label_space)), np.nan, dtype=np.float32)
    columns = {label: index for index, label in enumerate(label_space) if label in defined}
    for row, labels in enumerate(frame["labels"]):
        if not _padchest_informative(labels):
            continue
        for index in columns.values():
            out[row, index] = 0.0
        for name in labels:
            target = mapping.get(name)
            if target in columns:
                out[row, columns[target]] = 1.0
    return out


def _silent(frame: pd.DataFrame) -> np.ndarray:
    """Rows of a CheXpert-coded table whose 14 observations are all empty: the labeler said nothing."""
    return frame[list(CHEXPERT_LABELS)].isna().all(axis=1).to_numpy()


def _coded_labels(
    dataset: str, frame: pd.DataFrame, label_space: tuple[str, ...], policy: UncertaintyPolicy
) -> np.ndarray:
    source_of = {target: source for source, target in DATASET_LABEL_MAPS[dataset].items()}
    missing = [
        source_of[label] for label in label_space if label in source_of and source_of[label] not in frame
    ]
    if missing:
        raise ValueError(f"the {dataset} table has no column {', '.join(map(repr, missing))}")
    out = np.full((len(frame), len(label_space)), np.nan, dtype=np.float32)
    for index, target in enumerate(label_space):
        if target in source_of:
            out[:, index] = policy.apply(frame[source_of[target]].to_numpy(dtype=np.float64))
    if dataset != "nih":
        out[_silent(frame)] = np.nan
    return out


def harmonised_labels(
    dataset: str,
    frame: pd.DataFrame,
    label_space: Sequence[str] = HARMONISED_LABELS,
    policy: UncertaintyPolicy | None = None,
) -> np.ndarray:
    """The ``(N, len(label_space))`` float32 targets of a dataset's label table.

    Args:
        dataset: One of :data:`DATASETS`.
        frame: The table as its reader returns it: :func:`~cxreader.data.chexpert.read_chexpert`,
            :func:`~cxreader.data.mimic.read_mimic`, :func:`~cxreader.data.padchest.read_padchest`, or the NIH
            :func:`~cxreader.data.nih_tables.read_data_entry` (one 0/1 column per finding).
        label_space: Canonical harmonised labels, in the model's output order.
        policy: The :class:`UncertaintyPolicy` of coded observations (default U-Ignore); PadChest and NIH have
            no uncertain labels.

    Returns:
        1 / 0 / soft targets where the dataset defines the label, NaN where it does not, where U-Ignore
        masks an uncertain mention, and on every label of a row that says nothing (a CheXpert / MIMIC row with
        all 14 observations empty, an uninformative PadChest row: module docstring).
    """
    _check_dataset(dataset)
    label_space = check_label_space(label_space)
    if dataset == "padchest":
        return _padchest_labels(frame, label_space)
    return _coded_labels(dataset, frame, label_space, policy or UncertaintyPolicy())


def unmapped_labels(dataset: str, frame: pd.DataFrame) -> dict[str, int]:
    """The source labels of ``frame`` left out of the harmonised space, with their positive image counts.

    For PadChest every listed name that :data:`DATASET_LABEL_MAPS` does not map (most frequent first, ties
    by name); for CheXpert and MIMIC-CXR-JPG :data:`CHEXPERT_UNMAPPED`; for NIH none.
    """
    _check_dataset(dataset)
    if dataset == "nih":
        return {}
    if dataset != "padchest":
        return {label: int((frame[label] == 1.0).sum()) for label in CHEXPERT_UNMAPPED}
    mapping = DATASET_LABEL_MAPS["padchest"]
    counts = Counter(name for labels in frame["labels"] if labels for name in labels if name not in mapping)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


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


def _chexpert_table(root: Path, label_space: tuple[str, ...], policy: UncertaintyPolicy) -> _Table:
    tables = {name: _find(root, f"{name}.csv", "CheXpert") for name in ("train", "valid")}
    parts = []
    for name, path in tables.items():
        part = read_chexpert(path)
        part["split"] = "test" if name == "valid" else ""
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[~_silent(frame)].reset_index(drop=True)
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
    labels = harmonised_labels("chexpert", frame, label_space, policy)
    return _Table(table, labels, label_space, tables["train"])


def _find(root: Path, name: str, what: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(root / name, f"{what} table not found (plain or .gz)")


def _mimic_table(root: Path, label_space: tuple[str, ...], policy: UncertaintyPolicy) -> _Table:
    frame = read_mimic_root(root)
    split_file = find_mimic_tables(root, (SPLIT_FILE,))[SPLIT_FILE]
    unknown = sorted(set(frame["split"]) - set(MIMIC_SPLITS))
    if unknown:
        raise DataError(split_file, f"split {unknown[0]!r} is not one of {', '.join(MIMIC_SPLITS)}")
    splits_of = frame.groupby("subject_id")["split"].nunique()
    if (splits_of > 1).any():
        raise DataError(split_file, f"subject {splits_of[splits_of > 1].index[0]} is in more than one split")
    frame = frame[~_silent(frame)].reset_index(drop=True)
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
    return _Table(table, harmonised_labels("mimic", frame, label_space, policy), label_space, split_file)


def _padchest_table(root: Path, label_space: tuple[str, ...]) -> _Table:
    path = find_padchest_table(root)
    frame = read_padchest(path)
    frame = frame[[_padchest_informative(labels) for labels in frame["labels"]]].reset_index(drop=True)
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
    return Split(
        name=name,
        images=frame["image"].tolist(),
        labels=table.labels[rows],
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
    _check_dataset(dataset)
    label_space = check_label_space(label_space)
    fractions = _fractions(val_fraction, test_fraction)
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, f"not a directory (the {dataset} dataset root)")
    if dataset == "nih":
        return _nih_splits(root, label_space, seed, fractions)
    if dataset == "chexpert":
        table = _chexpert_table(root, label_space, uncertainty)
    elif dataset == "mimic":
        table = _mimic_table(root, label_space, uncertainty)
    else:
        table = _padchest_table(root, label_space)
    if frontal_only:
        keep = table.frame["frontal"].to_numpy(dtype=bool)
        table = _Table(
            table.frame[keep].reset_index(drop=True), table.labels[keep], label_space, table.source
        )
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
        _check_dataset(dataset)
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
