"""The one model runner: PyTorch backend, the --backend choice, predict_batches over a loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.screening.factories import ALWAYS_POSITIVE, write_checkpoint

from cxreader.errors import CheckpointError, ConfigError
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.inference.backends import load_backend, model_summary
from cxreader.inference.batches import predict_batches
from cxreader.inference.calibration import ISOTONIC, TEMPERATURE, Calibration, FindingCalibration
from cxreader.inference.gate import pooled_features
from cxreader.inference.predict import Predictor
from cxreader.inference.runtime import forward_probabilities, resolve_device
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import load_checkpoint, save_checkpoint


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
    with torch.no_grad():
        expected = torch.sigmoid(backend.model(batch)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert backend.model.training is False
    summary = model_summary(backend)
    assert summary["backend"] == "pytorch" and summary["synthetic"] is True and summary["heatmaps"] is True
    assert summary["thresholds"][ALWAYS_POSITIVE] == 0.0 and list(summary["thresholds"]) == list(FINDINGS)


def test_the_predictor_runs_on_a_backend_it_is_given(backend):
    predictor = Predictor(backend, batch_size=2)
    images = [np.full((80, 80), value, dtype=np.uint8) for value in (0, 90, 180)]
    probabilities = predictor.predict_arrays(images)
    assert predictor.backend is backend and probabilities.shape == (3, 14)
    batch = torch.stack([backend.transform(image) for image in images])
    np.testing.assert_allclose(probabilities, backend.predict(batch), atol=1e-6)


def test_backend_choices_are_checked_with_clear_messages(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="expected auto, torch or onnx"):
        load_backend(checkpoint, backend="tensorrt")
    with pytest.raises(ConfigError, match="needs an exported .onnx model"):
        load_backend(checkpoint, backend="onnx")
    with pytest.raises(ConfigError, match="not torch"):
        load_backend(tmp_path / "model.onnx", backend="torch")


def test_predict_batches_averages_ten_crops_and_restores_the_training_mode(backend):
    model = backend.model.train()
    crops = torch.randn(2, 10, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    batches = [{"image": crops, "index": torch.tensor([4, 7])}, {"errors": ["bad.png: unreadable"]}]
    try:
        output = predict_batches(model, batches, device=torch.device("cpu"))
        assert model.training is True
    finally:
        model.eval()
    per_crop, _ = forward_probabilities(model, crops.flatten(0, 1), device=torch.device("cpu"))
    np.testing.assert_allclose(output.probs, per_crop.view(2, 10, 14).mean(dim=1).numpy(), atol=1e-6)
    assert output.indices.tolist() == [4, 7] and output.errors == ["bad.png: unreadable"]
    assert output.features is None


def test_predict_batches_returns_pooled_features_on_request(backend):
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    batches = [
        {"image": images[:2], "index": torch.tensor([0, 1])},
        {"image": images[2:], "index": torch.tensor([2])},
    ]
    output = predict_batches(backend.model, batches, device=torch.device("cpu"), with_features=True)
    _, maps = forward_probabilities(backend.model, images, device=torch.device("cpu"))
    assert output.features.dtype == np.float32 and output.features.shape == (3, maps.shape[1])
    np.testing.assert_allclose(output.features, pooled_features(maps), rtol=1e-5, atol=1e-6)


def _calibration() -> Calibration:
    """Temperatures 0.5 ... 3 (sharpening and softening), and one isotonic finding."""
    per_finding = [
        FindingCalibration(TEMPERATURE, temperature=t) for t in np.linspace(0.5, 3.0, len(FINDINGS))
    ]
    per_finding[1] = FindingCalibration(ISOTONIC, knots_x=(0.0, 0.5, 1.0), knots_y=(0.0, 0.2, 1.0))
    return Calibration(FINDINGS, tuple(per_finding))


@pytest.fixture(scope="module")
def calibrated_checkpoint(checkpoint, tmp_path_factory):
    loaded = load_checkpoint(checkpoint)
    loaded.contract.calibration = _calibration().to_json()
    path = tmp_path_factory.mktemp("calibrated") / "calibrated.pt"
    save_checkpoint(path, model=loaded.model, contract=loaded.contract)
    return path


def test_a_calibrated_checkpoint_predicts_its_calibration_of_the_raw_outputs(backend, calibrated_checkpoint):
    calibrated = load_backend(calibrated_checkpoint, device="cpu")
    assert backend.calibration is None and calibrated.calibration == _calibration()
    batch = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    raw = backend.predict(batch)
    expected = _calibration().apply(raw).astype(np.float32)
    assert np.abs(expected - raw).max() > 0.01  # the calibration changes the outputs
    probabilities, features = calibrated.predict_features(batch)
    np.testing.assert_array_equal(probabilities, expected)
    np.testing.assert_array_equal(calibrated.predict(batch), expected)
    np.testing.assert_array_equal(features, backend.predict_features(batch)[1])


def test_temperature_scaling_leaves_the_auroc_of_a_tiny_model_unchanged(backend, tmp_path):
    loaded = load_checkpoint(backend.path)
    per_finding = tuple(FindingCalibration(TEMPERATURE, temperature=2.5) for _ in FINDINGS)
    loaded.contract.calibration = Calibration(FINDINGS, per_finding).to_json()
    save_checkpoint(tmp_path / "t.pt", model=loaded.model, contract=loaded.contract)
    scaled = load_backend(tmp_path / "t.pt", device="cpu")
    generator = torch.Generator().manual_seed(7)
    batch = torch.randn(48, 3, 64, 64, generator=generator)
    labels = (torch.rand(48, len(FINDINGS), generator=generator) < 0.4).double().numpy()
    raw, calibrated = backend.predict(batch), scaled.predict(batch)
    assert np.abs(calibrated - raw).max() > 1e-4
    np.testing.assert_array_equal(per_class_auroc(labels, calibrated), per_class_auroc(labels, raw))


def test_an_old_checkpoint_without_the_new_fields_loads_and_predicts_as_before(checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    for key in ("calibration", "operating_point", "ood"):
        del payload["contract"][key]  # what a checkpoint written before these fields holds
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    loaded = load_checkpoint(old)
    assert (loaded.contract.calibration, loaded.contract.operating_point, loaded.contract.ood) == (
        None,
        None,
        None,
    )
    backend = load_backend(loaded, device="cpu")
    assert backend.calibration is None and backend.gate.detector is None
    batch = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = torch.sigmoid(loaded.model(batch)).numpy()
    np.testing.assert_array_equal(backend.predict(batch), expected)


def test_a_calibration_for_other_findings_is_refused(checkpoint, tmp_path):
    loaded = load_checkpoint(checkpoint)
    per_finding = tuple(FindingCalibration(TEMPERATURE) for _ in range(3))
    loaded.contract.calibration = Calibration(("a", "b", "c"), per_finding).to_json()
    save_checkpoint(tmp_path / "bad.pt", model=loaded.model, contract=loaded.contract)
    with pytest.raises(CheckpointError, match="bad.pt: its calibration names"):
        load_backend(tmp_path / "bad.pt", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_one_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
