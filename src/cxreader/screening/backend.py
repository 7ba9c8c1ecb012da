"""Inference backends for screening and the service: a PyTorch checkpoint or an ONNX Runtime export.

Both take a normalised batch ``(B, 3, S, S)`` made by the contract's evaluation preset and return sigmoid
probabilities ``(B, 14)`` in :data:`~cxreader.labels.FINDINGS` order. Only the PyTorch backend can draw
heatmaps (class activation maps read the feature map and the head's weights, which an ONNX graph does not
expose).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from cxreader.data.transforms import EvalPreset
from cxreader.inference import autocast, resolve_amp_dtype
from cxreader.labels import FINDINGS
from cxreader.training.checkpoint import CheckpointContract, LoadedCheckpoint, load_checkpoint
from cxreader.training.distributed import resolve_device


class ModelBackend(Protocol):
    """What screening needs from a model."""

    kind: str
    path: Path
    sha256: str
    contract: CheckpointContract
    transform: EvalPreset
    #: The PyTorch model for heatmaps, ``None`` when the backend cannot draw them.
    model: nn.Module | None

    def predict(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities ``(B, 14)`` for a normalised batch ``(B, 3, S, S)``."""
        ...


class TorchBackend:
    """A cxreader checkpoint run by PyTorch (autocast on accelerators, as :mod:`cxreader.inference`).

    Forward passes are serialised by a lock: the service calls :meth:`predict` from several threads, and one
    forward at a time already uses every core through PyTorch's intra-op threads.

    Args:
        checkpoint: A loaded checkpoint.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    kind = "pytorch"

    def __init__(self, checkpoint: LoadedCheckpoint, *, device: str = "auto"):
        self.device = resolve_device(device)
        self.checkpoint = checkpoint
        self.model: nn.Module | None = checkpoint.model.to(self.device).eval()
        self.contract = checkpoint.contract
        self.path = Path(checkpoint.path)
        self.sha256 = checkpoint.sha256
        self.transform = self.contract.eval_preset()
        self.amp_dtype = resolve_amp_dtype("auto", self.device)
        self.lock = threading.Lock()

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> np.ndarray:
        return self.predict_features(batch)[0]

    @torch.no_grad()
    def predict_features(self, batch: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Probabilities ``(B, 14)`` and the last feature maps ``(B, C, h, w)`` they were computed from.

        The feature maps let class activation maps be drawn without a second forward pass
        (:func:`cxreader.screening.explain.explain_batch`).
        """
        model = self.checkpoint.model
        with self.lock, autocast(self.device, self.amp_dtype):
            features = model.forward_features(batch.to(self.device, non_blocking=True))
            logits = model.forward_head(features)
        return torch.sigmoid(logits.float()).cpu().numpy(), features


class OnnxBackend:
    """An ONNX export (``cxreader.export.onnx``) run by ONNX Runtime on the CPU.

    Args:
        path: A ``.onnx`` file written by ``export_onnx``.
        threads: Intra-op threads (default: the cores this process may use).
    """

    kind = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None):
        from cxreader.export.onnx import OnnxModel

        # No spinning: the decode threads of a screening run share the cores with the inference threads.
        self.onnx = OnnxModel(path, threads=threads, spin=False)
        self.model: nn.Module | None = None
        self.contract = self.onnx.contract
        self.path = Path(path)
        self.sha256 = self.onnx.sha256
        self.transform = self.contract.eval_preset()
        self.lock = threading.Lock()

    def predict(self, batch: torch.Tensor) -> np.ndarray:
        with self.lock:
            return self.onnx.predict(batch.numpy())


def load_backend(path: str | Path, *, device: str = "auto", threads: int | None = None) -> ModelBackend:
    """A backend for a checkpoint (``*.pt``) or an ONNX export (``*.onnx``, chosen by its suffix).

    Raises:
        CheckpointError: missing or unreadable file, labels other than :data:`FINDINGS`.
    """
    if Path(path).suffix.lower() == ".onnx":
        return OnnxBackend(path, threads=threads)
    return TorchBackend(load_checkpoint(path), device=device)


def model_summary(backend: ModelBackend) -> dict[str, Any]:
    """A JSON-ready description of the model: what a report or the web page shows about it."""
    contract = backend.contract
    return {
        "backend": backend.kind,
        "model_name": contract.model_name,
        "file": backend.path.name,
        "sha256": backend.sha256,
        "input_size": int(contract.input_size),
        "labels": list(FINDINGS),
        "thresholds": {name: float(t) for name, t in zip(FINDINGS, contract.thresholds, strict=True)},
        "synthetic": bool(contract.synthetic),
        "heatmaps": backend.model is not None,
        "cxreader_version": contract.cxreader_version,
    }
