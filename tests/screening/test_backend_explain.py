"""Backends and explanations: CAM from the inference pass's feature maps, ONNX Runtime, descriptions' boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.screening.factories import ALWAYS_POSITIVE, dicom_bytes, synthetic_images, write_checkpoint

from cxreader.labels import FINDINGS
from cxreader.screening.backend import load_backend, model_summary
from cxreader.screening.engine import display_rendition, prepare_image, screen
from cxreader.screening.explain import explain_batch, localization_available, map_from_png, map_to_png
from cxreader.storage import open_database

needs_localization = pytest.mark.skipif(
    not localization_available(), reason="cxreader.localization is absent"
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def backend(checkpoint):
    return load_backend(checkpoint, device="cpu")


def test_predict_features_gives_the_same_probabilities_and_leaves_the_model_in_eval(backend):
    batch = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    probabilities, features = backend.predict_features(batch)
    assert probabilities.shape == (3, 14) and features.shape[0] == 3
    np.testing.assert_array_equal(probabilities, backend.predict(batch))
    assert backend.model.training is False
    summary = model_summary(backend)
    assert summary["synthetic"] is True and summary["heatmaps"] is True
    assert summary["thresholds"][ALWAYS_POSITIVE] == 0.0 and list(summary["thresholds"]) == list(FINDINGS)


@needs_localization
def test_cam_from_the_inference_features_equals_a_fresh_cam(backend):
    from cxreader.localization.cam import heatmaps

    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    probabilities, features = backend.predict_features(batch)
    views = [
        prepare_image("x.dcm", dicom_bytes(seed=seed), transform=backend.transform, keep_display=True).view()
        for seed in (1, 2)
    ]
    reused = explain_batch(
        backend.model,
        batch,
        probabilities,
        backend.contract.thresholds,
        views,
        all_maps=True,
        features=features,
    )
    fresh = heatmaps(backend.model, batch, None, "cam")
    for index, explanation in enumerate(reused):
        assert list(explanation.maps) == list(FINDINGS)
        for k, name in enumerate(FINDINGS):
            np.testing.assert_allclose(explanation.maps[name], fresh[index, k], atol=1e-6)
    # The probabilities did not change: the real model was never switched to training mode.
    np.testing.assert_array_equal(backend.predict(batch), probabilities)


@needs_localization
def test_description_boxes_are_in_original_pixels(backend):
    from cxreader.data.io import load_image
    from cxreader.localization.describe import describe_findings, rules_for

    # A 2000 x 2400 DICOM: the description is computed on the 853 x 1024 display rendition and its box scaled
    # back; it must agree with a description computed on the full-resolution pixels.
    data = dicom_bytes(size=(2400, 2000), spacing=(0.2, 0.2), seed=5)
    prepared = prepare_image("big.dcm", data, transform=backend.transform, keep_display=True)
    assert prepared.display.shape == (1024, 853) and (prepared.width, prepared.height) == (2000, 2400)
    tensors = prepared.tensor[None]
    probabilities, features = backend.predict_features(tensors)
    [explanation] = explain_batch(
        backend.model,
        tensors,
        probabilities,
        backend.contract.thresholds,
        [prepared.view()],
        features=features,
    )
    assert list(explanation.maps) == [ALWAYS_POSITIVE]  # only positive findings are kept by default
    detail = explanation.findings[ALWAYS_POSITIVE]
    [full] = describe_findings(
        dict(zip(FINDINGS, probabilities[0].tolist(), strict=True)),
        explanation.maps,
        load_image("big.dcm", data=data),
        backend.contract.thresholds,
        rules=rules_for(backend.model),
    )
    np.testing.assert_allclose(detail.box, full.box, atol=2 * 2400 / 1024 + 1)
    assert detail.data["box"] == list(detail.box) and detail.sentence
    assert detail.data["size_cm"] == pytest.approx(full.size_cm, abs=0.2)


def test_display_rendition_keeps_the_aspect_and_caps_the_size():
    image = display_rendition(np.linspace(0, 1, 3000 * 1500, dtype=np.float32).reshape(3000, 1500))
    assert image.dtype == np.uint8 and image.shape == (1024, 512)
    small = display_rendition(np.full((40, 30), 0.5, dtype=np.float32))
    assert small.shape == (40, 30) and small[0, 0] == 128


def test_heatmap_png_round_trip():
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    np.testing.assert_allclose(map_from_png_bytes(map_to_png(values)), values, atol=0.5 / 255 + 1e-6)


def map_from_png_bytes(data: bytes) -> np.ndarray:
    import io

    return map_from_png(io.BytesIO(data))


def test_onnx_backend_screens_without_descriptions(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from cxreader.export.onnx import export_onnx

    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(checkpoint, onnx_path, check_images=0)
    backend = load_backend(onnx_path)
    assert backend.kind == "onnx" and backend.model is None
    synthetic_images(tmp_path / "data", 5)
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        report = screen([tmp_path / "data"], backend=backend, database=database, progress=False)
    finally:
        database.close()
    assert report.screened == 5 and not report.described
    assert len(report.triage) == 5  # Pneumothorax is above its threshold of 0 whatever the backend


@needs_localization
def test_foci_of_a_multifocal_nodule_are_in_original_pixels(monkeypatch):
    import cxreader.screening.explain as explain
    from cxreader.screening.explain import ImageView

    rows, cols = np.mgrid[:64, :64]
    blobs = np.maximum(
        np.exp(-((cols - 18) ** 2 + (rows - 20) ** 2) / 12.0),
        0.9 * np.exp(-((cols - 46) ** 2 + (rows - 44) ** 2) / 12.0),
    ).astype(np.float32)
    nodule = FINDINGS.index("Nodule")

    def two_nodule_maps(model, tensors, findings, method):
        maps = np.zeros((tensors.shape[0], len(FINDINGS), 64, 64), np.float32)
        maps[:, nodule] = blobs
        return maps

    monkeypatch.setattr(explain, "_heatmaps", two_nodule_maps)
    probabilities = np.full((1, len(FINDINGS)), 0.1)
    probabilities[0, nodule] = 0.9
    display = np.full((64, 64), 128, np.uint8)
    [explanation] = explain_batch(
        torch.nn.Linear(1, 1),
        torch.zeros(1, 3, 64, 64),
        probabilities,
        [0.5] * len(FINDINGS),
        [ImageView(display=display, original_size=(256, 256), pixel_spacing_mm=(0.5, 0.5))],
    )
    data = explanation.findings["Nodule"].data
    assert len(data["foci"]) == 2 and "multiple nodules (2)" in data["sentence"]
    first, second = (focus["box"] for focus in data["foci"])
    assert all(isinstance(value, int) for value in first + second)
    assert 4 * 14 <= first[0] + first[2] / 2 <= 4 * 22 and 4 * 16 <= first[1] + first[3] / 2 <= 4 * 24
    assert 4 * 42 <= second[0] + second[2] / 2 <= 4 * 50
