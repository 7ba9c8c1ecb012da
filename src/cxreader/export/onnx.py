"""Export a checkpoint to ONNX, optionally quantized to int8, with its contract in the ONNX metadata.

The file format (input and output names, metadata keys) lives in :mod:`cxreader.inference.onnx_runtime`; the
exporter writes that format and runs the written file with its runner (ONNX Runtime on CPU),
:class:`~cxreader.inference.backends.OnnxBackend`, to check it against PyTorch.

Export uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it needs only the
``onnx`` package, handles the DenseNet graph in seconds, and gives a dynamic batch axis directly; the newer
``torch.export``-based exporter would add ``onnxscript`` as a dependency for no gain on this model.

Quantization (ONNX Runtime's ``onnxruntime.quantization``; Jacob et al., "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018):

* ``int8`` = static quantization: weights int8 per output channel, activations uint8 with ranges measured
  by running calibration images through the model (QDQ format, which ONNX Runtime fuses into integer
  kernels; VNNI instructions make uint8 x int8 products fast on recent x86 CPUs). Calibration images must
  be real radiographs of the kind the model will see. The linear head stays in float32: it is cheap, and
  it keeps the logits free of an extra rounding step. DenseNet's stand-alone batch norms are first
  rewritten as the depthwise 1x1 convolutions they equal (:func:`batch_norms_to_depthwise_convs`), so the
  whole network stays in integer kernels.
* ``int8-dynamic`` = dynamic quantization: int8 weights, activation ranges computed at run time. It needs no
  calibration, but ONNX Runtime runs dynamically quantized convolutions through ``ConvInteger``, which was
  slower than float32 for DenseNet-121 on the CPUs measured (see ``benchmarks/cpu_inference.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxreader.errors import ConfigError, DataError
from cxreader.files import atomic_write, sha256_file
from cxreader.inference.calibration import contract_calibration
from cxreader.inference.onnx_runtime import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_NAME,
    META_CONTRACT,
    META_FORMAT,
    META_QUANTIZATION,
    META_SOURCE,
    META_VERSION,
    OUTPUT_NAME,
)

logger = logging.getLogger(__name__)

OPSET = 17
QUANTIZATION_CHOICES = ("none", "int8", "int8-dynamic")
#: Calibration method name -> ``onnxruntime.quantization.CalibrationMethod`` member.
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


@dataclass
class ExportSummary:
    """What :func:`export_onnx` wrote and how closely it agrees with the PyTorch model."""

    path: Path
    quantization: str
    calibration_images: int
    max_abs_prob_diff: float
    check_images: int
    seconds: float
    size_bytes: int


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    *,
    quantize: str = "none",
    calibration: str | Path | Sequence[str | Path] | None = None,
    calibration_images: int = 64,
    calibration_method: str = "percentile",
    check_images: int = 4,
) -> ExportSummary:
    """Export a cxreader checkpoint to ONNX with its contract in the metadata, optionally quantized.

    Args:
        checkpoint: A cxreader checkpoint (``RUN/best.pt``).
        out: The ``.onnx`` file to write (atomically).
        quantize: ``none``, ``int8`` (static, needs ``calibration``) or ``int8-dynamic``.
        calibration: A folder of images (or a list of image files) for static int8 calibration.
        calibration_images: At most this many calibration images (the first ones by file name).
        calibration_method: How activation ranges are chosen from the calibration outputs: ``percentile``
            (default: 99.999th percentile of absolute values, which kept per-image probabilities closest to
            float32 in ``benchmarks/cpu_inference.py``), ``minmax`` (the full observed range) or
            ``entropy`` (the range minimising the KL divergence of the quantized histogram; Migacz, "8-bit
            Inference with TensorRT", GTC 2017).
        check_images: Random inputs on which the exported model is compared with PyTorch (0 = skip).

    Returns:
        An :class:`ExportSummary`, with the largest absolute probability difference to PyTorch on the check
        inputs (calibration images when given, otherwise random normalised noise).

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
        ConfigError: an unknown ``quantize`` value, ``int8`` without calibration images.
        DataError / ImageReadError: calibration images that cannot be found or read.
    """
    import torch

    from cxreader.data.cache import list_image_files
    from cxreader.inference.backends import OnnxBackend
    from cxreader.models.checkpoint import load_checkpoint

    if quantize not in QUANTIZATION_CHOICES:
        raise ConfigError(f"quantize={quantize!r}; expected one of {', '.join(QUANTIZATION_CHOICES)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"calibration_method={calibration_method!r}; expected one of {', '.join(CALIBRATION_METHODS)}"
        )
    if quantize == "int8" and calibration is None:
        raise ConfigError(
            "static int8 quantization needs calibration images: pass --calibration DIR (real radiographs of "
            "the kind the model will read), or use --quantize int8-dynamic"
        )
    started = time.perf_counter()
    out = Path(out)
    loaded = load_checkpoint(checkpoint, device="cpu")
    model = loaded.model.eval()
    contract = loaded.contract
    calibration_paths = []
    if calibration is not None:
        calibration_paths = list_image_files(calibration)[: max(1, calibration_images)]
        if not calibration_paths:
            raise DataError(str(calibration), "no calibration images")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cxreader-export-", dir=out.parent) as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        example = torch.zeros(1, 3, contract.input_size, contract.input_size)
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of the dynamo one (see the module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                str(fp32_path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        final_path = fp32_path
        label = "none"
        if quantize != "none":
            final_path = Path(tmp) / "model.int8.onnx"
            label = _quantize(
                fp32_path, final_path, quantize, contract, calibration_paths, calibration_method, Path(tmp)
            )
        # The ONNX graph gives no pooled features, so its gate has the rules only: the detector stays behind.
        # The calibration and the operating point travel with it: OnnxBackend applies the calibration.
        _write_metadata(final_path, {**contract.to_dict(), "ood": None}, label, sha256_file(checkpoint))
        with atomic_write(out) as handle, open(final_path, "rb") as data:
            shutil.copyfileobj(data, handle)

    check = _check_batch(contract, calibration_paths, check_images)
    max_diff = float("nan")
    if len(check):
        with torch.no_grad():
            expected = torch.sigmoid(model(torch.from_numpy(check))).numpy()
        calibration = contract_calibration(contract, source=str(checkpoint))
        if calibration is not None:  # both backends report calibrated probabilities
            expected = calibration.apply(expected)
        max_diff = float(np.abs(OnnxBackend(out).predict(check) - expected).max())
    return ExportSummary(
        path=out,
        quantization=label,
        calibration_images=len(calibration_paths),
        max_abs_prob_diff=max_diff,
        check_images=len(check),
        seconds=time.perf_counter() - started,
        size_bytes=out.stat().st_size,
    )


def calibration_batches(paths: Sequence[str | Path], contract: Any) -> Iterator[np.ndarray]:
    """Each calibration image as the normalised ``(1, 3, S, S)`` float32 batch evaluation feeds the model.

    Images are decoded at the evaluation load size (``load_size_for``) and go through the contract's
    evaluation transform, as in ``cxreader evaluate``.
    """
    from cxreader.data.io import read_image_uint8
    from cxreader.data.transforms import load_size_for

    preset = contract.eval_preset()
    load_size = load_size_for(contract.input_size)
    for path in paths:
        pixels = read_image_uint8(path, size=load_size)
        yield preset(pixels).unsqueeze(0).numpy().astype(np.float32)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantization tools log per-tensor notes on the root logger and print progress notes on
    stdout; keep both out of the CLI's output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


@_quiet_quantizer()
def _quantize(
    source: Path,
    target: Path,
    mode: str,
    contract: Any,
    calibration_paths: list[Path],
    calibration_method: str,
    tmp: Path,
) -> str:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Shape inference and graph optimisation (batch-norm folding) before quantizing, as ONNX Runtime advises.
    prepared = tmp / "model.pre.onnx"
    quant_pre_process(str(source), str(prepared))
    graph = onnx.load(str(prepared))
    head = [node.name for node in graph.graph.node if node.op_type == "Gemm"]
    if mode == "int8-dynamic":
        quantize_dynamic(
            str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=head
        )
        return "int8-dynamic"
    batch_norms_to_depthwise_convs(graph)
    onnx.save(graph, str(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration_batches(calibration_paths, contract)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=head,
        calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[calibration_method]),
        calibration_providers=["CPUExecutionProvider"],
    )
    return f"int8-static ({len(calibration_paths)} calibration images, {calibration_method})"


def batch_norms_to_depthwise_convs(model: Any) -> int:
    """Rewrite each stand-alone ``BatchNormalization`` as the 1x1 depthwise ``Conv`` it equals, in place.

    DenseNet is pre-activation (Huang et al. 2017: BN-ReLU-Conv), so its batch norms follow a concatenation,
    not a convolution, and no folding removes them. ONNX Runtime has no integer batch norm: left as is, every
    one of them dequantizes to float32, transposes out of and back into the channels-last layout of the
    integer kernels, and quantizes again (more than half the int8 run time of DenseNet-121, measured with
    ONNX Runtime's profiler). As a depthwise convolution with weight ``gamma / sqrt(var + eps)`` and bias
    ``beta - mean * weight`` (the same affine map, so float32 outputs are unchanged), it is quantized like
    every other convolution and its ReLU is fused into it.

    Returns:
        The number of nodes rewritten (batch norms whose parameters are not constants are left alone).
    """
    from onnx import helper, numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:  # the exporter shares equal tensors through Identity nodes
        if node.op_type == "Identity" and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]
    nodes = []
    rewritten = 0
    for node in model.graph.node:
        params = list(node.input[1:5])
        if (
            node.op_type != "BatchNormalization"
            or len(params) != 4
            or not all(p in constants for p in params)
        ):
            nodes.append(node)
            continue
        epsilon = next((attr.f for attr in node.attribute if attr.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(constants[p]).astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + epsilon)
        channels = scale.shape[0]
        weight_name, bias_name = f"{node.name}.depthwise_weight", f"{node.name}.depthwise_bias"
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(scale.reshape(channels, 1, 1, 1).astype(np.float32), weight_name),
                numpy_helper.from_array((beta - mean * scale).astype(np.float32), bias_name),
            ]
        )
        nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], weight_name, bias_name],
                [node.output[0]],
                name=f"{node.name}_as_depthwise_conv",
                group=channels,
                kernel_shape=[1, 1],
            )
        )
        rewritten += 1
    used = {name for node in nodes for name in node.input} | {output.name for output in model.graph.output}
    nodes = [node for node in nodes if node.op_type != "Identity" or node.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return rewritten


def _write_metadata(path: Path, contract: dict[str, Any], quantization: str, source_sha256: str) -> None:
    import onnx

    model = onnx.load(str(path))
    values = {
        META_FORMAT: FORMAT,
        META_VERSION: str(FORMAT_VERSION),
        META_CONTRACT: json.dumps(contract, sort_keys=True),
        META_QUANTIZATION: quantization,
        META_SOURCE: source_sha256,
    }
    # set_model_props replaces every entry: keep the ones ONNX Runtime's tools wrote (onnx.quant.pre_process ...)
    kept = {prop.key: prop.value for prop in model.metadata_props}
    onnx.helper.set_model_props(model, {**kept, **values})
    model.producer_name = "cxreader"
    onnx.save(model, str(path))


def _check_batch(contract: Any, calibration_paths: list[Path], count: int) -> np.ndarray:
    size = contract.input_size
    if count <= 0:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    if calibration_paths:
        batches = calibration_batches(calibration_paths[-count:], contract)
        return np.concatenate(list(batches))
    # No images at hand: normalised noise still exercises every weight of the graph.
    return np.random.default_rng(0).standard_normal((count, 3, size, size)).astype(np.float32)
