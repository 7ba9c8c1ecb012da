"""Screening at scale: every radiograph under some folders, read, classified, stored, and triaged.

The pipeline of :func:`screen`:

1. **Walk** the paths (:func:`discover_files`): folders recursively in sorted order, hidden entries skipped.
   A file is a candidate when its suffix is an image suffix (``.png``, ``.jpg``, ``.dcm``, ...), when it has no
   suffix (DICOM files from a PACS export often have none), or when its first bytes are an image's magic
   bytes (``.IMA``, UID-named DICOM files); anything else (CSV, text, ...) is counted as ignored. Files
   named on the command line are always candidates. The format is always decided by content sniffing
   (:func:`cxreader.data.io.sniff_format`), never by the name.
2. **Prepare**, in a small thread pool that works ahead of the model (decoding in Pillow, zlib and pydicom's
   pixel handlers releases the GIL): read the bytes, hash them (SHA-256), and skip the file when that
   content is already stored for this checkpoint (so a run killed at file 40,000 of 100,000 resumes there);
   else claim it in the database (:mod:`cxreader.storage.claims`: skipped when another worker holds it), decode
   it (:func:`cxreader.data.io.load_image`), ask the input gate's rules about it
   (:mod:`cxreader.inference.gate`: modality, body part, view, size, colour, contrast), and apply the
   checkpoint's evaluation preset.
3. **Infer** in batches on the main thread (:func:`classify_batch`, which the service's uploads use too;
   PyTorch, or ONNX Runtime for an exported model) while the pool decodes the next files; with a PyTorch
   model, the images with a finding above threshold also get class activation maps and a grounded
   description of each positive finding (:func:`cxreader.localization.explain.explain_batch`), and with a
   captioner a learned caption.
4. **Store** every image atomically (:func:`cxreader.storage.write.add_image_result`, one SAVEPOINT per image,
   one short write transaction per batch that also releases the batch's claims: a kill loses at most the batch
   in flight, never half an image). A file that cannot be read, a dangling symbolic link or a loop of links is
   recorded as failed with its reason (:func:`cxreader.storage.write.record_failure`) and the run goes on.
5. **Triage**: the images of this run with findings above threshold, most urgent first
   (:mod:`cxreader.screening.triage`), including those stored by an earlier, interrupted run.

The input gate: an image the gate refuses (a CT or MR, a lateral view, a photograph, a tiny or nearly blank
image, or one the checkpoint's out-of-distribution detector finds unlike its training images) is stored with
status ``refused`` and the reasons, with no findings, and listed apart from the triage list: a CheXNet model's
outputs on such images mean nothing.

Many workers: any number of ``screen`` processes, on one machine or many, may screen the same folders into
one database (each claims what it reads), and under ``torchrun`` each rank takes every ``world_size``-th file
(``share``); paths are stored absolute, and file names that are not UTF-8 are stored with ``\\xNN`` escapes.

Synthetic data: an image under a folder holding the synthetic generator's ``SYNTHETIC_README.txt`` is
marked synthetic, and so is every result of a checkpoint trained on synthetic data (its contract says so):
both are meaningless for real patients, and the records say so wherever they are shown.

Patient identifiers (DICOM PatientID, ...) go to the records database only; the progress bar, the logs and
the printed triage list never show them.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image
from pydicom.valuerep import DA
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cxreader.data.cache import IMAGE_SUFFIXES
from cxreader.data.io import REDUCING_GAP, LoadedImage, declared_pixel_count, load_image, sniff_format
from cxreader.data.sidecars import SYNTHETIC_MARKER
from cxreader.data.transforms import EvalPreset
from cxreader.errors import ConfigError, CXReaderError, ImageReadError
from cxreader.files import printable_path, sha256_bytes
from cxreader.inference.backends import ModelBackend
from cxreader.inference.gate import GateVerdict, InputGate
from cxreader.labels import FINDINGS, positive_findings
from cxreader.localization.describe import FindingDescription
from cxreader.localization.explain import Explanation, ImageView, explain_batch
from cxreader.progress import Progress
from cxreader.screening.captions import learned_captions
from cxreader.screening.triage import TriageEntry, triage_from_database
from cxreader.storage.claims import ClaimOutcome, Worker, claim, release, release_all, renew
from cxreader.storage.db import Database, begin_write
from cxreader.storage.names import DEFAULT_LEASE_S
from cxreader.storage.read import stored_hashes
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo
from cxreader.storage.write import add_image_result, record_failure, register_checkpoint

logger = logging.getLogger(__name__)

#: Largest image, in pixels, that screening decodes by default (a decoded pixel costs about 12 to 25 bytes on
#: its way to the model): 100 megapixels, five times the largest chest detector (43 x 43 cm at 100 µm).
DEFAULT_MAX_PIXELS = 100_000_000
#: Longer side of the display rendition kept for descriptions and for the web page.
DISPLAY_MAX_SIDE = 1024
# DICOMDIR is the index of a DICOM medium (PS3.10), never an image.
_NOT_IMAGES = frozenset({"DICOMDIR"})
_SNIFF_BYTES = 132

T = TypeVar("T")
R = TypeVar("R")


# --- finding the files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveredFiles:
    """The candidate files of a run, in processing order, the paths that cannot be followed, and how many other
    files were passed over.

    Paths are absolute (the same image keeps one path whatever folder a run starts in); symbolic links are
    followed, and those that cannot be (dangling, or a loop) are listed in ``problems`` with the reason.
    """

    files: list[Path]
    ignored: int
    problems: list[tuple[Path, str]] = field(default_factory=list)


def discover_files(paths: Iterable[str | Path]) -> DiscoveredFiles:
    """The candidate image files under ``paths`` (the rule in the module docstring), sorted per folder.

    Raises:
        ConfigError: a path that does not exist.
    """
    files: dict[Path, None] = {}  # ordered and without repeats
    problems: dict[Path, str] = {}
    ignored = 0
    for raw in paths:
        path = Path(os.path.abspath(raw))
        if path.is_dir():
            walked: set[tuple[int, int] | None] = set()

            def unlistable(error: OSError) -> None:
                problems[Path(error.filename)] = (
                    f"cannot list the folder ({error.strerror or 'unknown error'})"
                )

            for directory, subdirectories, names in os.walk(path, onerror=unlistable, followlinks=True):
                here = Path(directory)
                walked.add(_identity(here))
                kept = []
                for name in sorted(subdirectories):
                    if name.startswith("."):
                        continue
                    if (here / name).is_symlink() and _identity(here / name) in walked:
                        problems[here / name] = "symbolic link loop: it leads back to a folder already walked"
                    else:
                        kept.append(name)
                subdirectories[:] = kept
                for name in sorted(names):
                    candidate = here / name
                    problem = _link_problem(candidate)
                    if problem is not None:
                        problems[candidate] = problem
                    elif name.startswith(".") or not _is_candidate(candidate):
                        ignored += 1
                    else:
                        files[candidate] = None
        elif path.exists():
            files[path] = None
        elif path.is_symlink():
            problems[path] = _link_problem(path) or "symbolic link that cannot be followed"
        else:
            raise ConfigError(f"{printable_path(path)}: no such file or folder")
    return DiscoveredFiles(files=list(files), ignored=ignored, problems=list(problems.items()))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (dangling, or a loop of links); ``None`` for anything else."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except FileNotFoundError:
        return "dangling symbolic link: its target does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: the links point at each other"
        return f"symbolic link cannot be followed ({exc.strerror or type(exc).__name__})"
    return None


def _is_candidate(path: Path) -> bool:
    if path.name.upper() in _NOT_IMAGES or not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix == "":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return True  # unreadable: let the run record why
    return sniff_format(head) is not None


@functools.lru_cache(maxsize=4096)
def _synthetic_directory(directory: Path) -> bool:
    if (directory / SYNTHETIC_MARKER).is_file():
        return True
    return directory.parent != directory and _synthetic_directory(directory.parent)


def is_synthetic_file(path: str | Path) -> bool:
    """Whether the file lies under a folder written by cxreader's synthetic data generator."""
    return _synthetic_directory(Path(path).resolve().parent)


# --- preparing one image -------------------------------------------------------------------------------------


@dataclass(eq=False)
class PreparedImage:
    """A decoded, checked and preprocessed image, ready for the model.

    Attributes:
        path: The file (or, for an upload, the name the server gave it).
        sha256: SHA-256 of the file's bytes.
        image: The decoded image's format, size and DICOM metadata (its pixels are released once the tensor
            and the display rendition exist).
        tensor: The model input ``(3, S, S)`` from the checkpoint's evaluation preset.
        display: uint8 rendition, longer side at most :data:`DISPLAY_MAX_SIDE`, or ``None`` when not kept.
        width, height: Size of the original image in pixels.
        refused: The input gate's rules the image breaks (:mod:`cxreader.inference.gate`); a refused image has
            no model input and is stored as "not read" with these reasons.
    """

    path: str
    sha256: str
    image: LoadedImage
    tensor: torch.Tensor | None
    display: np.ndarray | None
    width: int
    height: int
    refused: tuple[str, ...] = ()

    def view(self) -> ImageView:
        """What a description needs (the display rendition must have been kept)."""
        if self.display is None:
            raise ValueError(f"{self.path}: no display rendition was kept")
        return ImageView(
            pixels=self.display,
            original_size=(self.width, self.height),
            view_position=self.image.view_position,
            pixel_spacing_mm=self.image.pixel_spacing_mm,
        )


def display_rendition(pixels: np.ndarray) -> np.ndarray:
    """uint8 copy of a ``[0, 1]`` image, shrunk (Lanczos, aspect kept) to a longer side of at most
    :data:`DISPLAY_MAX_SIDE`."""
    # In place on one scratch copy: a full-resolution float temporary per step would triple the peak memory.
    scaled = np.clip(pixels, 0.0, 1.0)
    np.multiply(scaled, 255.0, out=scaled)
    np.rint(scaled, out=scaled)
    gray = Image.fromarray(scaled.astype(np.uint8), mode="L")
    del scaled
    width, height = gray.size
    scale = DISPLAY_MAX_SIDE / max(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = gray.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return np.asarray(gray, dtype=np.uint8).copy()


def prepare_image(
    name: str,
    data: bytes,
    *,
    transform: EvalPreset,
    keep_display: bool,
    sha256: str | None = None,
    gate: InputGate | None = None,
) -> PreparedImage:
    """Decode one image, ask the input gate's rules about it, and make its model input.

    Args:
        name: The file name used in error messages (and stored as the image's source).
        data: The file's bytes.
        transform: The checkpoint's evaluation preset.
        keep_display: Keep a display rendition (for descriptions and the web page).
        sha256: The bytes' SHA-256 when already computed.
        gate: The model's input gate; an image that breaks its rules gets no model input (``refused``).

    Raises:
        ImageReadError: not an image, corrupt or truncated.
    """
    image = load_image(name, data=data)
    refused = tuple(gate.rules(image)) if gate is not None else ()
    height, width = image.pixels.shape
    return PreparedImage(
        path=name,
        sha256=sha256 or sha256_bytes(data),
        # The full-resolution float pixels are the largest object here; the pipeline holds many images at once.
        image=replace(image, pixels=np.zeros((0, 0), dtype=np.float32)),
        tensor=None if refused else transform(image.pixels),
        display=display_rendition(image.pixels) if keep_display else None,
        width=width,
        height=height,
        refused=refused,
    )


@dataclass(frozen=True)
class _Outcome:
    """What the pool hands back for one file: prepared, already stored, claimed by another worker, or failed."""

    path: Path
    sha256: str
    prepared: PreparedImage | None = None
    stored: bool = False
    elsewhere: bool = False
    reason: str | None = None
    #: This worker holds a claim on the content (released when its result or failure is stored).
    claimed: bool = False


def _stand_in_hash(path: Path) -> str:
    """A key for a file without readable content: the next run tries the file again under the same key."""
    return sha256_bytes(b"unreadable:" + os.fsencode(path))


def _prepare_file(
    path: Path,
    *,
    transform: EvalPreset,
    keep_display: bool,
    stored: set[str] | frozenset[str],
    claim_content: Callable[[str], ClaimOutcome] | None = None,
    gate: InputGate | None = None,
    max_pixels: int | None = None,
) -> _Outcome:
    try:
        data = path.read_bytes()
    except OSError as exc:
        # No content, so no content hash: the path stands in for it, and the next run tries the file again.
        reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
        return _Outcome(path, _stand_in_hash(path), reason=reason)
    sha256 = sha256_bytes(data)
    if sha256 in stored:
        return _Outcome(path, sha256, stored=True)
    declared = declared_pixel_count(data) if max_pixels is not None else None
    if declared is not None and max_pixels is not None and declared > max_pixels:
        # Refused before decoding: one such file must not take the memory of a run over 100,000.
        reason = (
            f"image too large: its header declares {declared:,} pixels; screening reads at most "
            f"{max_pixels:,} (--max-megapixels)"
        )
        return _Outcome(path, sha256, reason=reason)
    claimed = False
    if claim_content is not None:
        outcome = claim_content(sha256)
        if outcome != "claimed":
            return _Outcome(path, sha256, stored=outcome == "stored", elsewhere=outcome == "elsewhere")
        claimed = True
    name = printable_path(path)
    try:
        prepared = prepare_image(
            name, data, transform=transform, keep_display=keep_display, sha256=sha256, gate=gate
        )
    except ImageReadError as exc:
        return _Outcome(path, sha256, reason=exc.reason, claimed=claimed)
    except Exception as exc:  # a decoder bug on one file must not end a run over 100,000
        reason = f"unexpected error while reading: {type(exc).__name__}: {exc}"
        return _Outcome(path, sha256, reason=reason, claimed=claimed)
    return _Outcome(path, sha256, prepared=prepared, claimed=claimed)


def _ordered_map(
    pool: ThreadPoolExecutor | None, function: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``map`` over a thread pool with at most ``window`` items in flight, results in input order."""
    if pool is None:
        yield from map(function, items)
        return
    iterator = iter(items)
    pending: deque[Future[R]] = deque(
        pool.submit(function, item) for item in itertools.islice(iterator, window)
    )
    try:
        while pending:
            result = pending.popleft().result()
            for item in iterator:
                pending.append(pool.submit(function, item))
                break
            yield result
    finally:
        for future in pending:
            future.cancel()


# --- from model output to stored result ----------------------------------------------------------------------


def parse_dicom_date(value: str | None) -> date | None:
    """A DICOM DA value (``YYYYMMDD``, or the old ``YYYY.MM.DD``) as a date; ``None`` when absent or invalid."""
    try:
        parsed = DA((value or "").strip())  # None for an empty value
    except ValueError:
        return None
    return date(parsed.year, parsed.month, parsed.day) if parsed is not None else None


def image_result(
    prepared: PreparedImage,
    probabilities: np.ndarray | None,
    thresholds: Sequence[float],
    *,
    checkpoint_id: int,
    source_path: str,
    synthetic: bool,
    explanation: Explanation | None = None,
    heatmap_paths: dict[str, str] | None = None,
    captions: dict[str, str] | None = None,
    verdict: GateVerdict | None = None,
    labels: Sequence[str] = FINDINGS,
) -> ImageResult:
    """The storage record of one screened image (``captions``: learned captions by finding, where written).

    ``probabilities`` and ``thresholds`` are in ``labels`` order: the model's label order
    (:attr:`~cxreader.inference.backends.ModelBackend.labels`; default the 14 CheXNet findings). An image the
    input gate refused (by its rules when prepared, or by the ``verdict`` of the forward pass) is stored with
    the reasons and no findings.
    """
    refused = prepared.refused or (verdict.reasons if verdict is not None and not verdict.accepted else ())
    findings = (
        []
        if refused or probabilities is None
        else _finding_results(
            probabilities, thresholds, labels, explanation, heatmap_paths or {}, captions or {}
        )
    )
    spacing = prepared.image.pixel_spacing_mm
    metadata = prepared.image.metadata
    return ImageResult(
        source_path=source_path,
        content_sha256=prepared.sha256,
        checkpoint_id=checkpoint_id,
        findings=findings,
        # What a DICOM header tells of the study (nothing for PNG and JPEG files).
        study=StudyInfo(
            patient_id=metadata.get("PatientID"),
            study_instance_uid=metadata.get("StudyInstanceUID"),
            study_date=parse_dicom_date(metadata.get("StudyDate")),
        ),
        sop_instance_uid=metadata.get("SOPInstanceUID"),
        view_position=prepared.image.view_position,
        modality=metadata.get("Modality"),
        width=prepared.width,
        height=prepared.height,
        # LoadedImage gives (row, column) spacing; the records store (x, y) = (column, row).
        pixel_spacing=(spacing[1], spacing[0]) if spacing else None,
        synthetic=synthetic,
        refused=tuple(refused),
        gate_score=verdict.score if verdict is not None else None,
        gate_threshold=verdict.threshold if verdict is not None else None,
    )


def _finding_results(
    probabilities: np.ndarray,
    thresholds: Sequence[float],
    labels: Sequence[str],
    explanation: Explanation | None,
    heatmap_paths: dict[str, str],
    captions: dict[str, str],
) -> list[FindingResult]:
    """One result per label, in label order (``probabilities`` and ``thresholds`` are in that order)."""
    described = {item.finding: item for item in explanation.descriptions} if explanation is not None else {}
    findings = []
    for name, probability, threshold in zip(labels, probabilities, thresholds, strict=True):
        description = described.get(name)
        data, box = _stored_description(description) if description is not None else (None, None)
        findings.append(
            FindingResult(
                finding=name,
                probability=float(probability),
                threshold=float(threshold),
                description=description.sentence if description is not None else None,
                description_data=data,
                caption=captions.get(name),
                heatmap_path=heatmap_paths.get(name),
                box=box,
            )
        )
    return findings


def _stored_description(
    description: FindingDescription,
) -> tuple[dict[str, Any], tuple[int, int, int, int] | None]:
    """A description as the records keep it: its JSON with the view used, and boxes in whole pixels."""
    data = description.to_json_dict()
    box = _whole_pixels(description.box) if description.box is not None else None
    data["box"] = list(box) if box is not None else None
    for focus in data.get("foci", []):
        focus["box"] = list(_whole_pixels(focus["box"]))
    data["view"] = description.view
    data["view_assumed"] = bool(description.view_assumed)
    return data, box


def _whole_pixels(box: Sequence[float]) -> tuple[int, int, int, int]:
    """A box ``[x, y, w, h]`` in whole pixels of the original image (the records store integers)."""
    x, y, w, h = box
    return max(0, round(x)), max(0, round(y)), max(1, round(w)), max(1, round(h))


@dataclass(frozen=True)
class Reading:
    """What the model made of one image: probabilities, the gate's verdict, and (for accepted images) the
    explanation and learned captions where asked for."""

    probabilities: np.ndarray
    verdict: GateVerdict
    explanation: Explanation | None = None
    captions: dict[str, str] | None = None


def classify_batch(
    backend: ModelBackend,
    batch: Sequence[PreparedImage],
    *,
    describe: bool,
    captioner: Any = None,
    findings: str | None = None,
) -> list[Reading]:
    """Classify prepared images in one forward pass, gate them, then explain and caption those the gate accepts
    (screening and uploads).

    Args:
        backend: The model.
        batch: Images from :func:`prepare_image` that passed the gate's rules, with the display rendition
            ``describe`` and ``captioner`` need.
        describe: Add class activation maps and grounded descriptions (PyTorch models only).
        captioner: A :class:`~cxreader.captioning.predict.CaptionPredictor` for learned captions, or ``None``.
        findings: Whose maps to keep, as in :func:`~cxreader.localization.explain.explain_batch`.
    """
    tensors = torch.stack([item.tensor for item in batch if item.tensor is not None])
    if len(tensors) != len(batch):
        raise ValueError("classify_batch takes images that passed the gate's rules only")
    probabilities, features = backend.predict_features(tensors)
    verdicts = backend.gate.verdicts([item.refused for item in batch], features)
    accepted = [index for index, verdict in enumerate(verdicts) if verdict.accepted]
    explanations: dict[int, Explanation] = {}
    if describe and accepted:
        views = [batch[index].view() for index in accepted]
        chosen = features[accepted] if features is not None else None
        explained = explain_batch(
            backend, tensors[accepted], probabilities[accepted], views, findings=findings, features=chosen
        )
        explanations = dict(zip(accepted, explained, strict=True))
    thresholds = backend.contract.thresholds
    readings = []
    for index, (item, row, verdict) in enumerate(zip(batch, probabilities, verdicts, strict=True)):
        captions = None
        if captioner is not None and verdict.accepted:
            positives = positive_findings(row, thresholds, backend.labels)
            captions = learned_captions(captioner, item.display, positives)
        readings.append(Reading(row, verdict, explanations.get(index), captions))
    return readings


def register_backend(session: Session, backend: ModelBackend) -> int:
    """Store the backend's checkpoint (once per file content), with its label order, and return its id."""
    contract = backend.contract
    return register_checkpoint(
        session=session,
        sha256=backend.sha256,
        labels=backend.labels,
        thresholds=contract.thresholds,
        model_name=contract.model_name,
        version=contract.cxreader_version or None,
        path=printable_path(backend.path),
        synthetic=bool(contract.synthetic),
    )


# --- the run -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredImage:
    """An image whose result (read, or refused by the gate) a run stores, as a result sink sees it.

    Attributes:
        source: The file that was read.
        prepared: The decoded image (with its display rendition when the sink asked for one).
        reading: What the model made of it; ``None`` for an image the gate's rules refused.
        result: The record stored.
        image_id: Its id in the records database.
    """

    source: Path
    prepared: PreparedImage
    reading: Reading | None
    result: ImageResult
    image_id: int


class ResultSink(Protocol):
    """Something done with every stored result, in step with the database (e.g. DICOM objects written and sent
    to a PACS, :class:`cxreader.dicom.outputs.DicomOutputs`).

    ``stage`` runs inside the write transaction that stores a batch (what it records commits or rolls back with
    the results); ``committed`` runs once the batch is committed. A sink reports its own per-image problems: an
    exception from it ends the run.
    """

    #: Whether the sink needs each image's display rendition (kept in :attr:`PreparedImage.display`).
    needs_display: bool

    def stage(self, session: Session, stored: Sequence[StoredImage]) -> None: ...

    def committed(self, stored: Sequence[StoredImage]) -> None: ...


@dataclass
class ScreeningReport:
    """What a screening run did (one worker's share, or all ranks' merged by :func:`merge_reports`).

    Attributes:
        files: Candidate files of this run's share (and paths that could not be followed).
        screened: Images read, classified and stored by this run (the summary's ``inferred``).
        skipped: Files already stored for this checkpoint, not read again (``already_stored``).
        claimed_elsewhere: Files another worker had claimed when this one came to them (``claimed_elsewhere``).
        refused: Images the input gate refused, stored as "not read" with the reasons (``refused``).
        failed: Files recorded as failed by this run.
        duplicates: Files whose content another file of this run has already.
        ignored: Files passed over as not being images.
        seconds: Wall time of the run.
        described: Whether results carry heatmap-grounded descriptions.
        synthetic_model: The checkpoint was trained on synthetic data.
        checkpoint_id: The checkpoint's id in the records database.
        triage: Images of this run with findings above threshold, most urgent first.
        failures: ``(path, reason)`` of the files that failed in this run.
        refusals: ``(path, reasons)`` of the images the gate refused in this run.
        contents: Content hashes of the files this run came across (what its triage list covers).
        ranks: Processes whose shares the report covers.
    """

    files: int = 0
    screened: int = 0
    skipped: int = 0
    claimed_elsewhere: int = 0
    refused: int = 0
    failed: int = 0
    duplicates: int = 0
    ignored: int = 0
    seconds: float = 0.0
    described: bool = False
    synthetic_model: bool = False
    checkpoint_id: int | None = None
    triage: list[TriageEntry] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    refusals: list[tuple[str, str]] = field(default_factory=list)
    contents: set[str] = field(default_factory=set, repr=False)
    ranks: int = 1

    @property
    def images_per_second(self) -> float:
        """Images screened (read, classified and stored) per second of the run."""
        return self.screened / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The run's counts for ``screen --summary-json``."""
        return {
            "inferred": self.screened,
            "already_stored": self.skipped,
            "claimed_elsewhere": self.claimed_elsewhere,
            "refused": self.refused,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "files": self.files,
            "ranks": self.ranks,
            "seconds": round(self.seconds, 3),
            "synthetic_model": self.synthetic_model,
        }


def merge_reports(reports: Sequence[ScreeningReport]) -> ScreeningReport:
    """One report of several workers' shares (torchrun ranks): counts added, the longest wall time."""
    first = reports[0]
    merged = ScreeningReport(
        described=first.described,
        synthetic_model=first.synthetic_model,
        checkpoint_id=first.checkpoint_id,
        ranks=sum(report.ranks for report in reports),
    )
    for report in reports:
        for name in (
            "files",
            "screened",
            "skipped",
            "claimed_elsewhere",
            "refused",
            "failed",
            "duplicates",
            "ignored",
        ):
            setattr(merged, name, getattr(merged, name) + getattr(report, name))
        merged.seconds = max(merged.seconds, report.seconds)
        merged.failures.extend(report.failures)
        merged.refusals.extend(report.refusals)
        merged.contents |= report.contents
    return merged


def add_triage(report: ScreeningReport, database: Database) -> ScreeningReport:
    """Fill in the report's triage list from the stored results of the files it came across."""
    if report.checkpoint_id is not None:
        with database.session() as session:
            report.triage = triage_from_database(
                session=session, checkpoint_id=report.checkpoint_id, content_sha256s=report.contents
            )
    return report


@dataclass
class _Run:
    """One run's state: it sorts the files' outcomes, classifies full batches, and writes results and failures
    one short write transaction per batch (which also releases their claims), counting them in the report."""

    session: Session
    report: ScreeningReport
    backend: ModelBackend
    checkpoint_id: int
    #: Content hashes stored for the checkpoint, and those taken into a batch by this run.
    stored: set[str]
    describe: bool
    captioner: Any
    worker: Worker
    lease_s: float
    batch: list[PreparedImage] = field(default_factory=list)
    results: list[ImageResult] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: Contents this worker has claimed and not yet stored.
    held: set[str] = field(default_factory=set)
    sink: ResultSink | None = None
    #: The file each content taken into a batch was read from.
    sources: dict[str, Path] = field(default_factory=dict)
    #: For the sink: the prepared image and reading of each pending result, in the order of ``results``.
    readings: list[tuple[PreparedImage, Reading | None]] = field(default_factory=list)

    def fail(self, reason: str, **failure: Any) -> None:
        """Count a failure and keep it for the flush (``failure``: the other arguments of ``record_failure``)."""
        self.report.failed += 1
        self.report.failures.append((failure["source_path"], reason))
        self.failures.append({"reason": reason, **failure})

    def take(self, outcome: _Outcome) -> None:
        """Sort one file's outcome into the batch, the skipped, the duplicates or the failures."""
        sha256 = outcome.sha256
        if outcome.claimed:
            self.held.add(sha256)
        if sha256 in self.report.contents:
            self.report.duplicates += 1
            return
        self.report.contents.add(sha256)
        if outcome.stored:
            self.report.skipped += 1
        elif outcome.elsewhere:
            self.report.claimed_elsewhere += 1
        elif outcome.reason is not None:
            logger.debug("%s: %s", printable_path(outcome.path), outcome.reason)
            self.fail(
                outcome.reason,
                source_path=printable_path(outcome.path),
                content_sha256=sha256,
                # Reading does not depend on the model: the failure holds for every checkpoint.
                checkpoint_id=None,
                synthetic=self.report.synthetic_model or is_synthetic_file(outcome.path),
            )
        else:
            assert outcome.prepared is not None
            self.stored.add(sha256)  # later copies of the same content are not decoded again
            self.sources[sha256] = outcome.path
            if outcome.prepared.refused:  # by the gate's rules: stored as "not read", the model never runs
                self.keep(outcome.prepared, None)
            else:
                self.batch.append(outcome.prepared)

    def keep(self, item: PreparedImage, reading: Reading | None) -> None:
        """Queue the record of one image (read, or refused by the gate) for the next flush."""
        result = image_result(
            item,
            reading.probabilities if reading is not None else None,
            self.backend.contract.thresholds,
            checkpoint_id=self.checkpoint_id,
            source_path=item.path,
            synthetic=self.report.synthetic_model or is_synthetic_file(item.path),
            explanation=reading.explanation if reading is not None else None,
            captions=reading.captions if reading is not None else None,
            verdict=reading.verdict if reading is not None else None,
            labels=self.backend.labels,
        )
        if result.refused:
            self.report.refused += 1
            self.report.refusals.append((item.path, "; ".join(result.refused)))
        else:
            self.report.screened += 1
        self.results.append(result)
        self.readings.append((item, reading))

    def run_batch(self) -> None:
        synthetic_model = self.report.synthetic_model
        try:
            readings = classify_batch(
                self.backend, self.batch, describe=self.describe, captioner=self.captioner
            )
        except CXReaderError as exc:
            for item in self.batch:
                self.fail(
                    f"inference failed: {exc}",
                    source_path=item.path,
                    content_sha256=item.sha256,
                    checkpoint_id=self.checkpoint_id,
                    synthetic=synthetic_model,
                )
        else:
            for item, reading in zip(self.batch, readings, strict=True):
                self.keep(item, reading)
        self.batch.clear()
        self.flush()

    def flush(self) -> None:
        """Store the pending results and failures, release their claims and renew the others, in one short
        write transaction (on SQLite it waits for the write lock, never fails at once)."""
        begin_write(self.session)
        written: list[str] = []
        staged: list[StoredImage] = []
        for result, (item, reading) in zip(self.results, self.readings, strict=True):
            try:
                image_id = add_image_result(session=self.session, result=result, commit=False)
                if self.sink is not None:
                    source = self.sources.get(result.content_sha256, Path(result.source_path))
                    staged.append(StoredImage(source, item, reading, result, image_id))
            except CXReaderError as exc:  # a malformed record (e.g. an over-long DICOM UID): record why
                if result.refused:
                    self.report.refused -= 1
                else:
                    self.report.screened -= 1
                self.fail(
                    getattr(exc, "reason", str(exc)),
                    source_path=result.source_path,
                    content_sha256=result.content_sha256,
                    checkpoint_id=result.checkpoint_id,
                    synthetic=result.synthetic,
                )
            written.append(result.content_sha256)
        for failure in self.failures:
            record_failure(session=self.session, commit=False, **failure)
            written.append(failure["content_sha256"])
        done = self.held.intersection(written)
        if done:
            release(
                session=self.session,
                content_sha256s=done,
                checkpoint_id=self.checkpoint_id,
                worker=self.worker,
            )
            self.held -= done
        # Also the claims the reading threads took since (not in `held` yet): one UPDATE per batch.
        renew(session=self.session, worker=self.worker, lease_s=self.lease_s)
        if staged and self.sink is not None:
            self.sink.stage(self.session, staged)
        self.session.commit()  # on an error, closing the session rolls the batch back
        for result in self.results:
            self.sources.pop(result.content_sha256, None)
        self.results.clear()
        self.readings.clear()
        self.failures.clear()
        if staged and self.sink is not None:
            self.sink.committed(staged)


def screen(
    paths: Sequence[str | Path],
    *,
    backend: ModelBackend,
    database: Database,
    batch_size: int = 16,
    workers: int = 2,
    describe: bool | None = None,
    captioner: Any = None,
    progress: bool = True,
    share: tuple[int, int] = (0, 1),
    lease_s: float = DEFAULT_LEASE_S,
    triage: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    sink: ResultSink | None = None,
    preload_stored: bool = True,
) -> ScreeningReport:
    """Screen every radiograph under ``paths`` and store one record per image (see the module docstring).

    Any number of processes may screen the same paths into the same database at once: each claims an image
    before reading it (:mod:`cxreader.storage.claims`), so none infers an image another has taken.

    Args:
        paths: Files and folders.
        backend: The model (:func:`cxreader.inference.backends.load_backend`).
        database: The open records database.
        batch_size: Images per forward pass.
        workers: Threads reading and preprocessing files ahead of the model; 0 reads on the main thread.
        describe: Add heatmap-grounded descriptions of positive findings; default: when the backend is a
            PyTorch model.
        captioner: A :class:`~cxreader.captioning.predict.CaptionPredictor` that adds a learned caption to
            each positive finding (:func:`cxreader.screening.captions.learned_captions`); None: no captions.
        progress: Show progress (files/s, ETA) on standard error with :class:`~cxreader.progress.Progress`.
        share: ``(rank, world_size)``: screen every ``world_size``-th file of the sorted list, from the
            ``rank``-th (torchrun ranks split the inputs so; the claims keep them apart in any case).
        lease_s: Seconds a claim lasts without renewal (renewed after every stored batch).
        triage: Build the triage list (a torchrun rank leaves it to the merged report).
        max_pixels: Largest image a file may declare in its header; larger ones are recorded as failed
            before they are decoded (``None``: no limit).
        sink: Also hand every stored result to this sink (:class:`ResultSink`), e.g. to write it as DICOM.
        preload_stored: Read the content hashes stored for the checkpoint once, up front, to skip them without
            a query each. A caller that screens a few files at a time over a large archive (the DICOM node)
            passes False: each file's claim then asks whether it is stored.

    Returns:
        A :class:`ScreeningReport` with the triage list.

    Raises:
        ConfigError: a path that does not exist, or a batch size, worker count or share out of range.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    rank, world_size = share
    if not 0 <= rank < world_size:
        raise ConfigError(f"share {rank} of {world_size} is out of range")
    if not lease_s > 0:
        raise ConfigError(f"the claim lease must be positive, got {lease_s} s")
    started = time.perf_counter()
    can_describe = backend.model is not None
    if describe and not can_describe:
        raise ConfigError(
            f"descriptions need a PyTorch checkpoint (this backend: {backend.kind}); run without --describe"
        )
    describe = can_describe if describe is None else describe
    discovered = discover_files(paths)
    files = discovered.files[rank::world_size]
    problems = discovered.problems[rank::world_size]
    report = ScreeningReport(
        files=len(files) + len(problems),
        ignored=discovered.ignored if rank == 0 else 0,
        described=describe,
        synthetic_model=bool(backend.contract.synthetic),
    )
    worker = Worker()
    with database.session() as session:
        checkpoint_id = report.checkpoint_id = register_backend(session, backend)
        stored = stored_hashes(session=session, checkpoint_id=checkpoint_id) if preload_stored else set()
        session.commit()  # no read transaction left open: the next one is a write (see Run.flush)
        run = _Run(
            session,
            report,
            backend,
            checkpoint_id,
            stored,
            describe,
            captioner,
            worker=worker,
            lease_s=lease_s,
            sink=sink,
        )
        for path, reason in problems:
            run.fail(
                reason,
                source_path=printable_path(path),
                content_sha256=_stand_in_hash(path),
                checkpoint_id=None,
                synthetic=report.synthetic_model,
            )
        prepare = functools.partial(
            _prepare_file,
            transform=backend.transform,
            keep_display=describe or captioner is not None or (sink is not None and sink.needs_display),
            stored=stored,
            claim_content=functools.partial(_claim, database, checkpoint_id, worker, lease_s),
            gate=backend.gate,
            max_pixels=max_pixels,
        )
        bar = Progress(len(files), desc="screening", unit=" files", enabled=progress)
        pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxreader-read") if workers else None
        )
        # An interrupt or an error keeps the committed batches; closing the session drops the one in flight,
        # and this worker's claims are released (a killed worker's lapse with their lease).
        try:
            # Enough files in flight to fill the next batch while the model works on this one.
            window = 2 * batch_size + 2 * workers
            for outcome in _ordered_map(pool, prepare, files, window):
                run.take(outcome)
                if len(run.batch) >= batch_size:
                    run.run_batch()
                if len(run.failures) >= batch_size:
                    run.flush()
                bar.update(1)
                if bar.n % batch_size == 0:
                    bar.set_postfix(ok=report.screened, failed=report.failed, skipped=report.skipped)
            if run.batch:
                run.run_batch()
            run.flush()
            bar.set_postfix(ok=report.screened, failed=report.failed, skipped=report.skipped)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            session.rollback()
            _release_claims(database, worker)
    report.seconds = time.perf_counter() - started
    return add_triage(report, database) if triage else report


def _claim(
    database: Database, checkpoint_id: int, worker: Worker, lease_s: float, sha256: str
) -> ClaimOutcome:
    """Claim one content in a session of its own (called from the reading threads)."""
    with database.session() as session:
        return claim(
            session=session,
            content_sha256=sha256,
            checkpoint_id=checkpoint_id,
            worker=worker,
            lease_s=lease_s,
        )


def _release_claims(database: Database, worker: Worker) -> None:
    """Release what this worker still holds; a database that cannot be reached leaves them to their lease."""
    try:
        with database.session() as session:
            release_all(session=session, worker=worker)
    except SQLAlchemyError as exc:
        logger.warning("could not release this worker's claims (they lapse with their lease): %s", exc)
