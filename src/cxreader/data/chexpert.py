"""Reader of the CheXpert label tables as published: ``train.csv`` and ``valid.csv``.

Irvin et al., "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert Comparison",
AAAI 2019.

Columns: ``Path,Sex,Age,Frontal/Lateral,AP/PA`` then the 14 observations of :data:`CHEXPERT_LABELS`. An
observation cell is ``1.0`` (positive), ``0.0`` (negative), ``-1.0`` (uncertain) or empty (not mentioned in the
report). ``Path`` reads ``CheXpert-v1.0[-small]/<split>/patientNNNNN/studyN/viewN_<frontal|lateral>.jpg``: the
patient id is the number of its ``patientNNNNN`` folder and the split the folder above it (``train`` or
``valid``); a path without such a folder takes the file name (``train.csv`` -> ``train``). Plain and gzip files
are both accepted. Only the table is read, never the images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cxreader.data.label_stats import (
    SplitSummary,
    coded_split_summaries,
    numeric_labels,
    read_table_header,
    require_columns,
)
from cxreader.errors import DataError

#: The 14 CheXpert observations, in the published column order.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: The published header of ``train.csv`` / ``valid.csv``.
CHEXPERT_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS)
#: The tables of a CheXpert release folder, in report order (``.gz`` variants are accepted too).
CHEXPERT_FILES = ("train.csv", "valid.csv")

_PATIENT = r"(?:^|/)(?:(?P<split>[^/]+)/)?patient(?P<patient>\d+)/"


def read_chexpert(path: str | Path) -> pd.DataFrame:
    """Read one CheXpert label table (plain or .gz).

    Returns:
        The published columns, the observations as floats (1.0 / 0.0 / -1.0, NaN when not mentioned), plus
        ``patient_id`` (int, from ``patientNNNNN`` in the path), ``frontal`` (``Frontal/Lateral == "Frontal"``)
        and ``split`` (the path's split folder, else the file's name).

    Raises:
        DataError: a missing column (all of them named), a path without a ``patientNNNNN`` folder, or an
            observation that is not 1, 0, -1 or empty; the message names the file.
    """
    path = Path(path)
    require_columns(path, read_table_header(path), CHEXPERT_COLUMNS, "CheXpert label table")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from exc
    frame.columns = [str(column).strip() for column in frame.columns]
    frame = numeric_labels(path, frame, CHEXPERT_LABELS)
    parts = frame["Path"].str.strip().str.extract(_PATIENT)
    if parts["patient"].isna().any():
        line = int(parts["patient"].isna().to_numpy().argmax()) + 2
        raise DataError(
            path, f"line {line}: Path has no patientNNNNN folder: {frame['Path'].iloc[line - 2]!r}"
        )
    frame["patient_id"] = parts["patient"].astype(int)
    frame["frontal"] = frame["Frontal/Lateral"].str.strip().str.lower() == "frontal"
    # The view: AP or PA for a frontal image (as the table says), Lateral for the others.
    frame["view"] = frame["AP/PA"].where(frame["frontal"], "Lateral")
    frame["split"] = parts["split"].fillna(_split_of_file(path))
    return frame


def _split_of_file(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name


def chexpert_image_paths(root: str | Path, paths: Iterable[str]) -> list[str]:
    """Absolute paths of the images named by ``Path`` cells.

    ``Path`` is relative to the folder *above* ``CheXpert-v1.0[-small]``. ``root`` may be that folder (the
    tables beside the release folder) or the release folder itself (as the published zip unpacks, with
    ``train.csv`` inside ``CheXpert-v1.0-small/``): a path whose first folder is ``root``'s own name and is not
    inside ``root`` is taken from ``root``'s parent.
    """
    root = Path(root).absolute()
    bases: dict[str, Path] = {}
    resolved = []
    for text in paths:
        relative = str(text).strip().replace("\\", "/")
        first = relative.split("/", 1)[0]
        if first not in bases:
            inside = (root / first).exists() or first != root.name
            bases[first] = root if inside else root.parent
        resolved.append(str(bases[first] / relative))
    return resolved


def find_chexpert_tables(root: str | Path) -> list[Path]:
    """``train.csv`` and ``valid.csv`` (or their ``.gz``) in ``root``, those present, in that order.

    Raises:
        DataError: neither is there.
    """
    root = Path(root)
    found = []
    for name in CHEXPERT_FILES:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
    if not found:
        raise DataError(root, "no CheXpert train.csv or valid.csv (plain or .gz) in this folder")
    return found


def chexpert_summaries(paths: list[str | Path]) -> dict[str, SplitSummary]:
    """Images, patients, frontal images and per-observation counts of each split of the given tables."""
    frame = pd.concat([read_chexpert(path) for path in paths], ignore_index=True)
    return coded_split_summaries(frame, CHEXPERT_LABELS)
