"""The one model runner: PyTorch backend, the --backend choice, predict_batches over a loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.screening.factories import ALWAYS_POSITIVE, write_checkpoint

from cxreader.errors import ConfigError
from cxreader.inference.backends import load_backend, model_summary
from cxreader.inference.batches import predict_batches
from cxreader.inference.predict import Predictor
from cxreader.inference.runtime import forward_probabilities, resolve_device
from cxreader.labels import FINDINGS


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_one_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
