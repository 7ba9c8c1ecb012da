"""Several hospitals' labels in one label space: the label maps of each dataset and the uncertainty policies.

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

Splitting and merging the datasets' images: :mod:`cxreader.data.harmonise`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxreader.data.chexpert import CHEXPERT_LABELS
from cxreader.errors import ConfigError
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


def check_dataset(dataset: str) -> str:
    """The dataset name, checked against :data:`DATASETS` (ConfigError naming the known ones)."""
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
    defined = {label for dataset in datasets for label in DEFINED_LABELS[check_dataset(dataset)]}
    return tuple(label for label in HARMONISED_LABELS if label in defined)


def padchest_informative(labels: object) -> bool:
    """Whether a PadChest ``Labels`` list says anything about findings (not only exclude / unchanged /
    suboptimal study, and parsable)."""
    return labels is not None and not set(labels) <= PADCHEST_UNINFORMATIVE  # type: ignore[arg-type]


def _padchest_labels(frame: pd.DataFrame, label_space: tuple[str, ...]) -> np.ndarray:
    mapping = DATASET_LABEL_MAPS["padchest"]
    defined = set(DEFINED_LABELS["padchest"])
    out = np.full((len(frame), len(label_space)), np.nan, dtype=np.float32)
    columns = {label: index for index, label in enumerate(label_space) if label in defined}
    for row, labels in enumerate(frame["labels"]):
        if not padchest_informative(labels):
            continue
        for index in columns.values():
            out[row, index] = 0.0
        for name in labels:
            target = mapping.get(name)
            if target in columns:
                out[row, columns[target]] = 1.0
    return out


def silent_rows(frame: pd.DataFrame) -> np.ndarray:
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
        out[silent_rows(frame)] = np.nan
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
    check_dataset(dataset)
    label_space = check_label_space(label_space)
    if dataset == "padchest":
        return _padchest_labels(frame, label_space)
    return _coded_labels(dataset, frame, label_space, policy or UncertaintyPolicy())


def unmapped_labels(dataset: str, frame: pd.DataFrame) -> dict[str, int]:
    """The source labels of ``frame`` left out of the harmonised space, with their positive image counts.

    For PadChest every listed name that :data:`DATASET_LABEL_MAPS` does not map (most frequent first, ties
    by name); for CheXpert and MIMIC-CXR-JPG :data:`CHEXPERT_UNMAPPED`; for NIH none.
    """
    check_dataset(dataset)
    if dataset == "nih":
        return {}
    if dataset != "padchest":
        return {label: int((frame[label] == 1.0).sum()) for label in CHEXPERT_UNMAPPED}
    mapping = DATASET_LABEL_MAPS["padchest"]
    counts = Counter(name for labels in frame["labels"] if labels for name in labels if name not in mapping)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
