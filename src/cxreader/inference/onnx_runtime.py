"""An exported cxreader model run by ONNX Runtime on the CPU, its contract read from the ONNX metadata.

The graph written by :func:`cxreader.export.onnx.export_onnx` takes exactly what the PyTorch model takes, a
normalised float32 batch ``(B, 3, S, S)`` (``S`` = the contract's input size, batch size free), and returns
the 14 logits; :class:`OnnxModel` applies the sigmoid. The checkpoint's contract (labels, input size, mean
and std, thresholds, synthetic flag, ...) travels in the model's ``metadata_props`` (ONNX IR,
``ModelProto.metadata_props``), so an exported file is used correctly without its checkpoint, and loading
refuses a model whose labels differ from ``FINDINGS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cxreader.errors import CheckpointError, CXReaderError
from cxreader.files import sha256_file
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import CheckpointContract

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
FORMAT = "cxreader-onnx"
FORMAT_VERSION = 1
#: ``metadata_props`` keys written by :func:`~cxreader.export.onnx.export_onnx`.
META_FORMAT = "cxreader.format"
META_VERSION = "cxreader.format_version"
META_CONTRACT = "cxreader.contract"
META_QUANTIZATION = "cxreader.quantization"
META_SOURCE = "cxreader.source_sha256"


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` names an ONNX model (by its ``.onnx`` suffix)."""
    return Path(path).suffix.lower() == ".onnx"


def read_onnx_contract(path: str | Path) -> tuple[CheckpointContract, dict[str, str]]:
    """The :class:`~cxreader.models.checkpoint.CheckpointContract` stored in an exported model.

    Returns:
        ``(contract, metadata)`` where ``metadata`` holds all ``metadata_props`` as strings.

    Raises:
        CheckpointError: missing or unreadable file, not a cxreader export, or labels other than ``FINDINGS``.
    """
    import onnx

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
        path: A ``.onnx`` file written by :func:`~cxreader.export.onnx.export_onnx`.
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
        self.sha256 = sha256_file(self.path)

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
