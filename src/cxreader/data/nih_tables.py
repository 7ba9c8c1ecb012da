"""Readers for the NIH ChestX-ray14 tables as published: ``Data_Entry_2017*.csv`` and ``BBox_List_2017.csv``.

Wang et al., "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised
Classification and Localization of Common Thorax Diseases", CVPR 2017.

The published CSVs have two quirks handled here: the headers ``OriginalImage[Width,Height]`` and
``OriginalImagePixelSpacing[x,y]`` each span two comma-separated fields, and some versions carry a trailing
empty column (``Data_Entry_2017.csv``) or trailing empty header fields (``BBox_List_2017.csv``). Plain and
gzip-compressed files are both accepted.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd

from cxreader.errors import DataError
from cxreader.labels import (
    FINDINGS,
    NUM_FINDINGS,
    UnknownFindingError,
    canonical_finding,
    parse_finding_labels,
)

# The header fields of a Data_Entry table, in file order, and the normalised column name of each.
_DATA_ENTRY_FIELDS = {
    "Image Index": "image",
    "Finding Labels": "finding_labels",
    "Follow-up #": "follow_up",
    "Patient ID": "patient_id",
    "Patient Age": "patient_age",
    "Patient Gender": "patient_gender",
    "View Position": "view_position",
    "OriginalImage[Width": "original_width",
    "Height]": "original_height",
    "OriginalImagePixelSpacing[x": "pixel_spacing_x",
    "y]": "pixel_spacing_y",
}
_DATA_ENTRY_HEADER = tuple(_DATA_ENTRY_FIELDS)
#: Normalised column names of a Data_Entry table, in file order.
DATA_ENTRY_COLUMNS = tuple(_DATA_ENTRY_FIELDS.values())
BBOX_COLUMNS = ("image", "finding", "x", "y", "w", "h")


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file (chosen by content, not by name)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header (trailing empty fields dropped) and the non-blank rows of a plain or gzip CSV file."""
    try:
        with open_text(path) as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from exc
    if not rows:
        raise DataError(path, "empty file")
    header = [cell.strip() for cell in rows[0]]
    while header and not header[-1]:
        header.pop()
    return header, rows[1:]


def read_data_entry(path: str | Path) -> pd.DataFrame:
    """Read ``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv`` (plain or .gz).

    Returns:
        One row per image with columns :data:`DATA_ENTRY_COLUMNS` plus one 0/1 column per finding in
        :data:`~cxreader.labels.FINDINGS` order. ``patient_id`` is an int; ``patient_age`` is in years (the
        2017 file's ``058Y`` strings are converted); spacing is in millimetres.

    Raises:
        DataError: the header is not the Data_Entry header, a row has the wrong number of fields, or a
            label is unknown; the message names the file and the line.
    """
    path = Path(path)
    header, rows = read_csv_rows(path)
    if tuple(header[: len(_DATA_ENTRY_HEADER)]) != _DATA_ENTRY_HEADER:
        raise DataError(
            path,
            f"not a ChestX-ray14 Data_Entry CSV: header starts {','.join(header[:4])!r}, expected "
            f"{','.join(_DATA_ENTRY_HEADER[:4])!r}",
        )
    width = len(_DATA_ENTRY_HEADER)
    records = []
    for line_number, row in enumerate(rows, start=2):
        cells = [cell.strip() for cell in row]
        while len(cells) > width and not cells[-1]:
            cells.pop()
        if len(cells) != width:
            raise DataError(path, f"line {line_number}: expected {width} fields, found {len(cells)}")
        records.append(cells)
    frame = pd.DataFrame(records, columns=list(DATA_ENTRY_COLUMNS))
    try:
        frame["follow_up"] = frame["follow_up"].astype(int)
        frame["patient_id"] = frame["patient_id"].astype(int)
        frame["patient_age"] = frame["patient_age"].map(_parse_age)
        for column in ("original_width", "original_height"):
            frame[column] = pd.to_numeric(frame[column]).astype(int)
        for column in ("pixel_spacing_x", "pixel_spacing_y"):
            frame[column] = pd.to_numeric(frame[column]).astype(float)
    except ValueError as exc:
        raise DataError(path, f"bad numeric value ({exc})") from exc
    labels = np.zeros((len(frame), NUM_FINDINGS), dtype=np.int8)
    for row_index, text in enumerate(frame["finding_labels"]):
        try:
            labels[row_index] = parse_finding_labels(text)
        except UnknownFindingError as exc:
            raise DataError(path, f"line {row_index + 2}: {exc}") from exc
    frame[list(FINDINGS)] = labels
    if frame["image"].duplicated().any():
        duplicate = frame.loc[frame["image"].duplicated(), "image"].iloc[0]
        raise DataError(path, f"image {duplicate!r} appears more than once")
    return frame


def _parse_age(text: str) -> float:
    text = str(text).strip()
    if text and text[-1] in "YMD":  # Data_Entry_2017.csv wrote ages as 058Y / 011M / 020D
        value = float(text[:-1])
        return {"Y": value, "M": value / 12.0, "D": value / 365.25}[text[-1]]
    return float(text)


def read_bbox_list(path: str | Path) -> pd.DataFrame:
    """Read ``BBox_List_2017.csv`` (or the same format): one box per row, in original-image pixels.

    The finding names are canonicalised (the file spells ``Infiltrate`` for Infiltration); the header's
    trailing empty fields are ignored.

    Returns:
        Columns :data:`BBOX_COLUMNS`; x, y, w, h as floats (top-left corner, width, height).

    Raises:
        DataError: wrong header, a row without four numbers, or an unknown finding.
    """
    path = Path(path)
    header, rows = read_csv_rows(path)
    if header[:2] != ["Image Index", "Finding Label"]:
        raise DataError(path, f"not a BBox_List CSV: header starts {','.join(header[:3])!r}")
    records = []
    for line_number, row in enumerate(rows, start=2):
        cells = [cell.strip() for cell in row]
        while cells and not cells[-1]:
            cells.pop()
        if len(cells) != 6:
            raise DataError(path, f"line {line_number}: expected 6 fields, found {len(cells)}")
        try:
            finding = canonical_finding(cells[1])
            x, y, w, h = (float(value) for value in cells[2:6])
        except (UnknownFindingError, ValueError) as exc:
            raise DataError(path, f"line {line_number}: {exc}") from exc
        records.append((cells[0], finding, x, y, w, h))
    return pd.DataFrame(records, columns=list(BBOX_COLUMNS))
