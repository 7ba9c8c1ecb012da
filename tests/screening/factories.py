"""Inputs for the screening and service tests: a tiny checkpoint, synthetic radiographs, DICOM and bad files."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxreader.labels import FINDINGS
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint
from cxreader.synthetic.dataset import generate_synthetic_dataset

#: The finding every image is positive for with :func:`write_checkpoint` (threshold 0); all others never are.
ALWAYS_POSITIVE = "Pneumothorax"
INPUT_SIZE = 64


def cli_command(*args: str) -> list[str]:
    """``cxreader ARGS`` as a subprocess command line (the real console entry point)."""
    return [sys.executable, "-m", "cxreader", *args]


def run_cli(argv: list[str]) -> int:
    """``cxreader ARGV`` in this process."""
    from cxreader.cli.__main__ import main

    return main(argv)


def write_checkpoint(
    path: Path,
    *,
    synthetic: bool = True,
    seed: int = 0,
    labels: Sequence[str] = FINDINGS,
    always_positive: str = ALWAYS_POSITIVE,
) -> Path:
    """A ``densenet_small`` checkpoint with random weights at 64 px whose thresholds make exactly one finding,
    ``always_positive`` (:data:`ALWAYS_POSITIVE` by default), positive on every image (threshold 0) and none of
    the others (threshold 1).

    ``labels`` is the model's label order (its contract's ``labels``, one output each): the 14 CheXNet findings
    by default, or any ordered subset of the harmonised label space.
    """
    torch.manual_seed(seed)
    labels = tuple(labels)
    options = {} if len(labels) == len(FINDINGS) else {"num_classes": len(labels)}
    model = create_model("densenet_small", init="none", **options)
    thresholds = tuple(0.0 if name == always_positive else 1.0 for name in labels)
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=INPUT_SIZE,
        labels=labels,
        thresholds=thresholds,
        synthetic=synthetic,
    )
    save_checkpoint(path, model=model, contract=contract)
    return path


def synthetic_images(root: Path, count: int, *, seed: int = 0) -> list[Path]:
    """``count`` synthetic radiographs (64 px PNG) in the NIH layout under ``root``; their paths, sorted."""
    generate_synthetic_dataset(root, images=count, size=64, seed=seed)
    return sorted((root / "images").glob("*.png"))


def dicom_bytes(
    *,
    modality: str = "CR",
    patient_id: str = "PAT-0001",
    study_date: date = date(2024, 3, 14),
    view: str = "PA",
    spacing: tuple[float, float] = (0.2, 0.25),
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
    study_uid: str | None = None,
) -> bytes:
    """A small uncompressed DICOM image (MONOCHROME2, 12 bits) with the header fields screening reads."""
    rows, columns = size
    rng = np.random.default_rng(seed)
    pixels = (rng.random((rows, columns)) * 4000).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.Modality = modality
    ds.ViewPosition = view
    ds.PixelSpacing = [spacing[0], spacing[1]]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def png_bytes(seed: int, size: int = 64) -> bytes:
    """A small random grayscale PNG (distinct content per seed)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_png(source: Path) -> bytes:
    """The first half of a real PNG: a valid signature and header, then nothing."""
    data = source.read_bytes()
    return data[: len(data) // 2]


def write_caption_checkpoint(out: Path, encoder: Path, images: list[Path]) -> Path:
    """A tiny learned captioner (one epoch) over ``encoder`` that knows :data:`ALWAYS_POSITIVE` and Effusion:
    ``out/caption.pt``."""
    from cxreader.captioning.pairs import CaptionPair
    from cxreader.captioning.train import CaptionTrainConfig, train_captioner
    from cxreader.vocabulary import to_token

    sequences = {
        ALWAYS_POSITIVE: (to_token(ALWAYS_POSITIVE), "pleura", "right", "upper_zone", "mild"),
        "Effusion": (to_token("Effusion"), "pleura", "left", "lower_zone", "moderate"),
    }
    pairs = [
        CaptionPair(image, finding, tokens, "val" if index % 4 == 0 else "train", "synthetic")
        for index, image in enumerate(images)
        for finding, tokens in sequences.items()
    ]
    config = CaptionTrainConfig(
        epochs=1, batch_size=8, embed_dim=8, hidden_dim=16, attention_dim=8, device="cpu"
    )
    return train_captioner(pairs, encoder, out, config=config).checkpoint


def refused_inputs(folder: Path) -> dict[str, str]:
    """Files the input gate must refuse, written into ``folder``: name -> the start of the expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    (folder / "ct.dcm").write_bytes(dicom_bytes(modality="CT", seed=11))
    (folder / "lateral.dcm").write_bytes(dicom_bytes(view="LL", seed=12))
    Image.fromarray(np.full((1, 1), 128, dtype=np.uint8)).save(folder / "tiny.png")
    # A photograph: smooth colour gradients, nothing grey about it.
    y, x = np.mgrid[0:96, 0:96] / 96.0
    photo = np.stack([x, y, 1.0 - x * y], axis=-1) * 255 + rng.normal(0, 8, (96, 96, 3))
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), mode="RGB").save(
        folder / "photo.jpg", quality=90
    )
    return {
        "ct.dcm": "modality CT",
        "lateral.dcm": "lateral view",
        "tiny.png": "image too small",
        "photo.jpg": "a colour image",
    }
