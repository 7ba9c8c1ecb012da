"""A SYNTHETIC dataset in exactly the NIH ChestX-ray14 layout, with precise ground truth for every finding.

The images are phantoms drawn by :func:`cxreader.synthetic.findings.draw_chest`; nothing here comes from a
patient. The folder has the files of the NIH release (Wang et al., "ChestX-ray8", CVPR 2017) with their exact
formats, so every reader, trainer and evaluator of cxreader runs on it unchanged:

- ``Data_Entry_2017_v2020.csv``: the NIH header (``OriginalImage[Width,Height]`` and
  ``OriginalImagePixelSpacing[x,y]`` each spanning two fields), one row per image, labels joined by ``|``;
- ``images/{patient:08d}_{follow_up:03d}.png``: 8-bit grayscale, ``size`` x ``size``;
- ``train_val_list.txt`` / ``test_list.txt``: a patient-level ~80/20 split, no trailing newline (as NIH);
- ``BBox_List_2017.csv``: one box per drawn instance of the 8 boxed findings (``Infiltrate`` spelled as NIH);

plus two files of its own (:mod:`cxreader.data.sidecars`, where their names and the reader live):

- ``synthetic_findings.csv``: one row per drawn instance of any finding (see
  :data:`~cxreader.data.sidecars.SIDECAR_COLUMNS`): side in the patient's frame (patient's right = image
  LEFT), zone, organ, box, extent, size in cm, severity;
- ``SYNTHETIC_README.txt``: says in plain words that the data is synthetic, with the generator's parameters.

Prevalence. A fraction :data:`NORMAL_FRACTION` of images is "No Finding"; in the others each finding is drawn
independently with a probability chosen so that its overall rate matches :data:`DEFAULT_PREVALENCE` (12-16%,
enough positives of every class in a 1,500-image set) or ``positive_rate``. Everything is deterministic given
the seed, whatever the number of worker processes: each image has its own seed.
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxreader import __version__
from cxreader.data.chestxray14 import DATA_ENTRY_NAMES, TEST_LIST, TRAIN_VAL_LIST
from cxreader.data.sidecars import SIDECAR_COLUMNS, SIDECAR_NAME, SYNTHETIC_MARKER
from cxreader.errors import ConfigError, DataError
from cxreader.files import atomic_write, write_text_atomic
from cxreader.labels import BOXED_FINDINGS, FINDINGS, NO_FINDING
from cxreader.synthetic.anatomy import FIELD_OF_VIEW_CM
from cxreader.synthetic.findings import DrawnFinding, PhantomImage, draw_chest
from cxreader.vocabulary import ORGANS, SEVERITIES, SIDES, SPECIAL_ZONES, ZONES

#: The Data_Entry name of the v2020 release, the one NIH publishes today.
DATA_ENTRY_NAME = DATA_ENTRY_NAMES[0]
BBOX_LIST_NAME = "BBox_List_2017.csv"
IMAGES_DIR = "images"

#: The header line of the NIH ``Data_Entry_2017_v2020.csv``, verbatim.
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
#: The header line of the NIH ``BBox_List_2017.csv``, verbatim (with its trailing empty fields).
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
_BBOX_SPELLING = {"Infiltration": "Infiltrate"}  # as BBox_List_2017.csv writes it

#: Overall rate of each finding (fraction of images), by default.
DEFAULT_PREVALENCE: dict[str, float] = {
    "Atelectasis": 0.15,
    "Cardiomegaly": 0.12,
    "Effusion": 0.13,
    "Infiltration": 0.15,
    "Mass": 0.13,
    "Nodule": 0.16,
    "Pneumonia": 0.15,
    "Pneumothorax": 0.13,
    "Consolidation": 0.14,
    "Edema": 0.13,
    "Emphysema": 0.13,
    "Fibrosis": 0.14,
    "Pleural_Thickening": 0.15,
    "Hernia": 0.12,
}
#: Fraction of "No Finding" images (when the rates allow it).
NORMAL_FRACTION = 0.35
TEST_FRACTION = 0.2
_AP_FRACTION = 0.25
_MAX_FOLLOW_UPS = 4
_MIN_SIZE = 64
_MAX_SIZE = 2048


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`generate_synthetic_dataset` wrote.

    Attributes:
        out_dir: The dataset root.
        images: Number of images.
        patients: Number of (invented) patients.
        counts: Images positive for each finding, in :data:`~cxreader.labels.FINDINGS` order.
        seconds: Wall time of the generation.
        no_finding: Images labelled "No Finding".
        train_val_images: Images in ``train_val_list.txt``.
        test_images: Images in ``test_list.txt``.
        boxes: Rows of ``BBox_List_2017.csv``.
        instances: Rows of ``synthetic_findings.csv``.
    """

    out_dir: Path
    images: int
    patients: int
    counts: dict[str, int]
    seconds: float
    no_finding: int = 0
    train_val_images: int = 0
    test_images: int = 0
    boxes: int = 0
    instances: int = 0

    def describe(self) -> str:
        """One line, labelled SYNTHETIC."""
        share = 100.0 * self.no_finding / max(1, self.images)
        lowest = min(self.counts, key=self.counts.get)
        return (
            f"SYNTHETIC dataset (not patient data): {self.images} images of {self.patients} invented patients "
            f"({self.train_val_images} train/val, {self.test_images} test), {share:.0f}% No Finding, "
            f"{self.boxes} boxes, {self.instances} finding instances, rarest finding {lowest} "
            f"({self.counts[lowest]} images), {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class ImageSpec:
    """One planned image: its index, file name, patient and the findings to draw (shared with the other
    layouts' writer, :mod:`cxreader.synthetic.layouts`)."""

    index: int
    name: str
    patient_id: int
    follow_up: int
    age: int
    gender: str
    view: str
    findings: tuple[str, ...] = ()


def inclusion_probabilities(rates: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Probabilities that reproduce the overall finding rates with a share of "No Finding" images.

    An image is abnormal with probability ``abnormal``; an abnormal image takes each finding independently
    with probability ``q[finding]``, redrawn if it got none. The overall rate of a finding is then
    ``abnormal * q / (1 - prod(1 - q))``; ``q`` is scaled until the rates sum as asked. ``abnormal`` is
    ``1 - NORMAL_FRACTION`` unless the rates are too low to fill that many abnormal images.

    Returns:
        (abnormal, q) with q in :data:`FINDINGS` order.
    """
    p = np.array([rates[name] for name in FINDINGS], dtype=np.float64)
    abnormal = min(1.0 - NORMAL_FRACTION, 0.95 * float(p.sum()))

    def total(scale: float) -> float:
        q = np.minimum(scale * p, 1.0)
        return abnormal * float(q.sum()) / (1.0 - float(np.prod(1.0 - q)))

    low, high = 1e-9, 1.0 / float(p.max())
    for _ in range(80):  # bisection: total() increases with the scale
        middle = 0.5 * (low + high)
        if total(middle) < p.sum():
            low = middle
        else:
            high = middle
    q = np.minimum(high * p, 1.0)
    return abnormal, {name: float(value) for name, value in zip(FINDINGS, q, strict=True)}


def check_parameters(images: int, size: int, seed: int, workers: int, positive_rate: float | None) -> None:
    """Refuse parameters the generator cannot honour, with the reason (ConfigError)."""
    if not isinstance(images, (int, np.integer)) or images < 1:
        raise ConfigError(f"images must be a positive integer, got {images!r}")
    if not isinstance(size, (int, np.integer)) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ConfigError(f"size must be an integer from {_MIN_SIZE} to {_MAX_SIZE} pixels, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if positive_rate is not None and not 0.0 < float(positive_rate) <= 0.5:
        raise ConfigError(f"positive_rate must be in (0, 0.5], got {positive_rate!r}")


def plan_images(rng: np.random.Generator, images: int, rates: dict[str, float]) -> list[ImageSpec]:
    """Plan ``images`` images (patients and findings) so each finding appears at about its rate."""
    abnormal, q = inclusion_probabilities(rates)
    q_vector = np.array([q[name] for name in FINDINGS])
    specs: list[ImageSpec] = []
    patient_id = 0
    while len(specs) < images:
        patient_id += 1
        follow_ups = min(int(rng.choice(_MAX_FOLLOW_UPS, p=(0.35, 0.3, 0.2, 0.15))) + 1, images - len(specs))
        age = int(np.clip(round(rng.normal(50.0, 17.0)), 12, 95))
        gender = "M" if rng.random() < 0.56 else "F"
        for follow_up in range(follow_ups):
            findings: tuple[str, ...] = ()
            if rng.random() < abnormal:
                while not findings:  # an abnormal image has at least one finding
                    drawn = rng.random(len(FINDINGS)) < q_vector
                    findings = tuple(name for name, hit in zip(FINDINGS, drawn, strict=True) if hit)
            specs.append(
                ImageSpec(
                    index=len(specs),
                    name=f"{patient_id:08d}_{follow_up:03d}.png",
                    patient_id=patient_id,
                    follow_up=follow_up,
                    age=min(95, age + int(follow_up * rng.uniform(0.0, 0.7))),
                    gender=gender,
                    view="AP" if rng.random() < _AP_FRACTION else "PA",
                    findings=findings,
                )
            )
    return specs


def split_patients(rng: np.random.Generator, specs: Sequence[ImageSpec]) -> set[int]:
    """Patients of the test split: whole patients, about TEST_FRACTION of the images, never all of them."""
    per_patient = Counter(spec.patient_id for spec in specs)
    order = rng.permutation(sorted(per_patient))
    target = TEST_FRACTION * len(specs)
    test: set[int] = set()
    taken = 0
    for patient in order[:-1]:  # the last patient always stays in train/val
        if taken >= target:
            break
        test.add(int(patient))
        taken += per_patient[int(patient)]
    return test


def draw_spec(spec: ImageSpec, size: int, seed: int) -> PhantomImage:
    """Draw one planned image: a function of the dataset's seed, the image and its patient only (the same
    picture in every layout)."""
    return draw_chest(
        (seed, 2, spec.index),
        size=size,
        findings=spec.findings,
        view=spec.view,
        patient_seed=(seed, 1, spec.patient_id),
    )


def _render_image(images_dir: Path, size: int, seed: int, spec: ImageSpec) -> list[DrawnFinding]:
    """Draw one image and write its PNG (whole or not at all); return its finding instances."""
    picture = draw_spec(spec, size, seed)
    with atomic_write(images_dir / spec.name, durable=False) as handle:
        Image.fromarray(picture.pixels).save(handle, format="PNG")
    return list(picture.findings)


def _number(value: float) -> str:
    return format(float(value), ".6g")


def _prepare_directory(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / SYNTHETIC_MARKER).is_file():
            raise DataError(
                out_dir,
                "exists, is not empty and is not a cxreader synthetic dataset; choose a new directory",
            )
        # A previous synthetic dataset: its images (and the temporary files of an interrupted run) are ours
        # to replace.
        images_dir = out_dir / IMAGES_DIR
        if images_dir.is_dir():
            for stale in [*images_dir.glob("*.png"), *images_dir.glob(".*.tmp"), *images_dir.glob("*.part")]:
                stale.unlink()
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)


def _readme(images: int, patients: int, size: int, seed: int, positive_rate: float | None) -> str:
    spacing = FIELD_OF_VIEW_CM * 10.0 / size
    rate = "default per-finding rates" if positive_rate is None else f"{positive_rate:g} for every finding"
    zones = "\n".join(f"  - {name}: {meaning}" for name, meaning in SPECIAL_ZONES.items())
    split = f"{100 * (1 - TEST_FRACTION):.0f}/{100 * TEST_FRACTION:.0f}"
    rows = (
        (DATA_ENTRY_NAME, "one row per image; labels joined by '|', or 'No Finding'"),
        (
            f"{IMAGES_DIR}/",
            f"{size}x{size} 8-bit grayscale PNG, {spacing:g} mm per pixel ({FIELD_OF_VIEW_CM:g} cm field)",
        ),
        (TRAIN_VAL_LIST, f"train/validation images: a patient-level split, about {split}"),
        (TEST_LIST, "test images (no patient is in both lists)"),
        (BBOX_LIST_NAME, f"one box per drawn instance of {', '.join(BOXED_FINDINGS)}"),
        (SIDECAR_NAME, "one row per drawn instance of any finding (ground truth for captions, heatmaps)"),
    )
    files = "\n".join(f"  {name:<27} {text}" for name, text in rows)
    return f"""SYNTHETIC DATA - NOT PATIENT DATA

Everything in this folder is synthetic. The images are computer-drawn chest X-ray phantoms and the tables
describe them. No person was imaged: patient IDs, ages, sexes, views and findings are invented by a random
number generator. Do not use this data to draw any medical conclusion.

Generated by cxreader {__version__} (`cxreader data synth`, module cxreader.synthetic.dataset)
with: images={images}, size={size}, seed={seed}, positive_rate={rate}.
The same parameters always produce the same files. {patients} invented patients.

Layout (the NIH ChestX-ray14 release layout):
{files}

{SIDECAR_NAME} columns: {", ".join(SIDECAR_COLUMNS)}
- side: {", ".join(SIDES)}; right/left are the PATIENT's sides: the patient's right is the image's LEFT half.
  A finding present on both sides as two processes (e.g. bilateral effusions) has one row per side.
- zone: {", ".join(ZONES)} (the third of the lung height holding the finding's centre), or
{zones}
- organ: {", ".join(ORGANS)}
- x, y, w, h: bounding box in pixels (top-left corner, width, height), as in {BBOX_LIST_NAME}
- extent: fraction of that side's lung area covered (right/left), or of the thorax area (bilateral/midline)
- size_cm: diameter of nodules, masses and hernias; otherwise the longest side of the box, in cm
- severity: {", ".join(SEVERITIES)}; it sets how large and dense the finding is drawn
"""


def generate_synthetic_dataset(
    out_dir: str | Path,
    *,
    images: int,
    size: int = 128,
    seed: int = 0,
    workers: int = 1,
    positive_rate: float | None = None,
) -> SyntheticSummary:
    """Write a SYNTHETIC dataset in the NIH ChestX-ray14 layout (see the module docstring).

    Args:
        out_dir: Destination folder: new, empty, or a previous synthetic dataset (which is replaced).
        images: Number of images.
        size: Image side in pixels (64 to 2048; 128 is quick, 256 and more show finer detail).
        seed: Seed of everything (patients, labels, split, pixels).
        workers: Processes drawing images; the output does not depend on it.
        positive_rate: Overall rate of every finding (0 < rate <= 0.5) instead of
            :data:`DEFAULT_PREVALENCE`.

    Returns:
        A :class:`SyntheticSummary`.

    Raises:
        ConfigError: a parameter is out of range.
        DataError: ``out_dir`` is a file, or a non-empty folder that is not a synthetic dataset.
    """
    started = time.perf_counter()
    check_parameters(images, size, seed, workers, positive_rate)
    images, size, seed, workers = int(images), int(size), int(seed), int(workers)
    out_dir = Path(out_dir)
    _prepare_directory(out_dir)
    rates = (
        dict(DEFAULT_PREVALENCE) if positive_rate is None else dict.fromkeys(FINDINGS, float(positive_rate))
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    specs = plan_images(rng, images, rates)
    test_patients = split_patients(rng, specs)
    patients = specs[-1].patient_id
    # The README goes first, so that even an interrupted run leaves a folder that says it is synthetic.
    write_text_atomic(out_dir / SYNTHETIC_MARKER, _readme(images, patients, size, seed, positive_rate))

    render = functools.partial(_render_image, out_dir / IMAGES_DIR, size, seed)
    if workers > 1 and len(specs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, math.ceil(len(specs) / (8 * workers)))
            drawn = list(pool.map(render, specs, chunksize=chunk))
    else:
        drawn = [render(spec) for spec in specs]

    spacing = _number(FIELD_OF_VIEW_CM * 10.0 / size)
    entry_lines = [DATA_ENTRY_HEADER]
    box_lines = [BBOX_HEADER]
    sidecar_lines = [",".join(SIDECAR_COLUMNS)]
    counts = Counter(name for spec in specs for name in spec.findings)
    for spec, instances in zip(specs, drawn, strict=True):
        labels = "|".join(spec.findings) if spec.findings else NO_FINDING
        entry_lines.append(
            f"{spec.name},{labels},{spec.follow_up},{spec.patient_id},{spec.age},{spec.gender},{spec.view},"
            f"{size},{size},{spacing},{spacing}"
        )
        for item in instances:
            box = ",".join(_number(value) for value in (item.x, item.y, item.w, item.h))
            if item.finding in BOXED_FINDINGS:
                box_lines.append(f"{spec.name},{_BBOX_SPELLING.get(item.finding, item.finding)},{box}")
            sidecar_lines.append(
                f"{spec.name},{item.finding},{item.side},{item.zone},{item.organ},{box},"
                f"{item.extent:.4f},{item.size_cm:.2f},{item.severity}"
            )
    test_names = sorted(spec.name for spec in specs if spec.patient_id in test_patients)
    train_names = sorted(spec.name for spec in specs if spec.patient_id not in test_patients)
    write_text_atomic(out_dir / TRAIN_VAL_LIST, "\n".join(train_names))  # NIH lists end without a newline
    write_text_atomic(out_dir / TEST_LIST, "\n".join(test_names))
    write_text_atomic(out_dir / BBOX_LIST_NAME, "\n".join(box_lines) + "\n")
    write_text_atomic(out_dir / SIDECAR_NAME, "\n".join(sidecar_lines) + "\n")
    # The label table last: its presence means the dataset is complete.
    write_text_atomic(out_dir / DATA_ENTRY_NAME, "\n".join(entry_lines) + "\n")
    return SyntheticSummary(
        out_dir=out_dir,
        images=images,
        patients=patients,
        counts={name: counts[name] for name in FINDINGS},
        seconds=time.perf_counter() - started,
        no_finding=sum(1 for spec in specs if not spec.findings),
        train_val_images=len(train_names),
        test_images=len(test_names),
        boxes=len(box_lines) - 1,
        instances=len(sidecar_lines) - 1,
    )
