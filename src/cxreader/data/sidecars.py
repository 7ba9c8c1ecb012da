"""The two files a cxreader SYNTHETIC dataset adds to the NIH ChestX-ray14 layout, and the reader of one.

The synthetic generator (:mod:`cxreader.synthetic.dataset`) writes them; data readers, the captioner's pairs
and screening read them, so their names and format live here, below all of those:

- :data:`SYNTHETIC_MARKER` (``SYNTHETIC_README.txt``): says in plain words that the folder is synthetic. Its
  presence marks every image under the folder, and every result read from it, as synthetic.
- :data:`SIDECAR_NAME` (``synthetic_findings.csv``): one row per drawn instance of a finding, columns
  :data:`SIDECAR_COLUMNS`, words from :mod:`cxreader.vocabulary`; read by :func:`read_synthetic_findings`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxreader.data.nih_tables import read_csv_rows
from cxreader.errors import DataError
from cxreader.labels import FINDINGS
from cxreader.vocabulary import ORGANS, SEVERITIES, SIDES, SPECIAL_ZONES, ZONES

#: The marker file of a synthetic dataset folder.
SYNTHETIC_MARKER = "SYNTHETIC_README.txt"
#: The ground-truth table of every drawn finding instance.
SIDECAR_NAME = "synthetic_findings.csv"
#: Columns of ``synthetic_findings.csv``; x, y, w, h is the box in pixels (top-left corner, width, height).
SIDECAR_COLUMNS = (
    "image",
    "finding",
    "side",
    "zone",
    "organ",
    "x",
    "y",
    "w",
    "h",
    "extent",
    "size_cm",
    "severity",
)
_WORDS = {
    "finding": set(FINDINGS),
    "side": set(SIDES),
    "zone": set(ZONES) | set(SPECIAL_ZONES),
    "organ": set(ORGANS),
    "severity": set(SEVERITIES),
}


def read_synthetic_findings(path: str | Path) -> pd.DataFrame:
    """Read ``synthetic_findings.csv``: one row per drawn finding instance (columns :data:`SIDECAR_COLUMNS`).

    Raises:
        DataError: wrong header, a row of the wrong width, a bad number or a value outside the vocabulary;
            the message names the file and the line.
    """
    path = Path(path)
    header, rows = read_csv_rows(path)
    if tuple(header) != SIDECAR_COLUMNS:
        raise DataError(
            path, f"not a synthetic findings table: the header must be {','.join(SIDECAR_COLUMNS)!r}"
        )
    records = []
    for line_number, cells in enumerate(rows, start=2):
        if len(cells) != len(SIDECAR_COLUMNS):
            raise DataError(
                path, f"line {line_number}: expected {len(SIDECAR_COLUMNS)} fields, found {len(cells)}"
            )
        row = dict(zip(SIDECAR_COLUMNS, cells, strict=True))
        for column, allowed in _WORDS.items():
            if row[column] not in allowed:
                raise DataError(
                    path, f"line {line_number}: {column} {row[column]!r} is not one of {sorted(allowed)}"
                )
        try:
            for column in ("x", "y", "w", "h", "extent", "size_cm"):
                row[column] = float(row[column])
        except ValueError as exc:
            raise DataError(path, f"line {line_number}: bad number ({exc})") from exc
        records.append(row)
    return pd.DataFrame(records, columns=list(SIDECAR_COLUMNS))
