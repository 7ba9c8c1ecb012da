"""Checkpoints that carry their contract (timm's ``pretrained_cfg``, torchxrayvision's ``targets``/``op_threshs``).

A cxreader checkpoint holds, beside the weights: the label order, the model name and its constructor
arguments, the input size and normalisation, the per-finding operating thresholds (chosen on validation
data), the training configuration, the metrics it was selected on, whether it was trained on synthetic
data, and the package version. Loading refuses a checkpoint whose labels differ from :data:`FINDINGS`, and
evaluation transforms are built from the checkpoint, never re-typed.

A checkpoint may also carry a learned location reader (:mod:`cxreader.localization.reader`), fitted on the
model's own maps by ``cxreader localize-fit`` and stored under ``location_reader`` as plain lists; loading
puts it on the model as ``model.location_reader`` (None when absent), where the descriptions find it.

Files are written atomically (temporary file in the same folder, fsync, ``os.replace``): an interrupted
write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cxreader import __version__
from cxreader.data.transforms import EvalPreset, TenCropPreset
from cxreader.errors import CheckpointError
from cxreader.labels import FINDINGS
from cxreader.models import CheXNet, create_model
from cxreader.models.chexnet import IMAGENET_MEAN, IMAGENET_STD, normalise_state_dict_keys

FORMAT = "cxreader-checkpoint"
FORMAT_VERSION = 1


@dataclass
class CheckpointContract:
    """What a model needs to be used correctly, stored inside its checkpoint."""

    model_name: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = FINDINGS
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    thresholds: tuple[float, ...] = (0.5,) * len(FINDINGS)
    synthetic: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    cxreader_version: str = __version__
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_kwargs": dict(self.model_kwargs),
            "labels": list(self.labels),
            "input_size": int(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "thresholds": [float(t) for t in self.thresholds],
            "synthetic": bool(self.synthetic),
            "config": dict(self.config),
            "metrics": dict(self.metrics),
            "epoch": int(self.epoch),
            "cxreader_version": self.cxreader_version,
            "created": self.created
            or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CheckpointContract:
        return cls(
            model_name=values["model_name"],
            model_kwargs=dict(values.get("model_kwargs", {})),
            labels=tuple(values["labels"]),
            input_size=int(values["input_size"]),
            mean=tuple(values["mean"]),
            std=tuple(values["std"]),
            thresholds=tuple(float(t) for t in values["thresholds"]),
            synthetic=bool(values.get("synthetic", False)),
            config=dict(values.get("config", {})),
            metrics=dict(values.get("metrics", {})),
            epoch=int(values.get("epoch", 0)),
            cxreader_version=str(values.get("cxreader_version", "")),
            created=str(values.get("created", "")),
        )

    def eval_preset(self) -> EvalPreset:
        return EvalPreset(image_size=self.input_size, mean=self.mean, std=self.std)

    def tencrop_preset(self) -> TenCropPreset:
        return TenCropPreset(image_size=self.input_size, mean=self.mean, std=self.std)


@dataclass
class LoadedCheckpoint:
    """A model ready for inference (eval mode, on CPU unless moved) and its contract."""

    model: CheXNet
    contract: CheckpointContract
    path: Path
    sha256: str
    training_state: dict[str, Any] | None = None


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    contract: CheckpointContract,
    training_state: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically. ``training_state`` (optimizer, scheduler, RNG, …) makes it resumable."""
    state_dict = {key: value.detach().cpu() for key, value in unwrap(model).state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "contract": contract.to_dict(),
        "state_dict": state_dict,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    save_atomic(payload, path)


def save_atomic(payload: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path, *, with_training_state: bool = False) -> dict[str, Any]:
    """The raw payload of a cxreader checkpoint, validated (format and labels)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=not with_training_state)
    except Exception as exc:  # truncated zip, pickle error, …: one line naming the file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a cxreader checkpoint (for raw DenseNet/CheXNet weights use train --weights FILE)"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer cxreader (format {payload['format_version']})")
    labels = tuple(payload["contract"].get("labels", ()))
    if labels != FINDINGS:
        raise CheckpointError(
            f"{path}: the checkpoint's labels {list(labels)} differ from cxreader's findings {list(FINDINGS)}; "
            "refusing to load it (its outputs would be read as the wrong findings)"
        )
    return payload


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", with_training_state: bool = False
) -> LoadedCheckpoint:
    """Build the model a checkpoint describes and load its weights (eval mode).

    Raises:
        CheckpointError: missing/corrupt file, other labels, or weights that don't fit the model.
    """
    path = Path(path)
    payload = read_checkpoint(path, with_training_state=with_training_state)
    contract = CheckpointContract.from_dict(payload["contract"])
    model = create_model(contract.model_name, **{**contract.model_kwargs, "init": "none", "weights": None})
    state = normalise_state_dict_keys(payload["state_dict"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights don't fit {contract.model_name} ({first})") from None
    model.eval().to(device)
    model.location_reader = _location_reader(path, payload.get("location_reader"))
    return LoadedCheckpoint(
        model=model,
        contract=contract,
        path=path,
        sha256=file_sha256(path),
        training_state=payload.get("training_state"),
    )


def _location_reader(path: Path, values: Any):
    if values is None:
        return None
    from cxreader.localization.reader import LocationReader

    try:
        return LocationReader.from_dict(values)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def store_location_reader(path: str | Path, reader: Any) -> None:
    """Put a :class:`~cxreader.localization.reader.LocationReader` into a checkpoint (atomic rewrite; every
    other entry, training state included, is kept as it was)."""
    path = Path(path)
    payload = read_checkpoint(path, with_training_state=True)
    payload["location_reader"] = reader.to_dict()
    save_atomic(payload, path)
