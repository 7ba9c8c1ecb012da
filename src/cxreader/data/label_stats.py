"""Per-split label counts shared by the CheXpert, MIMIC-CXR-JPG and PadChest readers.

A label table here is a :class:`pandas.DataFrame` with one row per image and the columns ``split``,
``patient_id`` and ``frontal`` (bool). The CheXpert-style tables (Irvin et al. 2019; Johnson et al. 2019) add
one float column per observation coded as published: ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain,
NaN not mentioned. :func:`coded_split_summaries` counts those; the PadChest reader (Bustos et al. 2020), whose
labels are lists of names, builds its :class:`SplitSummary` objects itself with :class:`LabelCounts`.

Also here: :func:`read_table_header` and :func:`require_columns`, the one-line error for a table whose header
lacks the columns a reader needs.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxreader.data.nih_tables import open_text
from cxreader.errors import DataError

#: The published coding of a CheXpert-style observation cell (an empty cell means "not mentioned").
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
#: The four counts of :class:`LabelCounts`, in report order.
COUNT_KINDS = ("positive", "negative", "uncertain", "unmentioned")


@dataclass(frozen=True)
class LabelCounts:
    """How many images of a split have one label positive, negative, uncertain or not mentioned."""

    positive: int
    negative: int
    uncertain: int
    unmentioned: int

    @property
    def total(self) -> int:
        return self.positive + self.negative + self.uncertain + self.unmentioned

    def percent(self, kind: str) -> float:
        """``kind`` (one of :data:`COUNT_KINDS`) as a percentage of the images; NaN for an empty split."""
        total = self.total
        return float("nan") if total == 0 else 100.0 * getattr(self, kind) / total


@dataclass(frozen=True)
class SplitSummary:
    """Images, distinct patients, frontal images, images per view (projection) and the :class:`LabelCounts` of
    each label of one split."""

    images: int
    patients: int
    frontal: int
    labels: dict[str, LabelCounts] = field(default_factory=dict)
    #: Images per view as the table names it (CheXpert ``AP``/``PA``/``Lateral``, MIMIC ``ViewPosition``,
    #: PadChest ``Projection``), most frequent first; ``""`` where the table gives none.
    views: dict[str, int] = field(default_factory=dict)


def view_counts(part: pd.DataFrame) -> dict[str, int]:
    """Images per value of the table's ``view`` column, most frequent first (ties by name); empty without one."""
    if "view" not in part:
        return {}
    counts = part["view"].fillna("").astype(str).str.strip().value_counts()
    return dict(
        sorted(
            ((str(name), int(count)) for name, count in counts.items()), key=lambda item: (-item[1], item[0])
        )
    )


def read_table_header(path: str | Path) -> list[str]:
    """The header fields of a plain or gzip CSV file (stripped; a leading unnamed field kept as ``""``).

    Raises:
        DataError: the file is missing, unreadable or empty.
    """
    path = Path(path)
    try:
        with open_text(path) as handle:
            header = next(csv.reader(handle), None)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from exc
    if not header:
        raise DataError(path, "empty file")
    return [cell.strip().lstrip("\ufeff") for cell in header]


def require_columns(path: str | Path, header: Iterable[str], required: Sequence[str], what: str) -> None:
    """Raise one :class:`DataError` naming ``path``, the table kind ``what`` and every missing column."""
    present = set(header)
    missing = [column for column in required if column not in present]
    if missing:
        names = ", ".join(repr(column) for column in missing)
        raise DataError(path, f"not a {what}: missing column{'s' if len(missing) > 1 else ''} {names}")


def coded_counts(values: np.ndarray) -> LabelCounts:
    """Count a column of coded observations (1.0 / 0.0 / -1.0 / NaN)."""
    return LabelCounts(
        positive=int(np.count_nonzero(values == POSITIVE)),
        negative=int(np.count_nonzero(values == NEGATIVE)),
        uncertain=int(np.count_nonzero(values == UNCERTAIN)),
        unmentioned=int(np.count_nonzero(np.isnan(values))),
    )


def check_coding(path: str | Path, frame: pd.DataFrame, labels: Sequence[str]) -> None:
    """Raise :class:`DataError` (file, column, value) for a label cell that is not 1, 0, -1 or empty."""
    allowed = (POSITIVE, NEGATIVE, UNCERTAIN)
    for label in labels:
        values = frame[label].to_numpy(dtype=float)
        bad = ~(np.isnan(values) | np.isin(values, allowed))
        if bad.any():
            raise DataError(
                path, f"column {label!r}: value {values[bad][0]!r} is not 1.0, 0.0, -1.0 or empty"
            )


def numeric_labels(path: str | Path, frame: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Convert the label columns of ``frame`` (read as text) to floats, empty as NaN, and check their coding."""
    for label in labels:
        text = frame[label].astype(str).str.strip()
        try:
            frame[label] = pd.to_numeric(text.mask(text == ""), errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            raise DataError(path, f"column {label!r}: {exc}") from exc
    check_coding(path, frame, labels)
    return frame


def coded_split_summaries(frame: pd.DataFrame, labels: Sequence[str]) -> dict[str, SplitSummary]:
    """One :class:`SplitSummary` per value of ``frame["split"]``, in order of first appearance."""
    summaries = {}
    for name in pd.unique(frame["split"]):
        part = frame[frame["split"] == name]
        summaries[str(name)] = SplitSummary(
            images=len(part),
            patients=int(part["patient_id"].nunique()),
            frontal=int(part["frontal"].sum()),
            labels={label: coded_counts(part[label].to_numpy(dtype=float)) for label in labels},
            views=view_counts(part),
        )
    return summaries
