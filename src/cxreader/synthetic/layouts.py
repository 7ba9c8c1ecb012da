"""SYNTHETIC datasets in the published layouts of CheXpert, MIMIC-CXR-JPG and PadChest.

The images are the phantoms of :mod:`cxreader.synthetic.findings`, planned and drawn as the NIH-layout
generator (:mod:`cxreader.synthetic.dataset`) does; only the files around them differ. Each layout has the
published tables with their headers verbatim (the readers' constants), so the readers and
:func:`cxreader.data.harmonise.load_dataset_splits` run on it unchanged:

* ``chexpert`` (Irvin et al., AAAI 2019): ``train.csv`` and ``valid.csv`` beside
  ``CheXpert-v1.0-small/{train,valid}/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg``; about 20% of the
  patients form ``valid.csv``, labelled 1.0 / 0.0 throughout (as the radiologists' consensus of the real one);
* ``mimic`` (Johnson et al. 2019): ``mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz`` and
  ``files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg``; the split table puts about 20% of the patients in
  ``test`` and 16% in ``validate``;
* ``padchest`` (Bustos et al. 2020): ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz`` (the BIMCV
  header, no index column) and 16-bit PNGs in ``<ImageDir>/<ImageID>`` folders, as the numbered zips unpack.

The drawn NIH findings become the layout's labels: CheXpert / MIMIC observations by
:data:`CHEXPERT_FROM_FINDINGS` (Lung Opacity from any of Consolidation, Infiltration, Pneumonia, Atelectasis,
Edema; Lung Lesion from Mass or Nodule; Enlarged Cardiomediastinum from Cardiomegaly; Pleural Other from
Pleural_Thickening), :data:`UNCERTAIN_FRACTION` of the positive mentions written ``-1.0`` (uncertain), absent
findings mostly not mentioned (empty) and sometimes ``0.0``, No Finding positive when no observation is;
PadChest names by :data:`PADCHEST_FROM_FINDINGS`, ``['normal']`` when nothing is drawn. Nothing draws
fractures or devices: those labels are never positive.
Patients have one to four studies; :data:`LATERAL_FRACTION` of the images are lateral views, the same picture
as their study's frontal view flagged lateral. ``synthetic_findings.csv`` records every drawn instance (its
``image`` column holds the image's name in the layout's table) and ``SYNTHETIC_README.txt`` says that all of
it is synthetic. Everything is deterministic given the seed.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxreader import __version__
from cxreader.data.chexpert import CHEXPERT_COLUMNS, CHEXPERT_LABELS
from cxreader.data.mimic import LABELS_FILE, LABELS_HEADER, METADATA_FILE, METADATA_HEADER, SPLIT_FILE
from cxreader.data.mimic import SPLIT_HEADER as MIMIC_SPLIT_HEADER
from cxreader.data.mimic import image_path as mimic_image_path
from cxreader.data.padchest import PADCHEST_FILE, PADCHEST_HEADER
from cxreader.data.sidecars import SIDECAR_COLUMNS, SIDECAR_NAME, SYNTHETIC_MARKER, read_synthetic_findings
from cxreader.errors import ConfigError, DataError
from cxreader.files import atomic_write, write_bytes_atomic, write_text_atomic
from cxreader.labels import NO_FINDING
from cxreader.synthetic.anatomy import FIELD_OF_VIEW_CM
from cxreader.synthetic.dataset import (
    DEFAULT_PREVALENCE,
    ImageSpec,
    check_parameters,
    draw_spec,
    generate_synthetic_dataset,
    plan_images,
    split_patients,
)
from cxreader.synthetic.findings import DrawnFinding

#: The layouts :func:`write_layout` writes (``nih`` is :func:`generate_synthetic_dataset`).
LAYOUTS = ("nih", "chexpert", "mimic", "padchest")
#: Share of the images that are lateral views.
LATERAL_FRACTION = 0.15
#: Share of the positive CheXpert / MIMIC mentions written as uncertain (-1.0).
UNCERTAIN_FRACTION = 0.1
#: Share of the absent findings written as explicit negatives (0.0) rather than left unmentioned.
NEGATIVE_FRACTION = 0.2
#: The CheXpert release folder the synthetic CheXpert layout uses.
CHEXPERT_FOLDER = "CheXpert-v1.0-small"
#: Images per PadChest ``ImageDir`` folder.
PADCHEST_DIR_SIZE = 100

#: CheXpert observation → the drawn NIH findings that make it positive.
CHEXPERT_FROM_FINDINGS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Lung Opacity": ("Consolidation", "Infiltration", "Pneumonia", "Atelectasis", "Edema"),
    "Lung Lesion": ("Mass", "Nodule"),
    "Edema": ("Edema",),
    "Consolidation": ("Consolidation",),
    "Pneumonia": ("Pneumonia",),
    "Atelectasis": ("Atelectasis",),
    "Pneumothorax": ("Pneumothorax",),
    "Pleural Effusion": ("Effusion",),
    "Pleural Other": ("Pleural_Thickening",),
    "Fracture": (),
    "Support Devices": (),
}
#: NIH finding → the PadChest name written for it.
PADCHEST_FROM_FINDINGS: dict[str, str] = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "pleural effusion",
    "Infiltration": "infiltrates",
    "Mass": "pulmonary mass",
    "Nodule": "nodule",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "Consolidation": "consolidation",
    "Edema": "pulmonary edema",
    "Emphysema": "emphysema",
    "Fibrosis": "pulmonary fibrosis",
    "Pleural_Thickening": "pleural thickening",
    "Hernia": "hiatal hernia",
}
_IMAGE_TREES = {"chexpert": (CHEXPERT_FOLDER,), "mimic": ("files",), "padchest": ("images",)}


@dataclass(frozen=True)
class _View:
    """One image file: a planned study (its frontal picture) and whether this file is its lateral view."""

    spec: ImageSpec
    lateral: bool


@dataclass(frozen=True)
class _Drawn:
    pixels: np.ndarray
    findings: tuple[DrawnFinding, ...]


def _plan(layout: str, images: int, seed: int) -> tuple[list[_View], np.random.Generator]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1 + LAYOUTS.index(layout)]))
    laterals = int(round(images * LATERAL_FRACTION)) if images > 1 else 0
    specs = plan_images(rng, images - laterals, dict(DEFAULT_PREVALENCE))
    with_lateral = set(rng.choice(len(specs), size=laterals, replace=False).tolist())
    views = []
    for spec in specs:
        views.append(_View(spec, lateral=False))
        if spec.index in with_lateral:
            views.append(_View(spec, lateral=True))
    return views, rng


def _draw(spec: ImageSpec, size: int, seed: int) -> _Drawn:
    picture = draw_spec(spec, size, seed)
    return _Drawn(picture.pixels, picture.findings)


def _encode(pixels: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "PNG16":
        Image.fromarray(pixels.astype(np.uint16) * 257).save(buffer, format="PNG")
    else:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_image(path: Path, pixels: np.ndarray, image_format: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, durable=False) as handle:
        handle.write(_encode(pixels, image_format))


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    text = _csv_text(header, rows)
    if path.suffix == ".gz":
        write_bytes_atomic(path, gzip.compress(text.encode(), mtime=0))
    else:
        write_text_atomic(path, text)


def _coded(findings: Sequence[str], rng: np.random.Generator, *, certain: bool) -> dict[str, str]:
    """The 14 CheXpert cells of a study; ``certain``: every cell 1.0 or 0.0 (CheXpert's valid.csv).

    As the CheXpert labeler, No Finding is positive when no pathology observation is (a drawn finding that
    is no CheXpert observation, such as Emphysema, leaves it positive).
    """
    present = set(findings)
    row = {}
    for observation, sources in CHEXPERT_FROM_FINDINGS.items():
        if present & set(sources):
            row[observation] = "-1.0" if not certain and rng.random() < UNCERTAIN_FRACTION else "1.0"
        elif certain or rng.random() < NEGATIVE_FRACTION:
            row[observation] = "0.0"
        else:
            row[observation] = ""
    pathology = any(
        row[name] in ("1.0", "-1.0") for name in CHEXPERT_FROM_FINDINGS if name != "Support Devices"
    )
    row[NO_FINDING] = "1.0" if not pathology else ("0.0" if certain else "")
    return row


def _sidecar_rows(image: str, findings: Sequence[DrawnFinding]) -> list[list[object]]:
    return [
        [
            image,
            item.finding,
            item.side,
            item.zone,
            item.organ,
            *(format(float(value), ".6g") for value in (item.x, item.y, item.w, item.h)),
            f"{item.extent:.4f}",
            f"{item.size_cm:.2f}",
            item.severity,
        ]
        for item in findings
    ]


# --- CheXpert -------------------------------------------------------------------------------------------------


def _chexpert(
    out: Path, views: list[_View], drawn: dict[int, _Drawn], rng: np.random.Generator, size: int, seed: int
) -> list[list[object]]:
    valid = split_patients(rng, [view.spec for view in views if not view.lateral])
    rows: dict[str, list[list[object]]] = {"train": [], "valid": []}
    sidecar: list[list[object]] = []
    codes = {}
    for view in views:
        spec = view.spec
        split = "valid" if spec.patient_id in valid else "train"
        if spec.index not in codes:
            codes[spec.index] = _coded(spec.findings, rng, certain=split == "valid")
        name = "view2_lateral.jpg" if view.lateral else "view1_frontal.jpg"
        relative = f"{CHEXPERT_FOLDER}/{split}/patient{spec.patient_id:05d}/study{spec.follow_up + 1}/{name}"
        _write_image(out / relative, drawn[spec.index].pixels, "JPEG")
        sex = "Male" if spec.gender == "M" else "Female"
        frontal = "Lateral" if view.lateral else "Frontal"
        ap_pa = "" if view.lateral else spec.view
        rows[split].append(
            [
                relative,
                sex,
                spec.age,
                frontal,
                ap_pa,
                *(codes[spec.index][label] for label in CHEXPERT_LABELS),
            ]
        )
        sidecar += _sidecar_rows(relative, drawn[spec.index].findings)
    for split, table in rows.items():
        _write_table(out / f"{split}.csv", CHEXPERT_COLUMNS, table)
    return sidecar


# --- MIMIC-CXR-JPG --------------------------------------------------------------------------------------------


def _mimic(
    out: Path, views: list[_View], drawn: dict[int, _Drawn], rng: np.random.Generator, size: int, seed: int
) -> list[list[object]]:
    specs = [view.spec for view in views if not view.lateral]
    test = split_patients(rng, specs)
    validate = split_patients(rng, [spec for spec in specs if spec.patient_id not in test])
    study_ids = 50_000_000 + rng.choice(10_000_000, size=len(specs), replace=False)
    labels, metadata, splits, sidecar = [], [], [], []
    for view in views:
        spec = view.spec
        subject, study = 10_000_000 + spec.patient_id, int(study_ids[spec.index])
        dicom = "-".join(rng.bytes(4).hex() for _ in range(5))
        if not view.lateral:
            cells = _coded(spec.findings, rng, certain=False)
            labels.append([subject, study, *(cells[label] for label in LABELS_HEADER[2:])])
        relative = mimic_image_path(subject, study, dicom)
        _write_image(out / relative, drawn[spec.index].pixels, "JPEG")
        position = "LATERAL" if view.lateral else spec.view
        procedure = "CHEST (PORTABLE AP)" if spec.view == "AP" else "CHEST (PA AND LAT)"
        meaning = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}[position]
        date = f"21{50 + spec.patient_id % 40:02d}{1 + spec.follow_up:02d}15"
        orientation = "Recumbent" if spec.view == "AP" else "Erect"
        metadata.append(
            [
                dicom,
                subject,
                study,
                procedure,
                position,
                size,
                size,
                date,
                "120000.000",
                procedure,
                meaning,
                orientation,
            ]
        )
        split = "test" if spec.patient_id in test else "validate" if spec.patient_id in validate else "train"
        splits.append([dicom, study, subject, split])
        sidecar += _sidecar_rows(relative, drawn[spec.index].findings)
    _write_table(out / f"{LABELS_FILE}.gz", LABELS_HEADER, labels)
    _write_table(out / f"{METADATA_FILE}.gz", METADATA_HEADER, metadata)
    _write_table(out / f"{SPLIT_FILE}.gz", MIMIC_SPLIT_HEADER, splits)
    return sidecar


# --- PadChest -------------------------------------------------------------------------------------------------


def _padchest_row(
    view: _View, image: str, directory: str, seed: int, size: int, rng: np.random.Generator
) -> list[object]:
    spec = view.spec
    names = [PADCHEST_FROM_FINDINGS[finding] for finding in spec.findings] or ["normal"]
    if view.lateral:
        projection, position = "L", "LATERAL"
    elif spec.view == "AP":
        projection, position = ("AP_horizontal" if rng.random() < 0.75 else "AP"), "ANTEROPOSTERIOR"
    else:
        projection, position = "PA", "POSTEROANTERIOR"
    spacing = format(FIELD_OF_VIEW_CM * 10.0 / size, ".6g")
    study = f"9{seed:04d}{spec.index:08d}"
    cells = {
        "ImageID": image,
        "ImageDir": directory,
        "StudyDate_DICOM": f"2015{1 + spec.follow_up:02d}15",
        "StudyID": study,
        "PatientID": f"9{seed:04d}{spec.patient_id:08d}",
        "PatientBirth": f"{2015 - spec.age}.0",
        "PatientSex_DICOM": spec.gender,
        "ViewPosition_DICOM": position,
        "Projection": projection,
        "MethodProjection": "Manual review of DICOM fields",
        "Pediatric": "No",
        "Modality_DICOM": "CR",
        "Manufacturer_DICOM": "SYNTHETIC",
        "PhotometricInterpretation_DICOM": "MONOCHROME2",
        "PixelRepresentation_DICOM": "0",
        "PixelAspectRatio_DICOM": "None",
        "SpatialResolution_DICOM": spacing,
        "BitsStored_DICOM": "16",
        "Rows_DICOM": size,
        "Columns_DICOM": size,
        "ReportID": study,
        "Report": "synthetic phantom: no report .",
        "MethodLabel": "Physician",
        "Labels": repr(names),
        "Localizations": "[]",
        "LabelsLocalizationsBySentence": repr([[name] for name in names]),
        "labelCUIS": "[]",
        "LocalizationsCUIS": "[]",
    }
    return [cells.get(column, "None") for column in PADCHEST_HEADER]


def _padchest(
    out: Path, views: list[_View], drawn: dict[int, _Drawn], rng: np.random.Generator, size: int, seed: int
) -> list[list[object]]:
    rows, sidecar = [], []
    for view in views:
        spec = view.spec
        directory = str(spec.index // PADCHEST_DIR_SIZE)
        image = f"9{seed:04d}{spec.index:08d}_{'02' if view.lateral else '01'}-000-{spec.patient_id % 1000:03d}.png"
        _write_image(out / directory / image, drawn[spec.index].pixels, "PNG16")
        rows.append(_padchest_row(view, image, directory, seed, size, rng))
        sidecar += _sidecar_rows(image, drawn[spec.index].findings)
    _write_table(out / f"{PADCHEST_FILE}.gz", PADCHEST_HEADER, rows)
    return sidecar


_WRITERS: dict[str, Callable[..., list[list[object]]]] = {
    "chexpert": _chexpert,
    "mimic": _mimic,
    "padchest": _padchest,
}
_DESCRIPTIONS = {
    "chexpert": f"the CheXpert release: train.csv, valid.csv, {CHEXPERT_FOLDER}/<split>/patientNNNNN/studyN/"
    "viewN_<frontal|lateral>.jpg (8-bit JPEG)",
    "mimic": f"the MIMIC-CXR-JPG release: {LABELS_FILE}.gz, {METADATA_FILE}.gz, {SPLIT_FILE}.gz, "
    "files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg (8-bit JPEG)",
    "padchest": f"the PadChest release: {PADCHEST_FILE}.gz, <ImageDir>/<ImageID> (16-bit PNG)",
}


def _readme(layout: str, images: int, size: int, seed: int) -> str:
    return f"""SYNTHETIC DATA - NOT PATIENT DATA

Everything in this folder is synthetic. The images are computer-drawn chest X-ray phantoms and the tables
describe them. No person was imaged: patient IDs, ages, sexes, views, dates and findings are invented by a
random number generator. Do not use this data to draw any medical conclusion.

Generated by cxreader {__version__} (`cxreader data synth --layout {layout}`, module cxreader.synthetic.layouts)
with: images={images}, size={size}, seed={seed}. The same parameters always produce the same files.

Layout: {_DESCRIPTIONS[layout]}.
Lateral views are the same picture as their study's frontal view. Fractures and support devices are never
drawn. {SIDECAR_NAME}: one row per drawn finding instance (columns {", ".join(SIDECAR_COLUMNS)}), the image
named as in the layout's table.
"""


def _prepare(out: Path, layout: str) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SYNTHETIC_MARKER).is_file():
            raise DataError(
                out, "exists, is not empty and is not a cxreader synthetic dataset; choose a new directory"
            )
        for name in _IMAGE_TREES[layout]:
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for folder in out.iterdir():
            if layout == "padchest" and folder.is_dir() and folder.name.isdigit():
                shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)


def write_layout(layout: str, out: str | Path, *, images: int, size: int, seed: int) -> Path:
    """Write a SYNTHETIC dataset in a published layout (see the module docstring).

    Args:
        layout: One of :data:`LAYOUTS`.
        out: Destination folder: new, empty, or a previous synthetic dataset (its images are replaced).
        images: Number of image files, lateral views included.
        size: Image side in pixels (64 to 2048).
        seed: Seed of everything.

    Returns:
        ``out``.

    Raises:
        ConfigError: unknown layout or a parameter out of range.
        DataError: ``out`` is a file, or a non-empty folder that is not a synthetic dataset.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    out = Path(out)
    if layout == "nih":
        return generate_synthetic_dataset(out, images=images, size=size, seed=seed).out_dir
    check_parameters(images, size, seed, 1, None)
    images, size, seed = int(images), int(size), int(seed)
    _prepare(out, layout)
    write_text_atomic(out / SYNTHETIC_MARKER, _readme(layout, images, size, seed))
    views, rng = _plan(layout, images, seed)
    drawn = {view.spec.index: _draw(view.spec, size, seed) for view in views if not view.lateral}
    sidecar = _WRITERS[layout](out, views, drawn, rng, size, seed)
    _write_table(out / SIDECAR_NAME, SIDECAR_COLUMNS, sidecar)
    return out


def drawn_findings(out: str | Path) -> dict[str, set[str]]:
    """Image name → the NIH findings drawn in it, from a layout's ``synthetic_findings.csv``."""
    frame = read_synthetic_findings(Path(out) / SIDECAR_NAME)
    truth: dict[str, set[str]] = {}
    for image, finding in zip(frame["image"], frame["finding"], strict=True):
        truth.setdefault(str(image), set()).add(finding)
    return truth
