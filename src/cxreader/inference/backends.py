"""The one model runner: a PyTorch checkpoint or an ONNX Runtime export behind one interface.

Prediction of files, screening, the service and the explanations all run the model through a
:class:`ModelBackend` made by :func:`load_backend`. Both backends take a normalised batch ``(B, 3, S, S)``
made by the contract's evaluation preset (:attr:`ModelBackend.transform`) and return probabilities
``(B, K)``, one column per label of the contract in its order (:attr:`ModelBackend.labels`: the 14
:data:`~cxreader.labels.FINDINGS` for a CheXNet checkpoint, any ordered subset of
:data:`~cxreader.labels.HARMONISED_LABELS` for a model trained on several datasets; a backend refuses a model
whose outputs, thresholds or calibration do not match them): the sigmoid outputs, calibrated by the contract's
calibration where it carries one (:mod:`cxreader.inference.calibration`; the contract's thresholds are then on
the calibrated scale), and exactly the sigmoid outputs where it does not. Only the PyTorch backend can draw
heatmaps (class activation maps read the feature map and the head's weights, which an ONNX graph does not
expose).
"""

from __future__ import annotations

import abc
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cxreader.errors import CheckpointError, ConfigError, CXReaderError
from cxreader.files import sha256_file
from cxreader.inference.calibration import Calibration, contract_calibration
from cxreader.inference.gate import InputGate, OutOfDistribution
from cxreader.inference.onnx_runtime import INPUT_NAME, META_QUANTIZATION, OUTPUT_NAME, read_onnx_contract
from cxreader.inference.runtime import forward_probabilities, resolve_amp_dtype, resolve_device
from cxreader.models.checkpoint import CheckpointContract, LoadedCheckpoint, load_checkpoint

#: The ``--backend`` choices: ``auto`` runs a ``.onnx`` file with ONNX Runtime and anything else with PyTorch.
BACKENDS = ("auto", "torch", "onnx")


class ModelBackend(abc.ABC):
    """A model ready to run, with the contract it carries.

    Forward passes are serialised by :attr:`lock`: the service calls :meth:`predict` from several threads,
    and one forward pass at a time already uses every core (PyTorch's or ONNX Runtime's intra-op threads).

    Attributes:
        kind: ``pytorch`` or ``onnx``.
        path: The model file.
        sha256: SHA-256 of the model file (how the records database knows the model).
        contract: Labels, input size, normalisation and thresholds.
        labels: The contract's label order: what each column of :meth:`predict`'s output is.
        transform: The contract's evaluation preset, which makes the batches :meth:`predict` takes.
        model: The PyTorch model for heatmaps, ``None`` when the backend cannot draw them.
        gate: The input gate: the rules, and the checkpoint's out-of-distribution detector when it has one
            (:mod:`cxreader.inference.gate`; an ONNX export has the rules only).
        calibration: The contract's calibration, applied to every output; ``None`` when it has none.
    """

    kind: str
    model: nn.Module | None = None

    def __init__(self, contract: CheckpointContract, path: str | Path, sha256: str):
        self.contract = contract
        self.path = Path(path)
        self.sha256 = sha256
        if len(contract.thresholds) != len(contract.labels):
            raise CheckpointError(
                f"{self.path}: {len(contract.thresholds)} thresholds for {len(contract.labels)} labels in its "
                "contract; each label needs its operating threshold"
            )
        self.transform = contract.eval_preset()
        self.lock = threading.Lock()
        detector = OutOfDistribution.from_contract(contract)
        self.gate = InputGate(input_size=contract.input_size, detector=detector, name=self.path.name)
        self.calibration: Calibration | None = contract_calibration(contract, source=str(self.path))

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's label order (the contract's ``labels``): column ``k`` of every output is ``labels[k]``."""
        return tuple(self.contract.labels)

    def _check_outputs(self, outputs: int | None) -> None:
        """Refuse a model with another number of outputs than its contract has labels (they could not be
        named)."""
        if outputs is not None and outputs != len(self.contract.labels):
            raise CheckpointError(
                f"{self.path}: the model has {outputs} outputs but its contract names {len(self.contract.labels)} "
                "labels; refusing to read its outputs as findings"
            )

    @abc.abstractmethod
    def predict(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities ``(B, K)`` in :attr:`labels` order (float32, calibrated where the contract says how)
        for a normalised batch ``(B, 3, S, S)``."""

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """The contract's calibration of raw sigmoid outputs ``(B, K)``, as float32; unchanged without one."""
        if self.calibration is None:
            return probabilities
        return self.calibration.apply(probabilities).astype(np.float32)

    def predict_features(self, batch: torch.Tensor) -> tuple[np.ndarray, torch.Tensor | None]:
        """Probabilities and the last feature maps they were computed from (``None`` without a model)."""
        return self.predict(batch), None


class TorchBackend(ModelBackend):
    """A cxreader checkpoint run by PyTorch, with autocast on accelerators.

    Args:
        checkpoint: A loaded checkpoint.
        device: ``auto``, ``cpu``, ``cuda`` or ``hpu``.
    """

    kind = "pytorch"

    def __init__(self, checkpoint: LoadedCheckpoint, *, device: str = "auto"):
        super().__init__(checkpoint.contract, checkpoint.path, checkpoint.sha256)
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.model = checkpoint.model.to(self.device).eval()
        head = getattr(self.model, "classifier", None)
        self._check_outputs(getattr(head, "out_features", None))
        self.amp_dtype = resolve_amp_dtype("auto", self.device)

    def predict(self, batch: torch.Tensor) -> np.ndarray:
        return self.predict_features(batch)[0]

    def predict_features(self, batch: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Probabilities ``(B, K)`` (:attr:`labels` order) and the last feature maps ``(B, C, h, w)`` they were
        computed from.

        The feature maps let class activation maps be drawn without a second forward pass
        (:func:`cxreader.localization.explain.explain_batch`).
        """
        with self.lock:
            probabilities, features = forward_probabilities(
                self.model, batch, device=self.device, amp_dtype=self.amp_dtype
            )
        return self.calibrate(probabilities.cpu().numpy()), features


class OnnxBackend(ModelBackend):
    """An ONNX export (:func:`cxreader.export.onnx.export_onnx`) run by ONNX Runtime on the CPU.

    The contract comes from the model's metadata (:func:`~cxreader.inference.onnx_runtime.read_onnx_contract`).
    Session settings (ONNX Runtime's performance tuning guide): all graph optimisations (constant folding,
    node fusions, layout transformation to the CPU's blocked formats), sequential execution (a CNN is a
    chain, so inter-op parallelism has nothing to run), and intra-op threads = the cores this process may
    use.

    Args:
        path: A ``.onnx`` file written by ``export_onnx``.
        threads: Intra-op threads (default: the cores this process may use).
        spin: Let idle ONNX Runtime threads spin between operators (lower latency on a dedicated machine). Off
            by default: the decoding threads of a screening run and the service's request threads share the
            cores with the inference threads.

    Raises:
        CheckpointError: see :func:`~cxreader.inference.onnx_runtime.read_onnx_contract`, or ONNX Runtime
            cannot build a session.
    """

    kind = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None, spin: bool = False):
        import onnxruntime as ort

        contract, metadata = read_onnx_contract(path)
        super().__init__(contract, path, sha256_file(path))
        self.quantization = metadata.get(META_QUANTIZATION, "none")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads is None:  # the cores this process may use (its affinity mask: a container's or taskset's)
            threads = (
                len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            )
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load it ({exc})") from None
        outputs = self.session.get_outputs()[0].shape
        self._check_outputs(outputs[-1] if outputs and isinstance(outputs[-1], int) else None)

    def predict(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Probabilities ``(B, K)`` in :attr:`labels` order, the sigmoid of the graph's logits (independent
        findings, never softmax), calibrated where the export's contract carries a calibration.

        Raises:
            ValueError: the batch does not have the model's shape.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        size = self.contract.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"{self.path}: expected a (B, 3, {size}, {size}) batch, got {batch.shape}")
        try:
            with self.lock:
                (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        except Exception as exc:  # ONNX Runtime errors are not ours to leak as tracebacks
            raise CXReaderError(f"{self.path}: inference failed ({exc})") from None
        self._check_outputs(int(logits.shape[-1]))
        return self.calibrate((1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32))


def load_backend(
    model: str | Path | LoadedCheckpoint,
    *,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    spin: bool = False,
) -> ModelBackend:
    """A backend for a checkpoint (``*.pt``, or one already loaded) or an ONNX export (``*.onnx``).

    Args:
        model: The model file, or a loaded checkpoint.
        backend: ``auto`` (ONNX Runtime for a ``.onnx`` file, PyTorch otherwise), ``torch`` or ``onnx``.
        device: The PyTorch device (an ONNX model always runs on the CPU).
        threads, spin: ONNX Runtime's intra-op threads and spinning (see :class:`OnnxBackend`).

    Raises:
        ConfigError: an unknown backend, or one that does not fit the file.
        CheckpointError: missing or unreadable file, labels that are not cxreader findings, or outputs,
            thresholds or a calibration that do not match the labels.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}; expected auto, torch or onnx")
    onnx_file = not isinstance(model, LoadedCheckpoint) and Path(model).suffix.lower() == ".onnx"
    if backend == "torch" and onnx_file:
        raise ConfigError(f"{model}: an ONNX model runs with --backend onnx (or auto), not torch")
    if backend == "onnx" and not onnx_file:
        raise ConfigError(
            f"{getattr(model, 'path', model)}: --backend onnx needs an exported .onnx model; "
            "write one with `cxreader export --checkpoint CKPT --format onnx --out model.onnx`"
        )
    if onnx_file:
        return OnnxBackend(model, threads=threads, spin=spin)
    checkpoint = model if isinstance(model, LoadedCheckpoint) else load_checkpoint(model)
    return TorchBackend(checkpoint, device=device)


def model_summary(backend: ModelBackend) -> dict[str, Any]:
    """A JSON-ready description of the model: what a report or the web page shows about it."""
    contract = backend.contract
    return {
        "backend": backend.kind,
        "model_name": contract.model_name,
        "file": backend.path.name,
        "sha256": backend.sha256,
        "input_size": int(contract.input_size),
        "labels": list(backend.labels),
        "thresholds": {name: float(t) for name, t in zip(backend.labels, contract.thresholds, strict=True)},
        "synthetic": bool(contract.synthetic),
        "heatmaps": backend.model is not None,
        "cxreader_version": contract.cxreader_version,
    }
