"""Reader of the MIMIC-CXR-JPG label, metadata and split tables as published.

Johnson et al., "MIMIC-CXR-JPG, a large publicly available database of labeled chest radiographs",
arXiv:1901.07042, 2019.

Three tables, plain or gzip:

* ``mimic-cxr-2.0.0-chexpert.csv`` — one row per *study*: ``subject_id, study_id`` and the 14 CheXpert
  observations, coded as in CheXpert (``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain, empty not
  mentioned);
* ``mimic-cxr-2.0.0-metadata.csv`` — one row per *image*: ``dicom_id, subject_id, study_id, ViewPosition, …``;
* ``mimic-cxr-2.0.0-split.csv`` — one row per image: ``dicom_id, study_id, subject_id, split`` with split
  ``train`` / ``validate`` / ``test``.

:func:`read_mimic` joins them into one row per image of the split table: each image carries the labels of its
study (all not mentioned when the study has no label row), ``frontal`` is ``ViewPosition`` PA or AP, and
``path`` is the release's ``files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg`` (NN: the first two digits of the
subject id). Only the tables are read, never the images.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxreader.data.chexpert import CHEXPERT_LABELS
from cxreader.data.label_stats import (
    SplitSummary,
    coded_split_summaries,
    numeric_labels,
    read_table_header,
    require_columns,
)
from cxreader.errors import DataError

LABELS_FILE = "mimic-cxr-2.0.0-chexpert.csv"
METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv"
#: The observations of the label table: the 14 CheXpert ones, in CheXpert order.
MIMIC_LABELS = CHEXPERT_LABELS
LABELS_COLUMNS = ("subject_id", "study_id", *MIMIC_LABELS)
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
#: ``ViewPosition`` values counted as frontal views.
FRONTAL_VIEWS = frozenset({"PA", "AP"})
#: The ``split`` values of the split table and the cxreader split each one is.
MIMIC_SPLITS = {"train": "train", "validate": "val", "test": "test"}

#: The published headers of the three MIMIC-CXR-JPG 2.0.0 tables, verbatim (observations in alphabetical
#: order in the label table).
LABELS_HEADER = (
    "subject_id",
    "study_id",
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
METADATA_HEADER = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
SPLIT_HEADER = SPLIT_COLUMNS


def image_path(subject_id: int, study_id: int, dicom_id: str) -> str:
    """The image's path inside the release: ``files/p10/p10000032/s50414267/<dicom_id>.jpg``."""
    subject = f"{int(subject_id):08d}"
    return f"files/p{subject[:2]}/p{subject}/s{int(study_id)}/{dicom_id}.jpg"


def find_mimic_tables(
    root: str | Path, names: tuple[str, ...] = (LABELS_FILE, METADATA_FILE, SPLIT_FILE)
) -> dict[str, Path]:
    """The tables ``names`` (by default all three) in ``root``, each plain or ``.gz``, keyed by name.

    Raises:
        DataError: one is missing; the message names the folder and every missing file.
    """
    root = Path(root)
    found, missing = {}, []
    for name in names:
        candidates = [root / name, root / f"{name}.gz"]
        present = [candidate for candidate in candidates if candidate.is_file()]
        if present:
            found[name] = present[0]
        else:
            missing.append(name)
    if missing:
        raise DataError(root, f"MIMIC-CXR-JPG table(s) not found (plain or .gz): {', '.join(missing)}")
    return found


def _read(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    require_columns(path, read_table_header(path), required, what)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=lambda c: c.strip() in required)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from exc
    frame.columns = [column.strip() for column in frame.columns]
    for column in ("subject_id", "study_id"):
        if column in frame:
            try:
                frame[column] = frame[column].str.strip().astype(int)
            except ValueError as exc:
                raise DataError(path, f"column {column!r}: {exc}") from exc
    for column in ("dicom_id", "split", "ViewPosition"):
        if column in frame:
            frame[column] = frame[column].str.strip()
    return frame


def read_mimic(labels: str | Path, metadata: str | Path, split: str | Path) -> pd.DataFrame:
    """Join the three tables into one row per image of the split table.

    Returns:
        Columns ``dicom_id, subject_id, study_id, split, ViewPosition, path, patient_id, frontal`` and the 14
        observations as floats (1.0 / 0.0 / -1.0, NaN when not mentioned or when the study has no label row).

    Raises:
        DataError: a table misses columns (all named), holds a bad id or label value, names a study twice
            (labels) or an image twice (metadata, split), or the split and metadata tables disagree on an
            image's study or subject.
    """
    labels, metadata, split = Path(labels), Path(metadata), Path(split)
    label_frame = numeric_labels(
        labels, _read(labels, LABELS_COLUMNS, "MIMIC-CXR-JPG label table"), MIMIC_LABELS
    )
    meta_frame = _read(metadata, METADATA_COLUMNS, "MIMIC-CXR-JPG metadata table")
    split_frame = _read(split, SPLIT_COLUMNS, "MIMIC-CXR-JPG split table")
    for path, frame, key in (
        (labels, label_frame, "study_id"),
        (metadata, meta_frame, "dicom_id"),
        (split, split_frame, "dicom_id"),
    ):
        duplicated = frame[key].duplicated()
        if duplicated.any():
            raise DataError(path, f"{key} {frame.loc[duplicated, key].iloc[0]} appears more than once")
    frame = split_frame.merge(
        meta_frame, on="dicom_id", how="left", suffixes=("", "_metadata"), validate="one_to_one"
    )
    known = frame["study_id_metadata"].notna()
    for column in ("study_id", "subject_id"):
        differs = known & (frame[column] != frame[f"{column}_metadata"])
        if differs.any():
            dicom = frame.loc[differs, "dicom_id"].iloc[0]
            raise DataError(split, f"image {dicom!r}: {column} differs from {metadata.name}")
    frame = frame.drop(columns=["study_id_metadata", "subject_id_metadata"])
    frame["ViewPosition"] = frame["ViewPosition"].fillna("")
    frame = frame.merge(
        label_frame.drop(columns=["subject_id"]), on="study_id", how="left", validate="many_to_one"
    )
    frame["path"] = [
        image_path(subject, study, dicom)
        for subject, study, dicom in zip(
            frame["subject_id"], frame["study_id"], frame["dicom_id"], strict=True
        )
    ]
    frame["patient_id"] = frame["subject_id"]
    frame["frontal"] = frame["ViewPosition"].str.upper().isin(FRONTAL_VIEWS)
    frame["view"] = frame["ViewPosition"]
    return frame


def read_mimic_root(root: str | Path) -> pd.DataFrame:
    """:func:`read_mimic` of the three tables found in ``root`` by :func:`find_mimic_tables`."""
    tables = find_mimic_tables(root)
    return read_mimic(tables[LABELS_FILE], tables[METADATA_FILE], tables[SPLIT_FILE])


def read_mimic_labels_file(labels: str | Path) -> pd.DataFrame:
    """:func:`read_mimic` of the label table ``labels`` and the metadata and split tables beside it."""
    labels = Path(labels)
    tables = find_mimic_tables(labels.parent, (METADATA_FILE, SPLIT_FILE))
    return read_mimic(labels, tables[METADATA_FILE], tables[SPLIT_FILE])


def mimic_summaries(frame: pd.DataFrame) -> dict[str, SplitSummary]:
    """Images, patients (subjects), frontal images and per-observation counts of each split of :func:`read_mimic`."""
    return coded_split_summaries(frame, MIMIC_LABELS)
