"""Results as DICOM, in step with the records database: the screening sink that writes, records and sends the
objects of every stored result of a DICOM image.

For each screened DICOM image (a plain PNG or JPEG has no study to put them in) the sink builds, in the source
study and in new series of their own:

* the TID 1500 Measurement Report (:func:`cxreader.dicom.report.measurement_report`), also for an image the
  input gate refused (it then says "not read" and why);
* the Secondary Capture of the heatmap overlay (:func:`cxreader.dicom.capture.overlay_capture`);
* for an image on the triage list (a finding above its threshold), a Key Object Selection that flags it
  (:func:`cxreader.dicom.selection.triage_selection`).

The UIDs are derived from the source instance and the checkpoint (:mod:`cxreader.dicom.identifiers`), so writing
or sending the same result again replaces the earlier copy instead of adding a second one. Files are written
whole (a temporary file renamed into place) inside the write transaction of the batch, and their rows are stored
in it; the objects are sent once the batch is committed. A problem with one image (an unreadable header, a
writer's error, a refused transfer) is one warning line, never the end of a run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from cxreader.dicom.capture import overlay_capture
from cxreader.dicom.identifiers import result_instance_uid, result_series_uid
from cxreader.dicom.report import Algorithm, measurement_report
from cxreader.dicom.selection import triage_selection
from cxreader.dicom.senders import Sender, SendError
from cxreader.errors import exception_line
from cxreader.files import atomic_write, printable_path
from cxreader.inference.backends import ModelBackend
from cxreader.labels import display_name
from cxreader.screening.engine import StoredImage
from cxreader.screening.triage import make_entry, urgency_tier
from cxreader.storage.dicom_objects import record_dicom_objects
from cxreader.storage.records import DicomObjectRecord

logger = logging.getLogger(__name__)

#: Series numbers of the objects cxreader adds to a study (high, to sort after the acquisition's series).
SERIES_NUMBERS = {"sr": 9901, "overlay": 9902, "kos": 9903}


def algorithm_of(backend: ModelBackend) -> Algorithm:
    """What identifies the backend's model in the objects it writes."""
    contract = backend.contract
    return Algorithm(
        name=f"cxreader {contract.model_name}",
        version=contract.cxreader_version or "unknown",
        checkpoint_sha256=backend.sha256,
        synthetic=bool(contract.synthetic),
    )


@dataclass(frozen=True)
class WrittenObject:
    """One object built for one stored result."""

    image_id: int
    kind: str
    dataset: Dataset
    path: Path | None


@dataclass
class DicomOutputs:
    """A :class:`~cxreader.screening.engine.ResultSink` that writes every stored DICOM result as DICOM objects
    (module docstring), records them, and sends them on.

    Attributes:
        algorithm: The model, as the objects identify it (:func:`algorithm_of`).
        out_dir: Folder the objects are written to (``<StudyInstanceUID>/<kind>_<SOPInstanceUID>.dcm``), or
            ``None`` to only send them.
        senders: Where to send them once stored (C-STORE peers, STOW-RS servers).
        written, sent, send_failures, skipped: Counts of objects (and of images without objects).
    """

    algorithm: Algorithm
    out_dir: Path | None = None
    senders: Sequence[Sender] = ()
    needs_display: bool = True
    written: int = 0
    sent: int = 0
    send_failures: int = 0
    skipped: int = 0
    _outbox: list[WrittenObject] = field(default_factory=list, repr=False)

    def stage(self, session: Session, stored: Sequence[StoredImage]) -> None:
        """Build and write the objects of a batch's DICOM images, and record them in its transaction."""
        objects: list[WrittenObject] = []
        for item in stored:
            if item.prepared.image.format != "dicom":
                continue
            try:
                objects.extend(self._objects_of(item))
            except Exception as exc:  # one image's header or a writer's error must not end a run
                self.skipped += 1
                logger.warning(
                    "%s: no DICOM results written: %s", printable_path(item.source), exception_line(exc)
                )
        record_dicom_objects(
            session=session,
            objects=[
                DicomObjectRecord(
                    image_id=item.image_id,
                    kind=item.kind,
                    sop_class_uid=str(item.dataset.SOPClassUID),
                    sop_instance_uid=str(item.dataset.SOPInstanceUID),
                    series_instance_uid=str(item.dataset.SeriesInstanceUID),
                    path=str(item.path) if item.path is not None else None,
                )
                for item in objects
            ],
        )
        self._outbox.extend(objects)

    def committed(self, stored: Sequence[StoredImage]) -> None:
        """Send the objects of the committed batch to every destination."""
        outbox, self._outbox = self._outbox, []
        if not outbox:
            return
        datasets = [item.dataset for item in outbox]
        for sender in self.senders:
            try:
                sender.send(datasets)
            except SendError as exc:
                self.send_failures += len(datasets)
                kept = f"; kept in {printable_path(self.out_dir)}" if self.out_dir is not None else ""
                logger.warning("%d DICOM objects not sent: %s%s", len(datasets), exc, kept)
            else:
                self.sent += len(datasets)

    def _objects_of(self, item: StoredImage) -> list[WrittenObject]:
        source = pydicom.dcmread(item.source, stop_before_pixels=True, force=True)
        built = build_objects(source, item, self.algorithm)
        written = []
        for kind, dataset in built:
            path = self._write(dataset, kind) if self.out_dir is not None else None
            written.append(WrittenObject(item.image_id, kind, dataset, path))
        self.written += len(written)
        return written

    def _write(self, dataset: Dataset, kind: str) -> Path:
        assert self.out_dir is not None
        folder = self.out_dir / str(dataset.StudyInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{kind}_{dataset.SOPInstanceUID}.dcm"
        write_whole(dataset, path)
        return path


def build_objects(source: Dataset, item: StoredImage, algorithm: Algorithm) -> list[tuple[str, Dataset]]:
    """The report, the overlay and (on the triage list) the key object selection of one stored result."""
    study_uid = str(source.StudyInstanceUID)
    instance_uid = str(source.SOPInstanceUID)
    sha = algorithm.checkpoint_sha256
    instance_number = int(getattr(source, "InstanceNumber", None) or 1)

    def uids(kind: str, key: str) -> dict[str, object]:
        return {
            "series_instance_uid": result_series_uid(study_uid, sha, kind),
            "sop_instance_uid": result_instance_uid(key, sha, kind),
            "series_number": SERIES_NUMBERS[kind],
        }

    result = item.result
    objects: list[tuple[str, Dataset]] = [
        (
            "sr",
            measurement_report(
                source,
                result,
                algorithm=algorithm,
                instance_number=instance_number,
                **uids("sr", instance_uid),
            ),
        )
    ]
    display = item.prepared.display
    if display is not None:
        explanation = item.reading.explanation if item.reading is not None else None
        maps: dict[str, np.ndarray] = dict(explanation.maps) if explanation is not None else {}
        objects.append(
            (
                "overlay",
                overlay_capture(
                    source,
                    result,
                    display=display,
                    maps=maps,
                    algorithm=algorithm,
                    instance_number=instance_number,
                    **uids("overlay", instance_uid),
                ),
            )
        )
    entry = make_entry(
        source_path=result.source_path, positives=[f for f in result.findings if f.above_threshold]
    )
    if entry is not None:
        leading = entry.leading
        description = (
            f"cxreader triage: {display_name(leading.finding)} {leading.probability:.2f} "
            f"({urgency_tier(leading.finding)})"
        )
        objects.append(
            (
                "kos",
                triage_selection(
                    [source], algorithm=algorithm, description=description, **uids("kos", instance_uid)
                ),
            )
        )
    return objects


def write_whole(dataset: Dataset, path: Path) -> None:
    """Write a DICOM file (Part 10, with its file meta information) whole: a reader never sees half a file."""
    with atomic_write(path) as stream:
        dataset.save_as(stream, enforce_file_format=True)
