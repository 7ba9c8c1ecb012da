"""Export a checkpoint to ONNX, optionally quantized to int8, and run it with ONNX Runtime on CPU.

The exported graph takes exactly what the PyTorch model takes, a normalised float32 batch ``(B, 3, S, S)``
(``S`` = the contract's input size, batch size free), and returns the 14 logits; :class:`OnnxModel` applies
the sigmoid. The checkpoint's contract (labels, input size, mean and std, thresholds, synthetic flag, ...)
travels in the model's ``metadata_props`` (ONNX IR, ``ModelProto.metadata_props``), so an exported file is
used correctly without its checkpoint, and loading refuses a model whose labels differ from ``FINDINGS``.

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
import hashlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxreader.errors import CheckpointError, ConfigError, CXReaderError
from cxreader.labels import FINDINGS

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "QUANTIZATION_CHOICES",
    "ExportSummary",
    "OnnxModel",
    "batch_norms_to_depthwise_convs",
    "calibration_batches",
    "export_onnx",
    "is_onnx_file",
    "read_onnx_contract",
]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17
FORMAT = "cxreader-onnx"
FORMAT_VERSION = 1
#: ``metadata_props`` keys written by :func:`export_onnx`.
META_FORMAT = "cxreader.format"
META_VERSION = "cxreader.format_version"
META_CONTRACT = "cxreader.contract"
META_QUANTIZATION = "cxreader.quantization"
META_SOURCE = "cxreader.source_sha256"
QUANTIZATION_CHOICES = ("none", "int8", "int8-dynamic")
#: Calibration method name -> ``onnxruntime.quantization.CalibrationMethod`` member.
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX model (by its ``.onnx`` suffix)."""
    return Path(path).suffix.lower() == ".onnx"


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

    from cxreader.training.checkpoint import file_sha256, load_checkpoint

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
    size = contract.input_size
    calibration_paths = _calibration_paths(calibration, calibration_images) if calibration is not None else []

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cxreader-export-", dir=out.parent) as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        example = torch.zeros(1, 3, size, size)
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
        _write_metadata(final_path, contract.to_dict(), label, file_sha256(checkpoint))
        _replace_atomically(final_path, out)

    check = _check_batch(contract, calibration_paths, check_images)
    max_diff = float("nan")
    if len(check):
        with torch.no_grad():
            expected = torch.sigmoid(model(torch.from_numpy(check))).numpy()
        max_diff = float(np.abs(OnnxModel(out).predict(check) - expected).max())
    return ExportSummary(
        path=out,
        quantization=label,
        calibration_images=len(calibration_paths),
        max_abs_prob_diff=max_diff,
        check_images=len(check),
        seconds=time.perf_counter() - started,
        size_bytes=out.stat().st_size,
    )


def _calibration_paths(calibration: str | Path | Sequence[str | Path], limit: int) -> list[Path]:
    from cxreader.data.cache import list_image_files
    from cxreader.errors import DataError

    paths = list_image_files(calibration)[: max(1, limit)]
    if not paths:
        raise DataError(str(calibration), "no calibration images")
    return paths


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
    with _quiet_quantizer():
        quant_pre_process(str(source), str(prepared))
    graph = onnx.load(str(prepared))
    head = [node.name for node in graph.graph.node if node.op_type == "Gemm"]
    if mode == "int8-dynamic":
        with _quiet_quantizer():
            quantize_dynamic(
                str(prepared),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=head,
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

    with _quiet_quantizer():
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
    kept = [prop for prop in model.metadata_props if prop.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.producer_name = "cxreader"
    onnx.save(model, str(path))


def _replace_atomically(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle, open(source, "rb") as data:
            while chunk := data.read(1 << 20):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_batch(contract: Any, calibration_paths: list[Path], count: int) -> np.ndarray:
    size = contract.input_size
    if count <= 0:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    if calibration_paths:
        batches = calibration_batches(calibration_paths[-count:], contract)
        return np.concatenate(list(batches))
    # No images at hand: normalised noise still exercises every weight of the graph.
    return np.random.default_rng(0).standard_normal((count, 3, size, size)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# Loading and running


def read_onnx_contract(path: str | Path) -> tuple[Any, dict[str, str]]:
    """The :class:`~cxreader.training.checkpoint.CheckpointContract` stored in an exported model.

    Returns:
        ``(contract, metadata)`` where ``metadata`` holds all ``metadata_props`` as strings.

    Raises:
        CheckpointError: missing or unreadable file, not a cxreader export, or labels other than ``FINDINGS``.
    """
    import onnx

    from cxreader.training.checkpoint import CheckpointContract

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # truncated or not protobuf: one line naming the file
        raise CheckpointError(f"{path}: cannot read ONNX model ({type(exc).__name__}: {exc})") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if metadata.get(META_FORMAT) != FORMAT or META_CONTRACT not in metadata:
        raise CheckpointError(
            f"{path}: not a cxreader export (no contract in its metadata); use cxreader export"
        )
    if int(metadata.get(META_VERSION, "0")) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer cxreader (format {metadata[META_VERSION]})")
    try:
        contract = CheckpointContract.from_dict(json.loads(metadata[META_CONTRACT]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable contract in the metadata ({exc})") from None
    if tuple(contract.labels) != FINDINGS:
        raise CheckpointError(
            f"{path}: the model's labels {list(contract.labels)} differ from cxreader's findings "
            f"{list(FINDINGS)}; refusing to load it (its outputs would be read as the wrong findings)"
        )
    return contract, metadata


def default_threads() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a container's or ``taskset``'s limit)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxModel:
    """An exported cxreader model in an ONNX Runtime CPU session.

    Session settings (ONNX Runtime's performance tuning guide): all graph optimisations (constant folding,
    node fusions, layout transformation to the CPU's blocked formats), sequential execution (a CNN is a
    chain, so inter-op parallelism has nothing to run), and intra-op threads = the cores this process may
    use. Spinning threads wait actively for the next operator; on a machine shared with other processes,
    pass ``spin=False``.

    Args:
        path: A ``.onnx`` file written by :func:`export_onnx`.
        threads: Intra-op threads (default: :func:`default_threads`).
        spin: Let idle worker threads spin between operators (lower latency on a dedicated machine).

    Raises:
        CheckpointError: see :func:`read_onnx_contract`, or ONNX Runtime cannot build a session.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, spin: bool = True):
        import onnxruntime as ort

        self.path = Path(path)
        self.contract, self.metadata = read_onnx_contract(self.path)
        self.quantization = self.metadata.get(META_QUANTIZATION, "none")
        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load it ({exc})") from None
        self.sha256 = _sha256(self.path)

    @property
    def input_size(self) -> int:
        return self.contract.input_size

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(B, 14)`` for a normalised float32 batch ``(B, 3, S, S)``.

        Raises:
            ValueError: the batch does not have the model's shape.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        size = self.contract.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"{self.path}: expected a (B, 3, {size}, {size}) batch, got {batch.shape}")
        try:
            (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        except Exception as exc:  # ONNX Runtime errors are not ours to leak as tracebacks
            raise CXReaderError(f"{self.path}: inference failed ({exc})") from None
        return logits

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, 14)``: the sigmoid of :meth:`logits` (independent findings, never softmax)."""
        logits = self.logits(batch).astype(np.float64)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
