"""PACS fixtures: a real Orthanc server (REST, DICOMweb, DICOM) and the dciodvfy validator.

The Orthanc is the one named by the ``CXREADER_TEST_ORTHANC_*`` variables, which ``.ci/orthanc.sh start``
prints (``.ci/run`` starts one): without them every test that uses it is skipped. Its REST API (not part of
what cxreader talks to) serves to look at, fetch and delete what the tests stored.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pydicom
import pytest

ORTHANC_URL_ENV = "CXREADER_TEST_ORTHANC_URL"
ORTHANC_DICOMWEB_ENV = "CXREADER_TEST_ORTHANC_DICOMWEB"
ORTHANC_DICOM_ENV = "CXREADER_TEST_ORTHANC_DICOM"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST root, DICOMweb root and DICOM node (``ae_title`` at ``host``:``port``)."""

    rest_url: str
    dicomweb_url: str
    ae_title: str
    host: str
    port: int

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(method, f"{self.rest_url}{path}", timeout=TIMEOUT, **kwargs)
        response.raise_for_status()
        return response

    def system(self) -> dict[str, Any]:
        """``GET /system``: name, version, AE title and ports of the server."""
        return self._request("GET", "/system").json()

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every instance stored for ``study_uid`` (``[]`` for none), as Orthanc's expanded instance resources:
        ``ID`` (Orthanc's own), ``MainDicomTags`` (``SOPInstanceUID``, ``InstanceNumber``...), ``ParentSeries``."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
        return self._request("POST", "/tools/find", json=query).json()

    def sop_instance_uids_of_study(self, study_uid: str) -> set[str]:
        """The SOPInstanceUIDs stored for ``study_uid``."""
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in self.instances_of_study(study_uid)}

    def instance_id(self, sop_instance_uid: str) -> str | None:
        """Orthanc's identifier of the instance ``sop_instance_uid``; ``None`` when it is not stored."""
        matches = self._request("POST", "/tools/lookup", content=sop_instance_uid).json()
        return next((match["ID"] for match in matches if match["Type"] == "Instance"), None)

    def get_instance_dataset(self, sop_instance_uid: str) -> pydicom.Dataset:
        """The stored DICOM file of ``sop_instance_uid``, byte for byte as Orthanc keeps it, read by pydicom.
        Raises ``LookupError`` when no such instance is stored."""
        instance = self.instance_id(sop_instance_uid)
        if instance is None:
            raise LookupError(f"no instance {sop_instance_uid} in Orthanc")
        return pydicom.dcmread(io.BytesIO(self._request("GET", f"/instances/{instance}/file").content))

    def delete_study(self, study_uid: str) -> None:
        """Delete the study ``study_uid`` (nothing when it is not stored)."""
        query = {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}
        for study in self._request("POST", "/tools/find", json=query).json():
            self._request("DELETE", f"/studies/{study}")

    def delete_all(self) -> None:
        """Delete every patient, hence everything stored."""
        for patient in self._request("GET", "/patients").json():
            self._request("DELETE", f"/patients/{patient}")


def _dicom_node(value: str) -> tuple[str, str, int]:
    """``AE@host:port`` -> (AE title, host, port)."""
    ae_title, sep, address = value.partition("@")
    host, colon, port = address.rpartition(":")
    if not (sep and colon and ae_title and host and port.isdigit()):
        raise ValueError(f"{ORTHANC_DICOM_ENV}={value!r} is not AE@host:port")
    return ae_title, host, int(port)


@pytest.fixture(scope="session")
def orthanc() -> Orthanc:
    """The Orthanc of ``CXREADER_TEST_ORTHANC_*``; the test is skipped when none is configured."""
    rest_url = os.environ.get(ORTHANC_URL_ENV, "").rstrip("/")
    if not rest_url:
        pytest.skip(f"no Orthanc configured ({ORTHANC_URL_ENV}); .ci/run starts one")
    try:
        system = httpx.get(f"{rest_url}/system", timeout=TIMEOUT).raise_for_status().json()
    except httpx.HTTPError as error:
        pytest.fail(f"{ORTHANC_URL_ENV}={rest_url} is set but Orthanc does not answer there: {error}")
    dicomweb_url = os.environ.get(ORTHANC_DICOMWEB_ENV, "").rstrip("/") or f"{rest_url}/dicom-web"
    node = os.environ.get(ORTHANC_DICOM_ENV)
    if node:
        ae_title, host, port = _dicom_node(node)
    else:  # The server's own AE title and port, on the REST API's host.
        ae_title, host, port = system["DicomAet"], httpx.URL(rest_url).host, int(system["DicomPort"])
    return Orthanc(rest_url=rest_url, dicomweb_url=dicomweb_url, ae_title=ae_title, host=host, port=port)


@pytest.fixture
def empty_orthanc(orthanc: Orthanc) -> Iterator[Orthanc]:
    """:func:`orthanc`, emptied before the test (and after it, so nothing lingers)."""
    orthanc.delete_all()
    yield orthanc
    orthanc.delete_all()


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    """The path of dicom3tools' ``dciodvfy``; the test is skipped when it is not installed. It writes its
    findings to stderr, one a line (``Error - ...``, ``Warning - ...``): read those, not its exit status."""
    path = shutil.which("dciodvfy")
    if path is None:
        pytest.skip(
            "dciodvfy is not installed (apt-get install dicom3tools; .ci/orthanc.sh start installs it)"
        )
    return path
