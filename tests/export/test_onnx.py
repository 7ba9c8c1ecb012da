"""ONNX export: the same probabilities as PyTorch (float32 exactly, int8 within a stated tolerance), the
contract carried in the metadata, and prediction through ONNX Runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from cxreader.errors import CheckpointError, ConfigError  # noqa: E402
from cxreader.export.onnx import batch_norms_to_depthwise_convs, export_onnx  # noqa: E402
from cxreader.inference.backends import OnnxBackend  # noqa: E402
from cxreader.inference.onnx_runtime import META_CONTRACT, META_QUANTIZATION, read_onnx_contract  # noqa: E402
from cxreader.inference.predict import Predictor  # noqa: E402
from cxreader.models import create_model  # noqa: E402
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint  # noqa: E402

INPUT = 64
#: float32 ONNX Runtime vs PyTorch: the same arithmetic in another order.
FP32_TOLERANCE = 1e-4
#: static int8 vs float32 on in-distribution images, largest per-probability difference.
INT8_TOLERANCE = 0.05


def _tiny_model() -> torch.nn.Module:
    """A densenet_small whose batch-norm statistics are not the identity, so every layer matters."""
    torch.manual_seed(0)
    model = create_model("densenet_small")
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(channels, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
    return model.eval()


def _images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        y, x = np.mgrid[0:80, 0:80]
        image = 120 + 60 * np.sin(x / (5 + i)) + rng.normal(0, 20, (80, 80))
        image[20 + i : 40 + i, 10:30] = 230
        path = folder / f"{i:03d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("onnx")
    model = _tiny_model()
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=INPUT,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        thresholds=tuple(np.linspace(0.1, 0.9, 14)),
        synthetic=True,
    )
    checkpoint = root / "model.pt"
    save_checkpoint(checkpoint, model=model, contract=contract)
    summary = export_onnx(checkpoint, root / "model.onnx")
    images = _images(root / "images", 12)
    return {"root": root, "model": model, "checkpoint": checkpoint, "summary": summary, "images": images}


def _pytorch_probs(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(batch))).numpy()


def test_fp32_export_matches_pytorch(exported):
    summary = exported["summary"]
    assert summary.quantization == "none" and summary.max_abs_prob_diff < FP32_TOLERANCE
    onnx_model = OnnxBackend(summary.path, threads=1)
    batch = np.random.default_rng(3).standard_normal((5, 3, INPUT, INPUT)).astype(np.float32)
    expected = _pytorch_probs(exported["model"], batch)
    assert expected.std() > 0.01  # the outputs vary: the comparison is not between two constants
    np.testing.assert_allclose(onnx_model.predict(batch), expected, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(onnx_model.predict(batch[:1]), expected[:1], atol=FP32_TOLERANCE)  # batch axis


def test_contract_survives_in_the_metadata(exported):
    contract, metadata = read_onnx_contract(exported["summary"].path)
    assert contract.model_name == "densenet_small" and contract.input_size == INPUT
    assert contract.mean == (0.5, 0.5, 0.5) and contract.std == (0.25, 0.25, 0.25)
    np.testing.assert_allclose(contract.thresholds, np.linspace(0.1, 0.9, 14))
    assert contract.synthetic is True
    assert json.loads(metadata[META_CONTRACT])["labels"][2] == "Effusion"
    assert metadata[META_QUANTIZATION] == "none"


def test_batch_norms_become_equal_depthwise_convs(exported, tmp_path):
    import onnxruntime as ort

    model = onnx.load(str(exported["summary"].path))
    batch_norms = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
    assert batch_norms > 0  # DenseNet's pre-activation norms survive the exporter's conv+BN folding
    assert batch_norms_to_depthwise_convs(model) == batch_norms
    assert not any(node.op_type == "BatchNormalization" for node in model.graph.node)
    onnx.checker.check_model(model)
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    batch = np.random.default_rng(5).standard_normal((2, 3, INPUT, INPUT)).astype(np.float32)
    before = ort.InferenceSession(str(exported["summary"].path)).run(None, {"image": batch})[0]
    after = ort.InferenceSession(str(rewritten)).run(None, {"image": batch})[0]
    np.testing.assert_allclose(after, before, atol=1e-4)


def test_static_int8_stays_within_tolerance(exported):
    root = exported["root"]
    calibration = exported["images"][:8]
    summary = export_onnx(
        exported["checkpoint"], root / "model.int8.onnx", quantize="int8", calibration=calibration
    )
    assert summary.quantization == "int8-static (8 calibration images, percentile)"
    quantized = OnnxBackend(summary.path, threads=1)
    assert quantized.quantization == summary.quantization
    assert quantized.contract.input_size == INPUT
    node_types = {node.op_type for node in onnx.load(str(summary.path)).graph.node}
    assert "QuantizeLinear" in node_types  # really quantized
    assert "BatchNormalization" not in node_types  # rewritten into integer-friendly depthwise convolutions
    preset = quantized.contract.eval_preset()
    from cxreader.data.io import read_image_uint8

    held_out = np.stack([preset(read_image_uint8(path)).numpy() for path in exported["images"][8:]])
    difference = np.abs(quantized.predict(held_out) - _pytorch_probs(exported["model"], held_out))
    assert difference.max() < INT8_TOLERANCE


def test_dynamic_int8_exports(exported):
    summary = export_onnx(exported["checkpoint"], exported["root"] / "dyn.onnx", quantize="int8-dynamic")
    assert summary.quantization == "int8-dynamic" and summary.max_abs_prob_diff < INT8_TOLERANCE


def test_static_int8_without_calibration_is_refused(exported, tmp_path):
    with pytest.raises(ConfigError, match="--calibration"):
        export_onnx(exported["checkpoint"], tmp_path / "x.onnx", quantize="int8")
    with pytest.raises(ConfigError, match="quantize='int4'"):
        export_onnx(exported["checkpoint"], tmp_path / "x.onnx", quantize="int4")
    assert not (tmp_path / "x.onnx").exists()


def test_foreign_or_broken_models_are_refused(exported, tmp_path):
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(exported["summary"].path))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(CheckpointError, match="not a cxreader export"):
        OnnxBackend(plain)
    relabelled = tmp_path / "relabelled.onnx"
    model = onnx.load(str(exported["summary"].path))
    for prop in model.metadata_props:
        if prop.key == META_CONTRACT:
            values = json.loads(prop.value)
            values["labels"] = ["Not a finding", *values["labels"][1:]]
            prop.value = json.dumps(values)
    onnx.save(model, str(relabelled))
    with pytest.raises(CheckpointError, match="are not cxreader findings"):
        OnnxBackend(relabelled)
    (tmp_path / "broken.onnx").write_bytes(exported["summary"].path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.onnx: cannot read ONNX model"):
        OnnxBackend(tmp_path / "broken.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        OnnxBackend(tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match=r"expected a \(B, 3, 64, 64\) batch"):
        OnnxBackend(exported["summary"].path).predict(np.zeros((1, 3, 32, 32), np.float32))


def test_predictor_runs_the_onnx_model_like_the_checkpoint(exported):
    files = exported["images"][:3]
    with_torch = Predictor(exported["checkpoint"], device="cpu", batch_size=2).predict_files(files)
    with_onnx = Predictor(exported["summary"].path, batch_size=2)
    assert (
        with_onnx.backend.kind == "onnx" and with_onnx.backend.model is None and with_onnx.contract.synthetic
    )
    for a, b in zip(with_torch, with_onnx.predict_files(files), strict=True):
        assert a.error is None and b.error is None
        np.testing.assert_allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=FP32_TOLERANCE
        )
        assert a.positive == b.positive
    with pytest.raises(ConfigError, match="needs an exported .onnx model"):
        Predictor(exported["checkpoint"], backend="onnx")
    with pytest.raises(ConfigError, match="not torch"):
        Predictor(exported["summary"].path, backend="torch")


def test_cli_export_and_predict(exported, tmp_path, capsys):
    from cxreader.cli import export_cmd, predict_cmd

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    export_cmd.register(subparsers)
    predict_cmd.register(subparsers)
    out = tmp_path / "cli.onnx"
    args = parser.parse_args(["export", "--checkpoint", str(exported["checkpoint"]), "--out", str(out)])
    assert args.func(args) == 0
    assert "largest probability difference to the PyTorch model" in capsys.readouterr().out
    args = parser.parse_args(["predict", "--checkpoint", str(out), "--json", str(exported["images"][0])])
    assert args.func(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["checkpoint_synthetic"] is True
    assert set(payload["results"][0]["probabilities"]) == set(read_onnx_contract(out)[0].labels)
    args = parser.parse_args(
        ["export", "--checkpoint", str(exported["checkpoint"]), "--out", str(tmp_path / "x.pt")]
    )
    with pytest.raises(ConfigError, match="must end in .onnx"):
        args.func(args)


def test_an_export_keeps_calibration_and_operating_point_and_applies_the_calibration(exported, tmp_path):
    from cxreader.inference.calibration import TEMPERATURE, Calibration, FindingCalibration
    from cxreader.inference.gate import OutOfDistribution
    from cxreader.labels import FINDINGS

    calibration = Calibration(
        FINDINGS, tuple(FindingCalibration(TEMPERATURE, temperature=2.0) for _ in FINDINGS)
    )
    rng = np.random.default_rng(4)
    detector = OutOfDistribution.fit(rng.standard_normal((40, 8)), rng.standard_normal((10, 8)))
    point = {"rule": "f1", "scale": "calibrated", "split": "validation", "findings": {}}
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=INPUT,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        calibration=calibration.to_json(),
        operating_point=point,
        ood=detector.to_state(),
    )
    checkpoint = tmp_path / "calibrated.pt"
    save_checkpoint(checkpoint, model=exported["model"], contract=contract)
    summary = export_onnx(checkpoint, tmp_path / "calibrated.onnx")
    assert summary.max_abs_prob_diff < FP32_TOLERANCE  # checked against the calibrated PyTorch outputs
    stored, _ = read_onnx_contract(summary.path)
    assert stored.calibration == calibration.to_json() and stored.operating_point == point
    assert stored.ood is None  # the graph gives no pooled features: the detector stays behind
    batch = np.random.default_rng(5).standard_normal((3, 3, INPUT, INPUT)).astype(np.float32)
    raw = _pytorch_probs(exported["model"], batch)
    predicted = OnnxBackend(summary.path, threads=1).predict(batch)
    np.testing.assert_allclose(predicted, calibration.apply(raw), atol=FP32_TOLERANCE)
    assert np.abs(predicted - raw).max() > 10 * FP32_TOLERANCE  # and the calibration did change them
