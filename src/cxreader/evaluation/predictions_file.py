"""Read a predictions CSV and join it with the NIH ``Data_Entry`` labels, for scoring.

The predictions format is one row per image: ``Image Index`` then 14 probability columns, each named
``prob_<Finding>`` or ``<Finding>`` in any accepted spelling (``Pleural Thickening``, ``Infiltrate``, ...)
and in any order; plain or gzip-compressed. Its labels come from the NIH table, so the columns are the 14
ChestX-ray14 findings: a column of another finding (``prob_Fracture``) is refused. It is the format of the reference CheXNet reproduction's
``preds.csv`` (J. Zech, reproduce-chexnet) and of ``cxreader predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxreader.data.nih_tables import read_csv_rows, read_data_entry
from cxreader.errors import DataError
from cxreader.labels import FINDINGS, UnknownFindingError, canonical_finding

IMAGE_COLUMN = "Image Index"
_PROB_PREFIX = "prob_"
#: How many offending ids an error message lists before summarising.
_SHOW = 5


def _column_finding(path: Path, name: str) -> str:
    text = name.strip()
    if text.lower().startswith(_PROB_PREFIX):
        text = text[len(_PROB_PREFIX) :]
    try:
        finding = canonical_finding(text)
    except UnknownFindingError:
        finding = None
    if finding is None or finding not in FINDINGS:  # the Data_Entry labels score the 14 findings only
        raise DataError(
            path,
            f"unexpected column {name!r}: expected 'prob_<Finding>' or '<Finding>' of the 14 ChestX-ray14 "
            "findings",
        )
    return finding


def _header_order(path: Path, header: list[str]) -> list[int]:
    """For each of the 14 FINDINGS, the CSV column holding its probability."""
    if not header or header[0].lstrip("\ufeff").strip() != IMAGE_COLUMN:
        first = header[0] if header else ""
        raise DataError(path, f"not a predictions CSV: first column is {first!r}, expected {IMAGE_COLUMN!r}")
    column_of: dict[str, int] = {}
    for column, name in enumerate(header[1:], start=1):
        finding = _column_finding(path, name)
        if finding in column_of:
            raise DataError(
                path, f"finding {finding} has two columns ({header[column_of[finding]]!r}, {name!r})"
            )
        column_of[finding] = column
    missing = [name for name in FINDINGS if name not in column_of]
    if missing:
        raise DataError(path, f"missing probability columns for: {', '.join(missing)}")
    return [column_of[name] for name in FINDINGS]


def _first_bad_value(path: Path, rows: list[list[str]], header: list[str]) -> DataError:
    """Locate the first cell that is not a probability, for a message naming line and column."""
    for line_offset, row in enumerate(rows):
        for column in range(1, len(header)):
            text = row[column]
            try:
                value = float(text)
            except ValueError:
                return DataError(
                    path, f"line {line_offset + 2}, column {header[column]!r}: non-numeric value {text!r}"
                )
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                return DataError(
                    path,
                    f"line {line_offset + 2}, column {header[column]!r}: {text!r} is not a probability in [0, 1]",
                )
    return DataError(path, "invalid probability values")


def load_predictions_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a predictions CSV (plain or .gz; format in the module docstring).

    Returns:
        ``(image_ids, probs)``: the ids in file order and an ``(N, 14)`` float64 array in :data:`FINDINGS`
        order.

    Raises:
        DataError: naming the file, for a wrong header, a missing or duplicated finding column, a row with
            the wrong number of fields, a value that is not a number in [0, 1], a duplicate image id, or no rows.
    """
    path = Path(path)
    header, rows = read_csv_rows(path)
    body = [[cell.strip() for cell in row] for row in rows]
    order = _header_order(path, header)
    if not body:
        raise DataError(path, "no prediction rows after the header")
    seen: set[str] = set()
    for line_offset, row in enumerate(body):
        while len(row) > len(header) and not row[-1]:
            row.pop()
        if len(row) != len(header):
            raise DataError(path, f"line {line_offset + 2}: expected {len(header)} fields, found {len(row)}")
        if not row[0]:
            raise DataError(path, f"line {line_offset + 2}: empty {IMAGE_COLUMN}")
        if row[0] in seen:
            raise DataError(path, f"line {line_offset + 2}: image {row[0]!r} appears more than once")
        seen.add(row[0])

    try:
        table = np.array([row[1:] for row in body], dtype=np.float64)
    except ValueError:
        raise _first_bad_value(path, body, header) from None
    if not np.all((table >= 0.0) & (table <= 1.0)):  # NaN fails both comparisons
        raise _first_bad_value(path, body, header)
    return [row[0] for row in body], table[:, [column - 1 for column in order]]


@dataclass
class LabelledPredictions:
    """A predictions file joined with its Data_Entry label rows.

    Attributes:
        images: Image ids in prediction-file order.
        labels: ``(N, 14)`` float64 0/1 labels in :data:`FINDINGS` order.
        probs: ``(N, 14)`` float64 probabilities in the same order.
        table: The Data_Entry rows of these images, in the same order (age, sex, view, ... for subgroups).
    """

    images: list[str]
    labels: np.ndarray
    probs: np.ndarray
    table: pd.DataFrame


def read_labelled_predictions(predictions_path: str | Path, labels_path: str | Path) -> LabelledPredictions:
    """Join a predictions CSV with the rows of a ``Data_Entry_2017*.csv`` table on the image file name.

    Every predicted image must have a label row; labels without a prediction are ignored, since a
    predictions file usually covers one split.

    Args:
        predictions_path: Predictions CSV (see :func:`load_predictions_csv`).
        labels_path: ``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv`` (plain or .gz).

    Raises:
        DataError: either file is malformed, or predictions lack label rows (count and first few listed).
    """
    image_ids, probs = load_predictions_csv(predictions_path)
    table = read_data_entry(labels_path).set_index("image")
    positions = table.index.get_indexer(image_ids)
    if (positions < 0).any():
        missing = [image_ids[i] for i in np.flatnonzero(positions < 0)]
        raise DataError(
            predictions_path,
            f"{len(missing)} of {len(image_ids)} predicted images have no label row in {labels_path} "
            f"(first: {', '.join(missing[:_SHOW])})",
        )
    rows = table.iloc[positions].reset_index()
    labels = rows[list(FINDINGS)].to_numpy(dtype=np.float64)
    return LabelledPredictions(images=image_ids, labels=labels, probs=probs, table=rows)


def load_labelled_predictions(
    predictions_path: str | Path, labels_path: str | Path
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """:func:`read_labelled_predictions` as ``(image_ids, labels, probs)``.

    Returns:
        ``(image_ids, labels, probs)``: ids in prediction-file order, ``(N, 14)`` 0/1 labels and ``(N, 14)``
        probabilities, both float64 in :data:`FINDINGS` order.

    Raises:
        DataError: either file is malformed, or predictions lack label rows (count and first few listed).
    """
    joined = read_labelled_predictions(predictions_path, labels_path)
    return joined.images, joined.labels, joined.probs
