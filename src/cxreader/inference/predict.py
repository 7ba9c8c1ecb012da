"""Predict the finding probabilities for image files (PNG, JPEG, DICOM), and print them.

The findings are the model's labels, in the order of its checkpoint's contract
(:attr:`~cxreader.inference.backends.ModelBackend.labels`: the 14 CheXNet findings, or the label space of a model
trained on several datasets).

A file that cannot be read gets a per-file error and the others still get results; a file the input gate
refuses (:mod:`cxreader.inference.gate`: a CT, a lateral view, a photograph, ...) gets "not read" and the
reasons instead of probabilities. The model runs through
a :class:`~cxreader.inference.backends.ModelBackend` (a PyTorch checkpoint or an ONNX export); its evaluation
transform comes from the checkpoint's contract (input size, normalisation), never re-typed.
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
from cxreader.inference.backends import ModelBackend, load_backend
from cxreader.inference.gate import GateVerdict
from cxreader.labels import display_name, positive_findings
from cxreader.models.checkpoint import LoadedCheckpoint


@dataclass
class FilePrediction:
    """The result for one file: probabilities and thresholds crossed, or the reason it failed.

    ``probabilities`` holds one entry per label of the model, in the model's label order.
    """

    path: str
    probabilities: dict[str, float] = field(default_factory=dict)
    positive: list[str] = field(default_factory=list)
    error: str | None = None
    image: LoadedImage | None = field(default=None, repr=False)
    #: Grounded descriptions of the positive findings (``predict --describe``), JSON dicts; None = not asked.
    descriptions: list[dict[str, Any]] | None = None
    #: Learned captions of the positive findings (``predict --caption``), as JSON dicts; None = not asked.
    captions: list[dict[str, Any]] | None = None
    #: The input gate's verdict (:mod:`cxreader.inference.gate`); a refused image has no probabilities.
    gate: GateVerdict | None = None

    @property
    def read(self) -> bool:
        """The file was decoded and the gate let the model read it: it has probabilities."""
        return self.error is None and (self.gate is None or self.gate.accepted)

    def to_json_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        gate = self.gate.to_json() if self.gate is not None else None
        if not self.read:
            return {"path": self.path, "gate": gate}
        payload = {
            "path": self.path,
            "gate": gate,
            "probabilities": self.probabilities,
            "positive": self.positive,
        }
        if self.descriptions is not None:
            payload["descriptions"] = self.descriptions
        if self.captions is not None:
            payload["captions"] = self.captions
        return payload


class Predictor:
    """A model ready for inference on files.

    Args:
        model: A checkpoint path or an already loaded checkpoint, an exported ``.onnx`` model, or a backend.
        device: ``auto``, ``cpu`` or ``cuda`` (an ONNX model always runs on the CPU).
        batch_size: Images per forward pass.
        backend: ``auto`` (ONNX Runtime for a ``.onnx`` file, PyTorch otherwise), ``torch`` or ``onnx``.
    """

    def __init__(
        self,
        model: str | Path | LoadedCheckpoint | ModelBackend,
        *,
        device: str = "auto",
        batch_size: int = 16,
        backend: str = "auto",
    ):
        if isinstance(model, ModelBackend):
            self.backend = model
        else:
            # A prediction run has the cores to itself: ONNX Runtime's spinning threads lower its latency.
            self.backend = load_backend(model, backend=backend, device=device, spin=True)
        self.contract = self.backend.contract
        self.labels = self.backend.labels
        self.thresholds = np.asarray(self.contract.thresholds, dtype=np.float32)
        self.batch_size = batch_size

    def predict_arrays(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(N, K)`` in :attr:`labels` order for grayscale arrays (uint8, or float in [0, 1])."""
        transform = self.backend.transform
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack([transform(image) for image in images[start : start + self.batch_size]])
            out.append(self.backend.predict(batch))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict_files(
        self, paths: Sequence[str | Path], *, keep_images: bool = False
    ) -> list[FilePrediction]:
        """One :class:`FilePrediction` per path, in order; unreadable files carry their error, and files the
        input gate refuses carry its verdict instead of probabilities."""
        gate = self.backend.gate
        results = [FilePrediction(path=str(path)) for path in paths]
        readable: list[tuple[int, LoadedImage]] = []
        for index, path in enumerate(paths):
            try:
                image = load_image(path)
            except CXReaderError as exc:
                results[index].error = str(exc)
                continue
            if keep_images:
                results[index].image = image
            broken = gate.rules(image)
            if broken:  # refused before the model runs
                results[index].gate = GateVerdict(accepted=False, reasons=tuple(broken))
            else:
                readable.append((index, image))
        for start in range(0, len(readable), self.batch_size):
            chunk = readable[start : start + self.batch_size]
            batch = torch.stack([self.backend.transform(image.pixels) for _, image in chunk])
            probabilities, features = self.backend.predict_features(batch)
            verdicts = gate.verdicts([()] * len(chunk), features)
            for (index, _image), row, verdict in zip(chunk, probabilities, verdicts, strict=True):
                result = results[index]
                result.gate = verdict
                if verdict.accepted:
                    result.probabilities = {name: float(p) for name, p in zip(self.labels, row, strict=True)}
                    result.positive = positive_findings(row, self.thresholds, self.labels)
        return results


def format_predictions(
    results: Sequence[FilePrediction],
    thresholds: Sequence[float],
    operating_point: dict[str, Any] | None = None,
    labels: Sequence[str] | None = None,
) -> str:
    """A readable block per file: findings sorted by probability, '*' where the threshold is crossed.

    Args:
        thresholds: The operating thresholds, in ``labels`` order.
        operating_point: The checkpoint's record of how its thresholds were chosen
            (:attr:`~cxreader.models.checkpoint.CheckpointContract.operating_point`): its rule heads the output
            and each finding shows the sensitivity and specificity its threshold achieved on validation.
        labels: The model's label order (:attr:`Predictor.labels`); by default the order of each result's
            ``probabilities``, which :meth:`Predictor.predict_files` fills in label order.
    """
    lines = []
    achieved = (operating_point or {}).get("findings", {})
    if operating_point:
        lines.append(
            f"operating point: {operating_point.get('rule', '?')} (thresholds chosen on the "
            f"{operating_point.get('split', 'validation')} split; their sensitivity and specificity there)"
        )
    for result in results:
        if result.error:
            lines.append(f"{result.path}: ERROR {result.error}")
            continue
        if not result.read:
            assert result.gate is not None
            lines.append(f"{result.path}: NOT READ: {'; '.join(result.gate.reasons)}")
            continue
        lines.append(f"{result.path}:")
        names = list(labels) if labels is not None else list(result.probabilities)
        limits = dict(zip(names, thresholds, strict=True))
        order = sorted(names, key=lambda name: -result.probabilities[name])
        for name in order:
            probability, threshold = result.probabilities[name], limits[name]
            mark = "*" if name in result.positive else " "
            point = achieved.get(name) or {}
            there = (
                f"; sens {point['sensitivity']:.2f}, spec {point['specificity']:.2f}"
                if point.get("sensitivity") is not None and point.get("specificity") is not None
                else ""
            )
            lines.append(
                f"  {mark} {display_name(name):<20} {probability:.3f}  (threshold {threshold:.3f}{there})"
            )
        if result.descriptions is not None:
            empty = "" if result.descriptions else " no finding above its threshold"
            lines.append(f"  description:{empty}")
            lines.extend(f"    {item['sentence']}" for item in result.descriptions)
        if result.captions is not None:
            empty = "" if result.captions else " no finding above its threshold"
            lines.append(f"  learned caption:{empty}")
            unknown = "(the captioner does not know this finding)"
            lines.extend(
                f"    {display_name(item['finding'])}: {item['text'] or unknown}" for item in result.captions
            )
    return "\n".join(lines)
