"""Checkpoints that carry their contract (timm's ``pretrained_cfg``, torchxrayvision's ``targets``/``op_threshs``).

A cxreader checkpoint holds, beside the weights: the label order, the model name and its constructor
arguments, the input size and normalisation, the per-finding operating thresholds (chosen on validation
data), the training configuration, the metrics it was selected on, whether it was trained on synthetic
data, the package version, and what lets the model know when not to answer: the calibration of its
probabilities, the operating point its thresholds come from, and the input gate's out-of-distribution
detector (all three fitted at the end of training or by ``cxreader calibrate``; absent, ``None``, in older
checkpoints, which load and predict as they always did).

**The scale of the thresholds.** A checkpoint with a ``calibration`` has its ``thresholds`` on the
*calibrated* scale: every model runner applies the calibration before comparing probabilities with them.
A checkpoint without one has them on the model's raw sigmoid scale, as before. Loading refuses a checkpoint whose labels are not an ordered list of
cxreader's findings (:data:`~cxreader.labels.HARMONISED_LABELS`), and
evaluation transforms are built from the checkpoint, never re-typed.

Files are written with :func:`cxreader.files.atomic_write`: an interrupted write never leaves a half
checkpoint behind.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cxreader import __version__
from cxreader.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalPreset, TenCropPreset
from cxreader.errors import CheckpointError
from cxreader.files import atomic_write, sha256_file
from cxreader.labels import FINDINGS, UnknownFindingError, check_label_space
from cxreader.models._registry import create_model
from cxreader.models.chexnet import CheXNet, normalise_state_dict_keys

logger = logging.getLogger(__name__)

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
    #: The input gate's out-of-distribution detector (:class:`cxreader.inference.gate.OutOfDistribution` state:
    #: tensors and numbers), fitted at the end of training; ``None`` for checkpoints without one.
    ood: dict[str, Any] | None = None
    #: The per-finding calibration of the probabilities (:meth:`cxreader.inference.calibration.Calibration.
    #: to_json`), fitted on the validation split; ``None``: the raw sigmoid outputs are used.
    calibration: dict[str, Any] | None = None
    #: How ``thresholds`` were chosen: ``{"rule", "scale", "split", "findings": {name: {"threshold",
    #: "sensitivity", "specificity", "rule"}}}`` (:func:`cxreader.evaluation.thresholds.operating_points`);
    #: ``None`` for checkpoints from before it was recorded.
    operating_point: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),  # copies: the stored dicts never alias the contract's
            "labels": list(self.labels),
            "mean": list(self.mean),
            "std": list(self.std),
            "thresholds": [float(t) for t in self.thresholds],
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
            ood=dict(values["ood"]) if values.get("ood") else None,
            calibration=dict(values["calibration"]) if values.get("calibration") else None,
            operating_point=dict(values["operating_point"]) if values.get("operating_point") else None,
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
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "contract": contract.to_dict(),
        "state_dict": cpu_state_dict(model),
    }
    if training_state is not None:
        payload["training_state"] = training_state
    with atomic_write(path) as handle:
        torch.save(payload, handle)


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The bare module's weights, detached and on the CPU, as a checkpoint stores them."""
    return {key: value.detach().cpu() for key, value in unwrap(model).state_dict().items()}


def read_payload(
    path: Path,
    *,
    format_name: str = FORMAT,
    format_version: int = FORMAT_VERSION,
    what: str = "checkpoint",
    hint: str = "",
    weights_only: bool = True,
) -> dict[str, Any]:
    """The payload of a checkpoint file of format ``format_name``, no newer than ``format_version``.

    Raises:
        CheckpointError: one line naming the file (``what`` names its kind; ``hint`` follows "not a ...").
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # truncated zip, pickle error, …: one line naming the file
        raise CheckpointError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != format_name:
        raise CheckpointError(f"{path}: not a cxreader {what}{hint}")
    if int(payload.get("format_version", 0)) > format_version:
        raise CheckpointError(f"{path}: written by a newer cxreader (format {payload['format_version']})")
    return payload


def check_labels(path: Path, labels: Sequence[str]) -> None:
    """Refuse a checkpoint whose labels are not an ordered list of cxreader's findings
    (:data:`~cxreader.labels.HARMONISED_LABELS`, each once): its outputs could not be read as findings."""
    try:
        check_label_space(labels)
    except UnknownFindingError as exc:
        raise CheckpointError(
            f"{path}: the model's labels {list(labels)} are not cxreader findings ({exc}); refusing to load it "
            "(its outputs would be read as the wrong findings)"
        ) from None


def read_checkpoint(path: str | Path, *, with_training_state: bool = False) -> dict[str, Any]:
    """The raw payload of a cxreader checkpoint, validated (format and labels)."""
    path = Path(path)
    payload = read_payload(
        path,
        hint=" (for raw DenseNet/CheXNet weights use train --weights FILE)",
        weights_only=not with_training_state,
    )
    check_labels(path, payload["contract"].get("labels", ()))
    return payload


def _model_kwargs(contract: CheckpointContract) -> dict[str, Any]:
    """The constructor arguments of a checkpoint's model: its own, with one output per label of the contract
    (a checkpoint of the 14 findings has always been built without ``num_classes``)."""
    kwargs = {**contract.model_kwargs, "init": "none", "weights": None}
    if len(contract.labels) != len(FINDINGS):
        kwargs.setdefault("num_classes", len(contract.labels))
    return kwargs


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
    model = create_model(contract.model_name, **_model_kwargs(contract))
    state = normalise_state_dict_keys(payload["state_dict"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights don't fit {contract.model_name} ({first})") from None
    model.eval().to(device)
    if "location_reader" in payload:
        logger.info(
            "%s: ignoring its location reader (no longer used; side and zone come from the rules)", path
        )
    return LoadedCheckpoint(
        model=model,
        contract=contract,
        path=path,
        sha256=sha256_file(path),
        training_state=payload.get("training_state"),
    )
