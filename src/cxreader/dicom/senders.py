"""Sending DICOM objects to a PACS: by C-STORE (DIMSE, pynetdicom) or by STOW-RS (DICOMweb, dicomweb-client).

Both take the objects cxreader wrote for a batch of results and raise :class:`SendError` with one line that says
where and why a transfer failed (never a patient identifier).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from cxreader.errors import ConfigError, CXReaderError, one_line

#: This node's default Application Entity title.
DEFAULT_AE_TITLE = "CXREADER"
_DESTINATION = re.compile(r"^(?P<ae>[^@\s\\]{1,16})@(?P<host>[^:@\s]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


class SendError(CXReaderError):
    """A transfer to a PACS failed (the message says where and why, in one line)."""


class Sender(Protocol):
    """Where results go: :class:`CStoreSender` or :class:`StowSender`."""

    def send(self, datasets: Sequence[Dataset]) -> None: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Destination:
    """A DICOM peer as ``AE@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Parse ``AE@HOST:PORT`` (e.g. ``ORTHANC@pacs.example.org:4242``).

        Raises:
            ConfigError: anything else, with the expected form.
        """
        match = _DESTINATION.match(text.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConfigError(
                f"{text!r} is not a DICOM destination: expected AE@HOST:PORT, e.g. PACS@10.0.0.5:104"
            )
        return cls(match["ae"], match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class CStoreSender:
    """Sends objects to a DICOM peer by C-STORE, one association per batch (PS3.4 B, PS3.7 9.1.1).

    Attributes:
        destination: The peer.
        calling_ae_title: This node's AE title.
        timeout_s: Seconds to wait for the association and for each response.
    """

    destination: Destination
    calling_ae_title: str = DEFAULT_AE_TITLE
    timeout_s: float = 30.0

    def describe(self) -> str:
        return str(self.destination)

    def send(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            return
        ae = AE(ae_title=self.calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        for sop_class in sorted({str(item.SOPClassUID) for item in datasets}):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        where = str(self.destination)
        association = ae.associate(
            self.destination.host, self.destination.port, ae_title=self.destination.ae_title
        )
        if not association.is_established:
            raise SendError(f"{where}: the association was rejected or the peer cannot be reached")
        try:
            for dataset in datasets:
                status = association.send_c_store(dataset)
                code = getattr(status, "Status", None)
                if code is None:
                    raise SendError(f"{where}: no C-STORE response (connection lost or timed out)")
                if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success, or stored with a warning
                    raise SendError(f"{where}: C-STORE refused with status 0x{code:04X}")
        finally:
            association.release()


@dataclass(frozen=True)
class StowSender:
    """Sends objects to a DICOMweb server by STOW-RS (PS3.18 10.5).

    Attributes:
        url: The DICOMweb root (e.g. ``http://pacs:8042/dicom-web``).
    """

    url: str

    def describe(self) -> str:
        return self.url

    def send(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            return
        from dicomweb_client.api import DICOMwebClient  # deferred: imports requests and its stack

        try:
            DICOMwebClient(url=self.url).store_instances(list(datasets))
        except Exception as exc:  # requests' HTTPError, ConnectionError, or the client's own errors
            raise SendError(f"{self.url}: STOW-RS failed ({one_line(exc) or type(exc).__name__})") from exc


def echo(
    destination: Destination, *, calling_ae_title: str = DEFAULT_AE_TITLE, timeout_s: float = 10.0
) -> bool:
    """Whether the peer answers a C-ECHO (PS3.7 9.1.5): a quick check of an AE@HOST:PORT before a run."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(Verification)
    association = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not association.is_established:
        return False
    try:
        status = association.send_c_echo()
        return getattr(status, "Status", None) == 0x0000
    finally:
        association.release()
