"""The findings cxreader knows, in canonical order, with the aliases real files use.

:data:`FINDINGS` are the 14 ChestX-ray14 findings in the order of CheXNet (Rajpurkar et al., 2017) and of its
reference implementations' list files: a CheXNet checkpoint's outputs come in this order. The harmonised label
space (:data:`HARMONISED_LABELS`) adds the findings the other public sets name and NIH lacks (CheXpert, Irvin et
al. 2019; MIMIC-CXR-JPG, Johnson et al. 2019; PadChest, Bustos et al. 2020): a model trained on several sets
predicts any ordered subset of it, named in its checkpoint's contract (``labels``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cxreader.errors import CXReaderError

FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NUM_FINDINGS = len(FINDINGS)
NO_FINDING = "No Finding"
#: Findings the CheXpert / MIMIC-CXR labelers and PadChest name that ChestX-ray14 lacks.
EXTRA_FINDINGS: tuple[str, ...] = (
    "Lung_Opacity",
    "Lung_Lesion",
    "Enlarged_Cardiomediastinum",
    "Fracture",
    "Support_Devices",
)
#: The harmonised label space: the 14 CheXNet findings, then the extra ones.
HARMONISED_LABELS: tuple[str, ...] = FINDINGS + EXTRA_FINDINGS

#: The 8 findings NIH gives boxes for in ``BBox_List_2017.csv`` (Wang et al. 2017): the first 8 of
#: :data:`FINDINGS`, in the same order.
BOXED_FINDINGS: tuple[str, ...] = FINDINGS[:8]

#: The organ or space each finding affects (lung, pleura, heart, mediastinum or diaphragm): what the synthetic
#: generator records and what a grounded description says.
ORGAN_OF: dict[str, str] = {
    "Atelectasis": "lung",
    "Cardiomegaly": "heart",
    "Effusion": "pleura",
    "Infiltration": "lung",
    "Mass": "lung",
    "Nodule": "lung",
    "Pneumonia": "lung",
    "Pneumothorax": "pleura",
    "Consolidation": "lung",
    "Edema": "lung",
    "Emphysema": "lung",
    "Fibrosis": "lung",
    "Pleural_Thickening": "pleura",
    "Hernia": "diaphragm",
    "Lung_Opacity": "lung",
    "Lung_Lesion": "lung",
    "Enlarged_Cardiomediastinum": "mediastinum",
    "Fracture": "bone",
    "Support_Devices": "device",
}

#: Alternative spellings seen in real files, mapped to the canonical name (keys are lower-cased).
ALIASES: dict[str, str] = {
    "no finding": NO_FINDING,
    "no_finding": NO_FINDING,
    "normal": NO_FINDING,
    "pleural thickening": "Pleural_Thickening",
    "pleural_thickening": "Pleural_Thickening",
    "pleuralthickening": "Pleural_Thickening",
    "infiltrate": "Infiltration",  # BBox_List_2017.csv spells it this way
    "infiltrates": "Infiltration",
    "effusions": "Effusion",
    "pleural effusion": "Effusion",
    "nodules": "Nodule",
    "masses": "Mass",
    "lung opacity": "Lung_Opacity",
    "lung lesion": "Lung_Lesion",
    "enlarged cardiomediastinum": "Enlarged_Cardiomediastinum",
    "support devices": "Support_Devices",
    "fractures": "Fracture",
}

_CANONICAL_BY_LOWER = {**{name.lower(): name for name in HARMONISED_LABELS}, **ALIASES}


class UnknownFindingError(CXReaderError, ValueError):
    """A finding name that is neither canonical nor a known alias (also a ValueError: it is a bad value)."""


def canonical_finding(name: str) -> str:
    """Return the canonical spelling of a finding name.

    Args:
        name: A finding as written in some file ("Pleural Thickening", "Infiltrate", "effusion", ...).

    Raises:
        UnknownFindingError: when the name is not one of :data:`HARMONISED_LABELS` (nor "No Finding").
    """
    try:
        return _CANONICAL_BY_LOWER[name.strip().lower()]
    except KeyError:
        raise UnknownFindingError(
            f"unknown finding {name!r}; expected one of: {', '.join(HARMONISED_LABELS)} (or {NO_FINDING!r})"
        ) from None


def check_label_space(labels: Sequence[str]) -> tuple[str, ...]:
    """A model's label order, checked: canonical names of :data:`HARMONISED_LABELS`, none twice.

    Raises:
        UnknownFindingError: an unknown or non-canonical name, a repeated one, or an empty list.
    """
    labels = tuple(labels)
    if not labels:
        raise UnknownFindingError("a label space needs at least one finding")
    for name in labels:
        if name not in HARMONISED_LABELS:
            raise UnknownFindingError(
                f"{name!r} is not a finding of cxreader's label space ({', '.join(HARMONISED_LABELS)})"
            )
    if len(set(labels)) != len(labels):
        raise UnknownFindingError(f"a finding is named twice in the label space {list(labels)}")
    return labels


def parse_finding_labels(text: str) -> list[int]:
    """Turn a Data_Entry ``Finding Labels`` cell ("Effusion|Infiltration", "No Finding") into 14 binary labels."""
    vector = [0] * NUM_FINDINGS
    for part in str(text).split("|"):
        if not part.strip():
            continue
        canonical = canonical_finding(part)
        if canonical != NO_FINDING:
            vector[FINDINGS.index(canonical)] = 1
    return vector


def display_name(name: str) -> str:
    """Human-readable name: ``Pleural_Thickening`` -> ``Pleural Thickening``."""
    return canonical_finding(name).replace("_", " ")


def positive_findings(
    probabilities: Sequence[float], thresholds: Sequence[float], labels: Sequence[str] = FINDINGS
) -> list[str]:
    """The findings whose probability reaches its operating threshold; both arguments in ``labels`` order
    (a model's label space, by default the 14 CheXNet findings)."""
    return [name for name, p, t in zip(labels, probabilities, thresholds, strict=True) if p >= t]
