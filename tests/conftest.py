"""Shared fixtures: the optional real data in ../shared/data and small generated inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    candidates = [os.environ.get("CXREADER_SHARED_DATA"), REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real NIH/OpenI/DICOM files); the test is skipped when it is absent."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (real-data test)")
    return path
