"""Pulling chest radiographs from a PACS over DICOMweb and screening them (PS3.18: QIDO-RS, WADO-RS, STOW-RS).

:func:`pull` asks the server for the series of the wanted modalities (QIDO-RS, optionally since a study date),
lists their instances, leaves out those whose result is stored for the checkpoint already (by SOP Instance UID,
before anything is downloaded), retrieves the others (WADO-RS) into a spool folder, and screens them in batches
through the same engine as ``cxreader screen``. With a :class:`~cxreader.dicom.outputs.DicomOutputs` sink whose
senders include a :class:`~cxreader.dicom.senders.StowSender` to the same server, the results go back into each
image's study (STOW-RS). An instance that cannot be retrieved is one warning line and a failure record; the run
goes on. Log lines carry counts and reasons, never a patient identifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO

from cxreader.dicom.node import RADIOGRAPH_SOP_CLASSES, screen_instances
from cxreader.errors import ConfigError, exception_line
from cxreader.files import sha256_bytes, write_bytes_atomic
from cxreader.inference.backends import ModelBackend
from cxreader.screening.engine import ResultSink, ScreeningReport, merge_reports, register_backend
from cxreader.storage.db import Database, begin_write
from cxreader.storage.dicom_objects import stored_instances
from cxreader.storage.write import record_failure

logger = logging.getLogger(__name__)

#: DICOM JSON tags (PS3.18 F.2) of what the queries read.
_STUDY_UID, _SERIES_UID, _SOP_UID, _SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"


@dataclass(frozen=True)
class RemoteInstance:
    """One instance the server listed."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None


@dataclass
class PullReport:
    """What a pull did: instances listed, already stored, retrieved, failed to retrieve, and the screening."""

    listed: int = 0
    already_stored: int = 0
    retrieved: int = 0
    retrieve_failed: int = 0
    not_radiographs: int = 0
    screening: ScreeningReport = field(default_factory=ScreeningReport)

    def summary(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "already_stored": self.already_stored,
            "retrieved": self.retrieved,
            "retrieve_failed": self.retrieve_failed,
            "not_radiographs": self.not_radiographs,
            **{f"screen_{key}": value for key, value in self.screening.summary().items()},
        }


def study_date_range(since: date | None) -> str | None:
    """The QIDO-RS StudyDate range ``YYYYMMDD-`` (PS3.4 C.2.2.2.5) for "since this date"."""
    return f"{since:%Y%m%d}-" if since is not None else None


def list_instances(
    client: Any, *, modalities: Sequence[str], since: date | None = None
) -> Iterator[RemoteInstance]:
    """The instances of the series of these modalities (and study dates), as the server lists them."""
    seen: set[str] = set()
    for modality in modalities:
        filters = {"Modality": modality}
        date_range = study_date_range(since)
        if date_range is not None:
            filters["StudyDate"] = date_range
        for series in client.search_for_series(search_filters=filters, get_remaining=True):
            study_uid, series_uid = _value(series, _STUDY_UID), _value(series, _SERIES_UID)
            if study_uid is None or series_uid is None or series_uid in seen:
                continue
            seen.add(series_uid)
            for instance in client.search_for_instances(study_uid, series_uid, get_remaining=True):
                sop_uid = _value(instance, _SOP_UID)
                if sop_uid is not None:
                    yield RemoteInstance(study_uid, series_uid, sop_uid, _value(instance, _SOP_CLASS))


def pull(
    *,
    client: Any,
    backend: ModelBackend,
    database: Database,
    spool: Path,
    modalities: Sequence[str] = ("CR", "DX"),
    since: date | None = None,
    sink: ResultSink | None = None,
    batch_size: int = 16,
    describe: bool | None = None,
    source: str = "dicomweb",
    on_batch: Callable[[ScreeningReport], None] | None = None,
) -> PullReport:
    """Query, retrieve and screen the server's radiographs not yet stored for this model (module docstring).

    Args:
        client: A ``dicomweb_client.api.DICOMwebClient`` (or anything with its search and retrieve methods).
        backend: The model.
        database: The records database.
        spool: Folder the retrieved instances are kept in (``<SHA-256>.dcm``): the records point at them.
        modalities: Modalities of the series to read (CR and DX by default).
        since: Only studies on or after this date.
        sink: Where stored results also go (DICOM objects written and sent back).
        batch_size: Instances retrieved and screened per batch.
        describe: Heatmap descriptions (boxes in the report); default: for PyTorch checkpoints.
        source: How the server is named in failure records (its URL).
        on_batch: Called with each batch's screening report.
    """
    if not modalities:
        raise ConfigError("name at least one modality, e.g. --modality CR,DX")
    spool.mkdir(parents=True, exist_ok=True)
    with database.session() as session:
        checkpoint_id = register_backend(session, backend)
        session.commit()
    run = _Pull(client, backend, database, checkpoint_id, spool, sink, batch_size, describe, source, on_batch)
    pending: list[RemoteInstance] = []
    for instance in list_instances(client, modalities=modalities, since=since):
        run.report.listed += 1
        if instance.sop_class_uid is not None and instance.sop_class_uid not in RADIOGRAPH_SOP_CLASSES:
            run.report.not_radiographs += 1  # e.g. a secondary capture filed under a CR series
            continue
        pending.append(instance)
        if len(pending) >= batch_size:
            run.batch(pending)
            pending = []
    if pending:
        run.batch(pending)
    return run.report


@dataclass
class _Pull:
    client: Any
    backend: ModelBackend
    database: Database
    checkpoint_id: int
    spool: Path
    sink: ResultSink | None
    batch_size: int
    describe: bool | None
    source: str
    on_batch: Callable[[ScreeningReport], None] | None
    report: PullReport = field(default_factory=PullReport)

    def batch(self, instances: list[RemoteInstance]) -> None:
        """Retrieve the instances not stored yet, then screen them."""
        with self.database.session() as session:
            stored = stored_instances(
                session=session,
                checkpoint_id=self.checkpoint_id,
                sop_instance_uids=[item.sop_instance_uid for item in instances],
            )
        paths = [self._retrieve(item) for item in instances if item.sop_instance_uid not in stored]
        self.report.already_stored += sum(item.sop_instance_uid in stored for item in instances)
        kept = [path for path in paths if path is not None]
        if not kept:
            return
        screened = screen_instances(
            kept, self.backend, self.database, self.sink, batch_size=self.batch_size, describe=self.describe
        )
        self.report.screening = merge_reports([self.report.screening, screened])
        self.report.screening.ranks = 1
        if self.on_batch is not None:
            self.on_batch(screened)

    def _retrieve(self, instance: RemoteInstance) -> Path | None:
        try:
            dataset = self.client.retrieve_instance(
                instance.study_instance_uid, instance.series_instance_uid, instance.sop_instance_uid
            )
            path = _keep(dataset, self.spool)
        except Exception as exc:  # one instance the server cannot give must not end the pull
            self.report.retrieve_failed += 1
            reason = f"WADO-RS retrieve failed: {exception_line(exc)}"
            logger.warning("an instance could not be retrieved: %s", reason)
            _record_retrieve_failure(self.database, instance, reason, self.source)
            return None
        self.report.retrieved += 1
        return path


def _keep(dataset: Dataset, spool: Path) -> Path:
    """Write a retrieved instance as a Part 10 file named by its content's SHA-256."""
    if not hasattr(dataset, "file_meta") or "TransferSyntaxUID" not in dataset.file_meta:
        raise ValueError("the server sent an instance without its transfer syntax")
    buffer = DicomBytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    data = buffer.getvalue()
    path = spool / f"{sha256_bytes(data)}.dcm"
    if not path.exists():
        write_bytes_atomic(path, data)
    return path


def _record_retrieve_failure(database: Database, instance: RemoteInstance, reason: str, source: str) -> None:
    where = (
        f"{source}/studies/{instance.study_instance_uid}/series/{instance.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}"
    )
    with database.session() as session:
        begin_write(session)
        record_failure(
            session=session,
            source_path=where,
            content_sha256=sha256_bytes(b"unretrievable:" + where.encode()),
            reason=reason,
        )


def _value(item: dict[str, Any], tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None
