"""A DICOM node: a C-STORE SCP (pynetdicom) that screens every chest radiograph it receives.

Modalities and PACS send studies to it as to any storage node (PS3.4 Annex B). Each received instance of a CR
or DX storage SOP class is written whole to the spool folder (``received/<SHA-256>.dcm``) before success is
answered, so an instance acknowledged is never lost: a marker in ``pending/`` stays until the instance's result
is stored, and a restarted node screens what it finds pending. A screening thread takes the received instances
in batches through the same engine as ``cxreader screen`` (records, the input gate, triage) with a
:class:`~cxreader.dicom.outputs.DicomOutputs` sink, which writes the results as DICOM and sends them on.

Instances of other SOP classes (CT, MR, a secondary capture, ...) are answered with the failure status
``0x0122`` (SOP class not supported, PS3.7 C.4.2.1.4 and Annex C) and recorded as failed with the reason. A
malformed or aborted association ends only itself. :meth:`DicomNode.stop` (the command line calls it on SIGTERM
and SIGINT) stops accepting associations, waits for those in flight, screens what they delivered, and returns.
Log lines name SOP classes, AE titles and counts, never a patient identifier.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)

from cxreader.dicom.senders import DEFAULT_AE_TITLE
from cxreader.errors import exception_line
from cxreader.files import sha256_bytes, write_bytes_atomic
from cxreader.inference.backends import ModelBackend
from cxreader.screening.engine import ResultSink, ScreeningReport, merge_reports, screen
from cxreader.storage.db import Database, begin_write
from cxreader.storage.write import record_failure

logger = logging.getLogger(__name__)

#: The storage SOP classes of chest radiographs this node reads.
RADIOGRAPH_SOP_CLASSES = frozenset(
    {
        str(ComputedRadiographyImageStorage),
        str(DigitalXRayImageStorageForPresentation),
        str(DigitalXRayImageStorageForProcessing),
    }
)
#: C-STORE statuses (PS3.7 C.4.2.1.4, Annex C).
STATUS_SUCCESS = 0x0000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
#: Seconds before a batch whose screening failed (e.g. the database was down) is tried again.
RETRY_AFTER_S = 10.0


@dataclass
class NodeCounts:
    """What a node has done since it started."""

    received: int = 0
    refused_sop_class: int = 0
    failed_to_store: int = 0
    associations: int = 0
    report: ScreeningReport = field(default_factory=ScreeningReport)


@dataclass
class DicomNode:
    """A C-STORE SCP that screens what it receives (module docstring).

    Attributes:
        backend: The model.
        database: The records database.
        spool: Folder for received instances (``received/``) and markers of those not yet screened
            (``pending/``).
        sink: Where stored results also go (DICOM objects written and sent), or ``None``.
        ae_title: This node's AE title (any called AE title is accepted).
        host, port: Where to listen (port 0: any free port, see :attr:`port` after :meth:`start`).
        batch_size: Images per forward pass.
        batch_wait_s: How long the screening thread waits for more instances to fill a batch.
        describe: Heatmap descriptions (boxes in the report); default: for PyTorch checkpoints.
        on_screened: Called with each batch's report (tests and the command line's progress lines).
    """

    backend: ModelBackend
    database: Database
    spool: Path
    sink: ResultSink | None = None
    ae_title: str = DEFAULT_AE_TITLE
    host: str = "0.0.0.0"
    port: int = 11112
    batch_size: int = 16
    batch_wait_s: float = 0.5
    describe: bool | None = None
    on_screened: Callable[[ScreeningReport], None] | None = None
    counts: NodeCounts = field(default_factory=NodeCounts)
    _queue: queue.Queue[Path] = field(default_factory=queue.Queue, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _server: Any = field(default=None, repr=False)
    _worker: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def received_dir(self) -> Path:
        return self.spool / "received"

    @property
    def pending_dir(self) -> Path:
        return self.spool / "pending"

    def start(self) -> None:
        """Open the port, queue the instances a previous run left pending, and start screening."""
        self.received_dir.mkdir(parents=True, exist_ok=True)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        for marker in sorted(self.pending_dir.iterdir()):
            instance = self.received_dir / f"{marker.name}.dcm"
            if instance.is_file():
                self._queue.put(instance)
            else:
                marker.unlink(missing_ok=True)
        if not self._queue.empty():
            logger.info(
                "%d received instances were not screened yet: screening them first", self._queue.qsize()
            )
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = False
        for context in AllStoragePresentationContexts:
            syntaxes = (
                ALL_TRANSFER_SYNTAXES
                if context.abstract_syntax in RADIOGRAPH_SOP_CLASSES
                else context.transfer_syntax
            )
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, lambda event: STATUS_SUCCESS),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_ABORTED, self._on_aborted),
        ]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]
        self._worker = threading.Thread(target=self._screen_loop, name="cxreader-node-screen", daemon=True)
        self._worker.start()
        logger.info("DICOM node %s listening on %s:%d", self.ae_title, self.host, self.port)

    def serve_forever(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler or another thread)."""
        while not self._stopping.is_set():
            self._stopping.wait(0.5)

    def request_stop(self) -> None:
        """Make :meth:`serve_forever` return (safe in a signal handler); :meth:`stop` then stops the node."""
        self._stopping.set()

    def stop(self, *, timeout_s: float = 60.0) -> None:
        """Stop accepting associations, let those in flight finish (up to ``timeout_s``), screen what they
        delivered, and stop."""
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()  # no new associations; the open ones go on in their threads
            deadline = time.monotonic() + timeout_s
            while server.active_associations and time.monotonic() < deadline:
                time.sleep(0.1)
            for association in server.active_associations:
                association.abort()
        self._stopping.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    # --- receiving ---------------------------------------------------------------------------------------

    def _on_accepted(self, event: Any) -> None:
        with self._lock:
            self.counts.associations += 1
        logger.debug("association from %s", event.assoc.requestor.ae_title)

    def _on_aborted(self, event: Any) -> None:
        logger.info("an association from %s was aborted", event.assoc.requestor.ae_title)

    def _on_store(self, event: Any) -> int:
        """Keep a received instance (or refuse it) and answer the C-STORE."""
        sop_class = UID(str(event.request.AffectedSOPClassUID))
        calling = event.assoc.requestor.ae_title
        try:
            data = event.encoded_dataset()
        except Exception as exc:  # a data set the peer sent malformed
            logger.warning("an instance from %s could not be decoded: %s", calling, type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        sha256 = sha256_bytes(data)
        if str(sop_class) not in RADIOGRAPH_SOP_CLASSES:
            return self._refuse(sop_class, calling, sha256, event)
        try:
            path = self._keep(data, sha256)
        except OSError as exc:
            logger.error("cannot keep a received instance: %s", exc.strerror or type(exc).__name__)
            with self._lock:
                self.counts.failed_to_store += 1
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            self.counts.received += 1
        self._queue.put(path)
        return STATUS_SUCCESS

    def _keep(self, data: bytes, sha256: str) -> Path:
        """Write the instance whole and mark it pending; both exist before success is answered."""
        path = self.received_dir / f"{sha256}.dcm"
        if not path.exists():
            write_bytes_atomic(path, data)
        (self.pending_dir / sha256).touch()
        return path

    def _refuse(self, sop_class: UID, calling: str, sha256: str, event: Any) -> int:
        name = sop_class.name if sop_class.is_valid else str(sop_class)
        reason = f"{name} is not a chest radiograph: this node reads CR and DX images only"
        instance = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "unknown")
        try:
            with self.database.session() as session:
                begin_write(session)
                record_failure(
                    session=session,
                    source_path=f"dicom://{calling}/{instance}",
                    content_sha256=sha256,
                    reason=reason,
                    commit=True,
                )
        except Exception as exc:  # the database is down: the peer still gets its answer
            logger.error("could not record a refused instance: %s", exception_line(exc))
        with self._lock:
            self.counts.refused_sop_class += 1
        logger.info("refused a %s instance from %s", name, calling)
        return STATUS_SOP_CLASS_NOT_SUPPORTED

    # --- screening ---------------------------------------------------------------------------------------

    def _next_batch(self) -> list[Path]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _screen_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            unique = list(dict.fromkeys(batch))
            try:
                report = screen_instances(
                    unique,
                    self.backend,
                    self.database,
                    self.sink,
                    batch_size=self.batch_size,
                    describe=self.describe,
                )
            except Exception as exc:  # e.g. the database is down: the instances stay pending and are retried
                logger.error(
                    "screening %d received instances failed (retried in %.0f s): %s",
                    len(unique),
                    RETRY_AFTER_S,
                    exception_line(exc),
                )
                if self._stopping.wait(RETRY_AFTER_S):
                    return  # stopping: the markers stay, the next start screens them
                for path in unique:
                    self._queue.put(path)
                continue
            for path in unique:
                (self.pending_dir / path.stem).unlink(missing_ok=True)
            with self._lock:
                self.counts.report = merge_reports([self.counts.report, report])
            if self.on_screened is not None:
                self.on_screened(report)


def screen_instances(
    paths: Sequence[Path],
    backend: ModelBackend,
    database: Database,
    sink: ResultSink | None,
    *,
    batch_size: int,
    describe: bool | None,
) -> ScreeningReport:
    """Screen DICOM instances a node received or a pull retrieved: quietly (no progress bar, no triage list),
    each result also handed to ``sink``."""
    return screen(
        paths,
        backend=backend,
        database=database,
        batch_size=batch_size,
        workers=1,
        describe=describe,
        progress=False,
        triage=False,
        sink=sink,
        preload_stored=False,  # a batch of a few instances: each claim asks whether its content is stored
    )
