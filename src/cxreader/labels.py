"""The 14 ChestX-ray14 findings in one canonical order, with the aliases real files use.

The order is the one of CheXNet (Rajpurkar et al., 2017) and of its reference implementations' list files:
every tensor, checkpoint, CSV and table in cxreader uses it.
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
}

_CANONICAL_BY_LOWER = {**{name.lower(): name for name in FINDINGS}, **ALIASES}


class UnknownFindingError(CXReaderError, ValueError):
    """A finding name that is neither canonical nor a known alias (also a ValueError: it is a bad value)."""


def canonical_finding(name: str) -> str:
    """Return the canonical spelling of a finding name.

    Args:
        name: A finding as written in some file ("Pleural Thickening", "Infiltrate", "effusion", ...).

    Raises:
        UnknownFindingError: when the name is not one of the 14 findings (nor "No Finding").
    """
    try:
        return _CANONICAL_BY_LOWER[name.strip().lower()]
    except KeyError:
        raise UnknownFindingError(
            f"unknown finding {name!r}; expected one of: {', '.join(FINDINGS)} (or {NO_FINDING!r})"
        ) from None


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


def positive_findings(probabilities: Sequence[float], thresholds: Sequence[float]) -> list[str]:
    """The findings whose probability reaches its operating threshold; both arguments in FINDINGS order."""
    return [name for name, p, t in zip(FINDINGS, probabilities, thresholds, strict=True) if p >= t]
