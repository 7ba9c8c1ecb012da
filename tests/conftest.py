"""Shared fixtures: the optional real data in ../shared/data and small generated inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def make_tiny_nih(
    root: Path, *, patients: int = 40, per_patient: int = 2, size: int = 48, seed: int = 0
) -> Path:
    """Write Data_Entry_2017_v2020.csv + images/ with a bright square marking 'Effusion' in ~40% of images."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for patient in range(1, patients + 1):
        for follow_up in range(per_patient):
            name = f"{patient:08d}_{follow_up:03d}.png"
            image = (rng.random((size, size)) * 80).astype(np.uint8)
            label = "No Finding"
            if rng.random() < 0.4:
                image[size // 2 :, : size // 3] = 220
                label = "Effusion"
            Image.fromarray(image).save(root / "images" / name)
            rows.append(f"{name},{label},{follow_up},{patient},50,M,PA,{size},{size},0.5,0.5")
    (root / "Data_Entry_2017_v2020.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def tiny_nih(tmp_path) -> Path:
    return make_tiny_nih(tmp_path / "nih")
