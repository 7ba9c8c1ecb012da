"""(image, finding, annotation tokens) pairs for the captioner, and the PAIRS file that holds them.

Two sources, one token grammar (:mod:`cxreader.vocabulary`):

* **Synthetic** (:func:`synthetic_pairs`): the generator's sidecar ``synthetic_findings.csv`` records every
  drawn finding instance (side in the patient's frame, zone, organ, severity, size). One pair is written per
  (image, finding), through :func:`~cxreader.vocabulary.finding_annotation`. A finding drawn more
  than once in an image (a bilateral effusion drawn as two instances, several nodules) becomes one
  annotation, as a radiologist indexes it: right + left instances → ``bilateral``, a zone only when every
  instance shares it, the highest severity, the largest size, and ``multiple`` for more than one nodule or
  mass. The sidecar's ``cardiac`` zone (the cardiac silhouette, Cardiomegaly's own place) has no location
  word: MeSH writes ``Cardiomegaly/mild``, the organ ``heart`` already says where. A size word is written
  for the findings whose size is a diameter (Nodule, Mass, Hernia); for the others the sidecar's size is the
  longest side of a bounding box, which is not what the MeSH size words describe. Splits: the dataset's
  ``test_list.txt`` is the test split, validation is carved by patient from ``train_val_list.txt``
  (:func:`cxreader.data.chestxray14.load_splits`, method ``official``).
* **OpenI** (:func:`openi_pairs`): every linked image of an OpenI report with each ``<major>`` MeSH term of
  the report (Shin et al., CVPR 2016, trained on exactly these). Splits are 80/10/10 by report (one report
  is one patient's study), seeded.

PAIRS file (CSV, UTF-8, one row per pair; written by :func:`write_pairs`, read by :func:`read_pairs`):

=========  ==============================================================================================
image      image path; relative paths are relative to the PAIRS file's folder
finding    one of the 14 findings, or empty when the first token is a MeSH heading that maps to none
tokens     the annotation's tokens separated by single spaces; the first one is the finding or heading
split      ``train``, ``val`` or ``test``
source     ``synthetic`` or ``openi``
=========  ==============================================================================================
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cxreader.data.openi import OpenIDataset, iter_openi_reports
from cxreader.errors import DataError
from cxreader.files import write_text_atomic
from cxreader.labels import FINDINGS, UnknownFindingError, canonical_finding
from cxreader.vocabulary import SEVERITIES, MeshAnnotation, annotation_tokens, finding_annotation, to_token

#: PAIRS file columns, in order.
PAIRS_COLUMNS: tuple[str, ...] = ("image", "finding", "tokens", "split", "source")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SOURCES: tuple[str, ...] = ("synthetic", "openi")
#: Findings whose sidecar size is a diameter (the others record the longest side of a box).
DIAMETER_FINDINGS: frozenset[str] = frozenset({"Nodule", "Mass", "Hernia"})
#: Focal findings that are "multiple" when drawn more than once in an image.
COUNTABLE_FINDINGS: frozenset[str] = frozenset({"Nodule", "Mass"})
#: Sidecar zones without a MeSH location word (see the module docstring).
ZONES_WITHOUT_LOCATION: frozenset[str] = frozenset({"cardiac"})


@dataclass(frozen=True)
class CaptionPair:
    """One training or evaluation pair.

    Attributes:
        finding: One of the 14 findings, or None for a MeSH heading that maps to none.
        tokens: The annotation tokens; ``tokens[0]`` is the finding's (or heading's) token, the decoder's query.
    """

    image: Path
    finding: str | None
    tokens: tuple[str, ...]
    split: str
    source: str

    @property
    def query(self) -> str:
        """The token forced after ``<bos>`` to ask for this finding's description."""
        return self.tokens[0]


def _finding(name: str, path: Path, number: int) -> str:
    """The canonical name of one of the 14 findings, read on line ``number`` of ``path``.

    Raises:
        DataError: naming the file and line, for an unknown name or one that is not among the 14 findings.
    """
    try:
        finding = canonical_finding(name)
    except UnknownFindingError as exc:
        raise DataError(path, f"line {number}: {exc}") from None
    if finding not in FINDINGS:
        raise DataError(path, f"line {number}: {name!r} is not one of the 14 findings")
    return finding


def merge_instances(finding: str, instances: Sequence[Mapping[str, Any]]) -> MeshAnnotation:
    """One annotation for every drawn instance of one finding in one image (rules in the module docstring).

    Args:
        instances: Sidecar rows (side, zone, organ, severity, size_cm) of that finding in that image, with the
            words :func:`~cxreader.data.sidecars.read_synthetic_findings` has checked.

    Raises:
        ValueError: no instance.
    """
    if not instances:
        raise ValueError(f"{finding}: no instance to describe")
    sides = {row["side"] for row in instances}
    side = "bilateral" if "bilateral" in sides or {"right", "left"} <= sides else instances[0]["side"]
    zones = {row["zone"] for row in instances}
    zone = zones.pop() if len(zones) == 1 else None
    if zone in ZONES_WITHOUT_LOCATION:
        zone = None
    severity = max((row["severity"] for row in instances), key=SEVERITIES.index)
    size_cm = max(row["size_cm"] for row in instances) if finding in DIAMETER_FINDINGS else None
    annotation = finding_annotation(finding, side, zone, instances[0]["organ"], severity, size_cm)
    if finding in COUNTABLE_FINDINGS and len(instances) > 1:
        annotation = replace(annotation, number="multiple")
    return annotation


def synthetic_pairs(data_dir: str | Path, *, seed: int = 0, val_fraction: float = 0.1) -> list[CaptionPair]:
    """Pairs of a synthetic dataset (``generate_synthetic_dataset``'s NIH layout plus its sidecar).

    Args:
        data_dir: The dataset folder (Data_Entry CSV, images, split lists, ``synthetic_findings.csv``).
        seed: Seed of the validation carve-out.
        val_fraction: Share of ``train_val_list.txt`` patients used for validation.

    Returns:
        One pair per (image, finding), in sidecar order.

    Raises:
        DataError: a missing sidecar or table, a sidecar row with an unknown finding or value, or an image
            that is in the sidecar but in no split or not on disk.
    """
    from cxreader.data.chestxray14 import TEST_LIST, TRAIN_VAL_LIST, ImageLocator, load_splits
    from cxreader.data.sidecars import SIDECAR_NAME, read_synthetic_findings

    data_dir = Path(data_dir)
    sidecar_path = data_dir / SIDECAR_NAME
    if not sidecar_path.is_file():
        raise DataError(
            sidecar_path,
            "not found: expected a dataset written by the synthetic generator (generate_synthetic_dataset)",
        )
    frame = read_synthetic_findings(sidecar_path)
    # The split lists when the dataset has them (the generator writes them), else a seeded random split.
    official = (data_dir / TRAIN_VAL_LIST).is_file() and (data_dir / TEST_LIST).is_file()
    splits = load_splits(
        data_dir, split="official" if official else "random", seed=seed, val_fraction=val_fraction
    )
    split_of = {image: name for name, split in splits.items() for image in split.images}
    locator = ImageLocator(data_dir)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in frame.to_dict("records"):
        grouped[(row["image"], row["finding"])].append(row)
    pairs = []
    for (image, finding), instances in grouped.items():
        if image not in split_of:
            raise DataError(sidecar_path, f"image {image!r} is in no split of {data_dir}")
        annotation = merge_instances(finding, instances)
        pairs.append(
            CaptionPair(
                image=locator.locate(image),
                finding=finding,
                tokens=tuple(annotation_tokens(annotation)),
                split=split_of[image],
                source="synthetic",
            )
        )
    return pairs


def _report_splits(report_ids: Sequence[str], seed: int) -> dict[str, str]:
    order = np.random.default_rng(seed).permutation(len(report_ids))
    cut_train = int(round(0.8 * len(report_ids)))
    cut_val = cut_train + int(round(0.1 * len(report_ids)))
    names = {}
    for rank, index in enumerate(order):
        names[report_ids[index]] = "train" if rank < cut_train else "val" if rank < cut_val else "test"
    return names


def openi_pairs(dataset: OpenIDataset, *, seed: int = 0, mapped_only: bool = False) -> list[CaptionPair]:
    """Pairs of an OpenI dataset whose images were linked (:func:`cxreader.data.openi.load_openi` with
    ``images_dir``): each linked image with each distinct annotation of its report.

    Args:
        seed: Seed of the report-level 80/10/10 train/val/test split.
        mapped_only: Keep only terms whose heading maps to one of the 14 findings.
    """
    report_ids = [report.report_id for report in dataset.reports if report.image_paths]
    split_of = _report_splits(report_ids, seed)
    pairs = []
    for report in dataset.reports:
        findings: dict[tuple[str, ...], str | None] = {}  # distinct token sequences, in term order
        for annotation in report.annotations:
            if annotation.finding is not None or not mapped_only:
                findings.setdefault(tuple(annotation_tokens(annotation)), annotation.finding)
        split = split_of.get(report.report_id)  # None only for a report without linked images
        for path in report.image_paths.values():
            pairs.extend(
                CaptionPair(image=path, finding=finding, tokens=tokens, split=split, source="openi")
                for tokens, finding in findings.items()
            )
    return pairs


def mesh_sequences(source: str | Path) -> tuple[list[list[str]], Counter[str]]:
    """The token sequence of every ``<major>`` MeSH term of an OpenI report source.

    These real sequences complete the vocabulary and the decoder's language statistics when only synthetic
    images are available (see :mod:`cxreader.captioning.train`).

    Args:
        source: ``NLMCXR_reports.tgz`` or its unpacked folder.

    Returns:
        The sequences (one per term, in report order) and the reader's warning counts.

    Raises:
        DataError: when the source cannot be read.
    """
    warnings: Counter[str] = Counter()
    sequences = []
    for report in iter_openi_reports(source, warnings=warnings):
        sequences.extend(annotation_tokens(annotation) for annotation in report.annotations)
    return sequences, warnings


def _relative_image(path: Path, folder: Path) -> str:
    resolved, base = path.resolve(), folder.resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else str(resolved)


def write_pairs(pairs: Iterable[CaptionPair], path: str | Path) -> int:
    """Write a PAIRS file atomically and return its row count; image paths under its folder become relative."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PAIRS_COLUMNS)
    count = 0
    for pair in pairs:
        writer.writerow(
            [
                _relative_image(pair.image, path.parent),
                pair.finding or "",
                " ".join(pair.tokens),
                pair.split,
                pair.source,
            ]
        )
        count += 1
    write_text_atomic(path, buffer.getvalue())
    return count


def read_pairs(path: str | Path) -> list[CaptionPair]:
    """Read a PAIRS file (format in the module docstring).

    Raises:
        DataError: missing file, missing columns, or a row with no tokens, an unknown finding, a finding that
            is not its sequence's first token, an unknown split or source.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "pairs file not found (write one with `cxreader caption pairs`)")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in PAIRS_COLUMNS if column not in (reader.fieldnames or ())]
            if missing:
                raise DataError(
                    path, f"pairs columns missing: {', '.join(missing)} (expected {', '.join(PAIRS_COLUMNS)})"
                )
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV ({exc})") from None
    pairs = []
    for number, row in enumerate(rows, start=2):
        image = (row.get("image") or "").strip()
        tokens = tuple((row.get("tokens") or "").split())
        split = (row.get("split") or "").strip()
        source = (row.get("source") or "").strip()
        name = (row.get("finding") or "").strip()
        if not image:
            raise DataError(path, f"line {number}: empty image path")
        if not tokens:
            raise DataError(path, f"line {number}: no tokens")
        if split not in SPLITS:
            raise DataError(path, f"line {number}: split {split!r} is not one of {', '.join(SPLITS)}")
        if source not in SOURCES:
            raise DataError(path, f"line {number}: source {source!r} is not one of {', '.join(SOURCES)}")
        finding = None
        if name:
            finding = _finding(name, path, number)
            if tokens[0] != to_token(finding):
                raise DataError(
                    path,
                    f"line {number}: finding {finding} but the tokens start with {tokens[0]!r}, not {to_token(finding)!r}",
                )
        image_path = Path(image)
        if not image_path.is_absolute():
            image_path = path.parent / image_path
        pairs.append(
            CaptionPair(image=image_path, finding=finding, tokens=tokens, split=split, source=source)
        )
    return pairs


def select_split(pairs: Iterable[CaptionPair], split: str) -> list[CaptionPair]:
    """The pairs of one split (``train``, ``val``, ``test``), or all of them for ``all``."""
    return [pair for pair in pairs if split == "all" or pair.split == split]
