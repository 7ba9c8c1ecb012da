"""Every object cxreader writes passes dicom3tools' ``dciodvfy`` IOD validator without an error.

``dciodvfy`` checks an object against the IOD of its SOP class (PS3.3: A.35.13 Comprehensive 3D SR, A.8.1
Secondary Capture, A.35.4 Key Object Selection) and writes ``Error - ...`` / ``Warning - ...`` lines to stderr.
Warnings are allowed (private codes of 99CXREADER are "unrecognized defined terms" to it); errors are not.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset
from tests.dicom.test_capture import capture_of
from tests.dicom.test_report import (
    POSITIVES,
    read_result,
    refused_result,
    report_of,
    source_header,
)
from tests.dicom.test_selection import selection_of

#: What each case writes from a source header.
OBJECTS: dict[str, Callable[[Dataset], Dataset]] = {
    "sr-with-boxes": lambda source: report_of(source, read_result(source)),
    "sr-refused": lambda source: report_of(source, refused_result(source)),
    "sr-without-boxes": lambda source: report_of(
        source,
        read_result(
            source,
            positives={name: (p, None, d) for name, (p, _, d) in POSITIVES.items()},
            with_descriptions=False,
        ),
    ),
    "sr-below-threshold": lambda source: report_of(source, read_result(source, positives={})),
    "overlay": lambda source: capture_of(source, read_result(source)),
    "overlay-refused": lambda source: capture_of(source, refused_result(source)),
    "kos": lambda source: selection_of([source]),
}


@pytest.fixture(scope="module")
def dciodvfy_path() -> str:
    path = shutil.which("dciodvfy")
    if path is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    return path


def validate(dciodvfy_path: str, dataset: Dataset, path: Path) -> tuple[list[str], list[str], str]:
    """The error and warning lines of ``dciodvfy`` on ``dataset`` written to ``path``, and its whole output."""
    dataset.save_as(path, enforce_file_format=True)
    run = subprocess.run([dciodvfy_path, str(path)], capture_output=True, text=True, timeout=60)
    output = run.stderr + run.stdout
    lines = output.splitlines()
    return (
        [line for line in lines if line.startswith("Error")],
        [line for line in lines if line.startswith("Warning")],
        output,
    )


@pytest.mark.parametrize("complete_header", [False, True], ids=["minimal-source", "complete-source"])
@pytest.mark.parametrize("kind", list(OBJECTS))
def test_object_passes_dciodvfy(dciodvfy_path: str, tmp_path: Path, kind: str, complete_header: bool) -> None:
    source = source_header(complete=complete_header)
    errors, _, output = validate(dciodvfy_path, OBJECTS[kind](source), tmp_path / f"{kind}.dcm")

    assert not errors, output


def test_objects_of_a_complete_source_leave_only_private_code_warnings(
    dciodvfy_path: str, tmp_path: Path
) -> None:
    source = source_header(complete=True)
    for kind, build in OBJECTS.items():
        _, warnings, output = validate(dciodvfy_path, build(source), tmp_path / f"{kind}.dcm")
        unexpected = [line for line in warnings if "99CXREADER" not in line]
        assert not unexpected, f"{kind}:\n{output}"


def test_the_validator_does_report_errors(dciodvfy_path: str, tmp_path: Path) -> None:
    broken = report_of(source_header(), read_result(source_header()))
    del broken.CompletionFlag
    errors, _, output = validate(dciodvfy_path, broken, tmp_path / "broken.dcm")

    assert errors, output
