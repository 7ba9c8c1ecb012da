"""Reader of the PadChest label table: ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``.

Bustos et al., "PadChest: A large chest x-ray image dataset with multi-label annotated reports", Medical Image
Analysis 66, 2020.

The table has one row per image. Used here: ``ImageID``, ``ImageDir`` (the numbered zip folder holding the
image), ``PatientID``, ``Projection`` (PA / AP / AP_horizontal / L / COSTAL / …) and ``Labels``, a Python list
literal of report-derived finding names (``['normal']``, ``['cardiomegaly', 'pleural effusion']``). The BIMCV
original has no index column; the copy redistributed by torchxrayvision has an extra unnamed one first: both
are read. ``Labels`` cells are parsed with :func:`ast.literal_eval` (literals only, never code); a cell that is
not a list of strings is *malformed*: it is counted, its image keeps no labels, and reading goes on.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pandas as pd

from cxreader.data.label_stats import (
    LabelCounts,
    SplitSummary,
    read_table_header,
    require_columns,
    view_counts,
)
from cxreader.errors import DataError

PADCHEST_COLUMNS = ("ImageID", "ImageDir", "PatientID", "Projection", "Labels")
#: The header of the BIMCV table, verbatim (the torchxrayvision copy puts one unnamed index column first).
PADCHEST_HEADER = (
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "MethodProjection",
    "Pediatric",
    "Modality_DICOM",
    "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM",
    "PixelRepresentation_DICOM",
    "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM",
    "BitsStored_DICOM",
    "WindowCenter_DICOM",
    "WindowWidth_DICOM",
    "Rows_DICOM",
    "Columns_DICOM",
    "XRayTubeCurrent_DICOM",
    "Exposure_DICOM",
    "ExposureInuAs_DICOM",
    "ExposureTime",
    "RelativeXRayExposure_DICOM",
    "ReportID",
    "Report",
    "MethodLabel",
    "Labels",
    "Localizations",
    "LabelsLocalizationsBySentence",
    "labelCUIS",
    "LocalizationsCUIS",
)
#: ``Projection`` values counted as frontal views.
FRONTAL_PROJECTIONS = frozenset({"PA", "AP", "AP_horizontal"})
#: PadChest has no official split: the whole table is this one split.
PADCHEST_SPLIT = "all"
#: The file name of the published table (``.gz`` accepted too).
PADCHEST_FILE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
_MAX_CELL_CHARS = 10_000  # a Labels cell longer than this is malformed, not parsed


def parse_labels(text: object) -> tuple[str, ...] | None:
    """The distinct, stripped, non-empty names of a ``Labels`` cell, in order; None when malformed."""
    if not isinstance(text, str) or len(text) > _MAX_CELL_CHARS:
        return None
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        return None
    names = (item.strip() for item in value)
    return tuple(dict.fromkeys(name for name in names if name))


def padchest_image_paths(root: str | Path, frame: pd.DataFrame) -> list[str]:
    """Absolute paths of the images of :func:`read_padchest` rows under a PadChest root.

    The BIMCV release ships the images in numbered zip files, the number being ``ImageDir``. Accepted, per
    ``ImageDir`` in this order: ``<root>/<ImageDir>/<ImageID>`` (each zip unpacked into a folder named by its
    number), ``<root>/images/<ImageDir>/<ImageID>``, and ``<root>/images/<ImageID>`` (all zips unpacked into
    one folder, as torchxrayvision expects). When none exists the first is given: loading then names it as
    missing.
    """
    root = Path(root).absolute()
    flat = root / "images"
    folders: dict[str, Path] = {}
    for directory in pd.unique(frame["ImageDir"]):
        candidates = (root / directory, flat / directory)
        found = [candidate for candidate in candidates if directory and candidate.is_dir()]
        folders[directory] = found[0] if found else (flat if flat.is_dir() else root / directory)
    return [
        str(folders[directory] / image)
        for directory, image in zip(frame["ImageDir"], frame["ImageID"], strict=True)
    ]


def find_padchest_table(root: str | Path) -> Path:
    """:data:`PADCHEST_FILE` (plain or ``.gz``) in ``root``.

    Raises:
        DataError: it is not there.
    """
    root = Path(root)
    for candidate in (root / PADCHEST_FILE, root / f"{PADCHEST_FILE}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(root, f"no PadChest table {PADCHEST_FILE} (plain or .gz) in this folder")


def read_padchest(path: str | Path) -> pd.DataFrame:
    """Read the PadChest label table (plain or .gz, with or without a leading unnamed index column).

    Returns:
        The columns :data:`PADCHEST_COLUMNS` as text plus ``labels`` (tuple of names, None when the cell is
        malformed), ``patient_id`` (= ``PatientID``), ``frontal`` (``Projection`` in
        :data:`FRONTAL_PROJECTIONS`) and ``split`` (:data:`PADCHEST_SPLIT`).

    Raises:
        DataError: the header misses columns (all named) or the file cannot be read as CSV.
    """
    path = Path(path)
    require_columns(path, read_table_header(path), PADCHEST_COLUMNS, "PadChest label table")
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            usecols=lambda column: column.strip() in PADCHEST_COLUMNS,
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from exc
    frame.columns = [column.strip() for column in frame.columns]
    for column in ("ImageID", "ImageDir", "PatientID", "Projection"):
        frame[column] = frame[column].str.strip()
    parsed: dict[str, tuple[str, ...] | None] = {}
    frame["labels"] = [parsed.setdefault(text, parse_labels(text)) for text in frame["Labels"]]
    frame["patient_id"] = frame["PatientID"]
    frame["frontal"] = frame["Projection"].isin(FRONTAL_PROJECTIONS)
    frame["view"] = frame["Projection"]
    frame["split"] = PADCHEST_SPLIT
    return frame


def malformed_count(frame: pd.DataFrame) -> int:
    """How many rows of :func:`read_padchest` have a malformed ``Labels`` cell."""
    return int(frame["labels"].isna().sum())


def padchest_summaries(frame: pd.DataFrame) -> dict[str, SplitSummary]:
    """One :class:`SplitSummary` per split of :func:`read_padchest` (the one split ``"all"``).

    A raw label name counts as *positive* in an image whose ``Labels`` lists it and as *unmentioned*
    everywhere else, malformed rows included. PadChest's lists carry no negative or uncertain mentions, so
    ``negative`` and ``uncertain`` are always 0. Labels are ordered by positive count, most frequent first
    (ties by name).
    """
    summaries = {}
    for name in pd.unique(frame["split"]):
        part = frame[frame["split"] == name]
        images = len(part)
        positives = Counter(label for labels in part["labels"] if labels for label in labels)
        ordered = sorted(positives.items(), key=lambda item: (-item[1], item[0]))
        summaries[str(name)] = SplitSummary(
            images=images,
            patients=int(part["patient_id"].nunique()),
            frontal=int(part["frontal"].sum()),
            views=view_counts(part),
            labels={
                label: LabelCounts(positive=count, negative=0, uncertain=0, unmentioned=images - count)
                for label, count in ordered
            },
        )
    return summaries
