"""Predict the 14 finding probabilities for image files (PNG, JPEG, DICOM) with a trained checkpoint.

A file that cannot be read gets a per-file error and the others still get results. The evaluation transform
comes from the checkpoint's contract (input size, normalisation), never re-typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxreader.data.io import LoadedImage, load_image
from cxreader.errors import CXReaderError
from cxreader.inference import autocast, resolve_amp_dtype
from cxreader.labels import FINDINGS
from cxreader.training.checkpoint import LoadedCheckpoint, load_checkpoint
from cxreader.training.distributed import resolve_device


@dataclass
class FilePrediction:
    """The result for one file: probabilities and thresholds crossed, or the reason it failed."""

    path: str
    probabilities: dict[str, float] = field(default_factory=dict)
    positive: list[str] = field(default_factory=list)
    error: str | None = None
    image: LoadedImage | None = field(default=None, repr=False)
    #: Grounded descriptions of the positive findings (``predict --describe``), as JSON dicts; None = not asked.
    descriptions: list[dict[str, Any]] | None = None
    #: Learned captions of the positive findings (``predict --caption``), as JSON dicts; None = not asked.
    captions: list[dict[str, Any]] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        payload = {"path": self.path, "probabilities": self.probabilities, "positive": self.positive}
        if self.descriptions is not None:
            payload["descriptions"] = self.descriptions
        if self.captions is not None:
            payload["captions"] = self.captions
        return payload


class Predictor:
    """A checkpoint ready for inference on files.

    Args:
        checkpoint: A path or an already loaded checkpoint, or an exported ``.onnx`` model.
        device: ``auto``, ``cpu`` or ``cuda`` (an ONNX model always runs on the CPU).
        batch_size: Images per forward pass.
        backend: ``auto`` (ONNX Runtime for a ``.onnx`` file, PyTorch otherwise), ``torch`` or ``onnx``.
            With ONNX, :attr:`checkpoint` is ``None`` and :attr:`onnx` holds the
            :class:`~cxreader.export.onnx.OnnxModel`.
    """

    def __init__(
        self,
        checkpoint: str | Path | LoadedCheckpoint,
        *,
        device: str = "auto",
        batch_size: int = 16,
        backend: str = "auto",
    ):
        self.onnx = _onnx_model(checkpoint, backend)
        self.device = resolve_device("cpu" if self.onnx is not None else device)
        self.checkpoint: LoadedCheckpoint | None = None
        if self.onnx is None:
            self.checkpoint = (
                checkpoint
                if isinstance(checkpoint, LoadedCheckpoint)
                else load_checkpoint(checkpoint, device=self.device)
            )
            self.checkpoint.model.to(self.device).eval()
        self.contract = self.onnx.contract if self.onnx is not None else self.checkpoint.contract
        self.transform = self.contract.eval_preset()
        self.thresholds = np.asarray(self.contract.thresholds, dtype=np.float32)
        self.batch_size = batch_size
        self.amp_dtype = resolve_amp_dtype("auto", self.device)

    @torch.no_grad()
    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (N, 14) for grayscale arrays (uint8, or float in [0, 1])."""
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([self.transform(image) for image in images[start : start + self.batch_size]])
            if self.onnx is not None:
                out.append(self.onnx.predict(batch.numpy()))
                continue
            with autocast(self.device, self.amp_dtype):
                logits = self.checkpoint.model(batch.to(self.device))
            out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(FINDINGS)), dtype=np.float32)

    def predict_files(
        self, paths: Sequence[str | Path], *, keep_images: bool = False
    ) -> list[FilePrediction]:
        """One :class:`FilePrediction` per path, in order; unreadable files carry their error."""
        results = [FilePrediction(path=str(path)) for path in paths]
        readable: list[tuple[int, LoadedImage]] = []
        for index, path in enumerate(paths):
            try:
                readable.append((index, load_image(path)))
            except CXReaderError as exc:
                results[index].error = str(exc)
        for start in range(0, len(readable), self.batch_size):
            chunk = readable[start : start + self.batch_size]
            probs = self.predict_arrays([image.pixels for _, image in chunk])
            for (index, image), row in zip(chunk, probs, strict=True):
                result = results[index]
                result.probabilities = {name: float(p) for name, p in zip(FINDINGS, row, strict=True)}
                result.positive = [
                    name for name, p, t in zip(FINDINGS, row, self.thresholds, strict=True) if p >= t
                ]
                if keep_images:
                    result.image = image
        return results


def _onnx_model(checkpoint: str | Path | LoadedCheckpoint, backend: str):
    """The ONNX Runtime model when the backend (or, for ``auto``, a ``.onnx`` file) asks for one, else None."""
    from cxreader.errors import ConfigError
    from cxreader.export.onnx import is_onnx_file

    if backend not in ("auto", "torch", "onnx"):
        raise ConfigError(f"backend={backend!r}; expected auto, torch or onnx")
    is_file = not isinstance(checkpoint, LoadedCheckpoint)
    onnx_file = is_file and is_onnx_file(checkpoint)
    if backend == "torch" and onnx_file:
        raise ConfigError(f"{checkpoint}: an ONNX model runs with --backend onnx (or auto), not torch")
    if backend == "onnx" and not onnx_file:
        raise ConfigError(
            f"{getattr(checkpoint, 'path', checkpoint)}: --backend onnx needs an exported .onnx model; "
            "write one with `cxreader export --checkpoint CKPT --format onnx --out model.onnx`"
        )
    if not onnx_file:
        return None
    from cxreader.export.onnx import OnnxModel

    return OnnxModel(checkpoint)
