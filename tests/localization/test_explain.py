"""One explanation for a batch or one image: CAM from the inference features, boxes in original pixels."""

from __future__ import annotations

import importlib
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tests.screening.factories import ALWAYS_POSITIVE, dicom_bytes, write_checkpoint

from cxreader.data.io import load_image
from cxreader.errors import ConfigError
from cxreader.inference.backends import load_backend
from cxreader.labels import FINDINGS
from cxreader.localization.cam import heatmaps
from cxreader.localization.describe import describe_findings, rules_for
from cxreader.localization.explain import ImageView, explain, explain_batch
from cxreader.screening.engine import prepare_image


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return load_backend(write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt"), device="cpu")


def test_cam_from_the_inference_features_equals_a_fresh_cam(backend):
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    probabilities, features = backend.predict_features(batch)
    views = [
        prepare_image("x.dcm", dicom_bytes(seed=seed), transform=backend.transform, keep_display=True).view()
        for seed in (1, 2)
    ]
    reused = explain_batch(backend, batch, probabilities, views, findings="all", features=features)
    fresh = heatmaps(backend.model, batch, None, "cam")
    for index, explanation in enumerate(reused):
        assert list(explanation.maps) == list(FINDINGS)
        for k, name in enumerate(FINDINGS):
            np.testing.assert_allclose(explanation.maps[name], fresh[index, k], atol=1e-6)
    # The probabilities did not change: the real model was never switched to training mode.
    np.testing.assert_array_equal(backend.predict(batch), probabilities)


def test_description_boxes_are_in_original_pixels(backend):
    # A 2000 x 2400 DICOM: the description is computed on the 853 x 1024 display rendition, its box given in
    # the original's pixels; it must agree with a description computed on the full-resolution pixels.
    data = dicom_bytes(size=(2400, 2000), spacing=(0.2, 0.2), seed=5)
    prepared = prepare_image("big.dcm", data, transform=backend.transform, keep_display=True)
    assert prepared.display.shape == (1024, 853) and (prepared.width, prepared.height) == (2000, 2400)
    tensors = prepared.tensor[None]
    probabilities, features = backend.predict_features(tensors)
    [explanation] = explain_batch(backend, tensors, probabilities, [prepared.view()], features=features)
    assert list(explanation.maps) == [ALWAYS_POSITIVE]  # only positive findings are kept by default
    [description] = explanation.descriptions
    [full] = describe_findings(
        dict(zip(FINDINGS, probabilities[0].tolist(), strict=True)),
        explanation.maps,
        load_image("big.dcm", data=data),
        backend.contract.thresholds,
        rules=rules_for(backend.model),
    )
    np.testing.assert_allclose(description.box, full.box, atol=2 * 2400 / 1024 + 1)
    assert description.sentence and description.size_cm == pytest.approx(full.size_cm, abs=0.2)


def test_one_image_maps_the_requested_findings_and_describes_the_positive_ones(backend):
    image = load_image("one.dcm", data=dicom_bytes(seed=3))
    probabilities = dict.fromkeys(FINDINGS, 0.5)
    explanation = explain(backend, image, probabilities, findings=["effusion"], method="gradcam")
    assert list(explanation.maps) == ["Effusion"] and explanation.maps["Effusion"].shape == (64, 64)
    assert [item.finding for item in explanation.descriptions] == [ALWAYS_POSITIVE]
    with pytest.raises(ConfigError, match="lack"):
        explain(backend, image, {"Effusion": 0.5})


def test_a_backend_without_a_model_cannot_explain():
    onnx_like = SimpleNamespace(model=None, kind="onnx")
    with pytest.raises(ConfigError, match="PyTorch checkpoint"):
        explain_batch(onnx_like, torch.zeros(1, 3, 64, 64), np.zeros((1, 14)), [])


def test_foci_of_a_multifocal_nodule_are_in_original_pixels(monkeypatch):
    rows, cols = np.mgrid[:64, :64]
    blobs = np.maximum(
        np.exp(-((cols - 18) ** 2 + (rows - 20) ** 2) / 12.0),
        0.9 * np.exp(-((cols - 46) ** 2 + (rows - 44) ** 2) / 12.0),
    ).astype(np.float32)

    def two_nodule_maps(model, tensors, findings, method, labels):
        return np.broadcast_to(blobs, (tensors.shape[0], len(findings), 64, 64)).copy()

    # The module, not the package's ``explain`` function of the same name.
    monkeypatch.setattr(importlib.import_module("cxreader.localization.explain"), "heatmaps", two_nodule_maps)
    nodule = FINDINGS.index("Nodule")
    probabilities = np.full((1, len(FINDINGS)), 0.1)
    probabilities[0, nodule] = 0.9
    backend = SimpleNamespace(
        model=torch.nn.Linear(1, 1),
        contract=SimpleNamespace(thresholds=[0.5] * 14),
        labels=FINDINGS,
        lock=threading.Lock(),
    )
    view = ImageView(np.full((64, 64), 128, np.uint8), original_size=(256, 256), pixel_spacing_mm=(0.5, 0.5))
    [explanation] = explain_batch(backend, torch.zeros(1, 3, 64, 64), probabilities, [view])
    [description] = explanation.descriptions
    assert len(description.foci) == 2 and "multiple nodules (2)" in description.sentence
    first, second = (focus["box"] for focus in description.foci)
    assert 4 * 14 <= first[0] + first[2] / 2 <= 4 * 22 and 4 * 16 <= first[1] + first[3] / 2 <= 4 * 24
    assert 4 * 42 <= second[0] + second[2] / 2 <= 4 * 50
