"""Heatmaps and grounded descriptions of screened images, from :mod:`cxreader.localization` when it is there.

Class activation maps (Zhou et al., CVPR 2016, as CheXNet drew them) come from
:func:`cxreader.localization.cam.heatmaps` for a whole batch at once, and the grounded description of each
positive finding from :func:`cxreader.localization.describe.describe_findings`. Descriptions are computed on
the display rendition of the image (longer side at most :data:`~cxreader.screening.engine.DISPLAY_MAX_SIDE`),
with the pixel spacing scaled to match, and their boxes are scaled back to the original image's pixels, so a
4,000-pixel DICOM costs no more than a 1,000-pixel one. Without the localization package (or with a backend
that has no PyTorch model, such as ONNX Runtime) nothing is explained and the results carry probabilities only.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cxreader.labels import FINDINGS

try:  # the localization package is optional for screening: results then carry probabilities only
    from cxreader.localization.cam import heatmaps as _heatmaps
    from cxreader.localization.describe import describe_findings as _describe_findings
    from cxreader.localization.describe import rules_for as _rules_for
except ImportError:  # pragma: no cover - exercised only where the package is absent
    _heatmaps = None
    _describe_findings = None
    _rules_for = None

#: Heatmap method used by screening and the service (CAM: one forward pass, as CheXNet).
HEATMAP_METHOD = "cam"


def localization_available() -> bool:
    """Whether :mod:`cxreader.localization` (heatmaps and descriptions) can be imported."""
    return _heatmaps is not None and _describe_findings is not None


@dataclass(frozen=True)
class ImageView:
    """What a description needs to know about an image besides its heatmaps.

    Attributes:
        display: uint8 ``(h, w)`` rendition of the image (bone bright), at most the display size.
        original_size: ``(width, height)`` of the original image.
        view_position: DICOM ViewPosition, ``None`` when unknown (PA is then assumed).
        pixel_spacing_mm: ``(row, column)`` spacing of the original pixels in mm, when known.
    """

    display: np.ndarray
    original_size: tuple[int, int]
    view_position: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None


@dataclass(frozen=True)
class FindingExplanation:
    """The grounded description of one positive finding."""

    sentence: str
    data: dict[str, Any]
    #: ``(x, y, width, height)`` in pixels of the original image.
    box: tuple[int, int, int, int] | None


@dataclass
class Explanation:
    """Heatmaps (finding -> float32 map in [0, 1] at the model's input size) and descriptions of one image."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    findings: dict[str, FindingExplanation] = field(default_factory=dict)


def explain_batch(
    model: torch.nn.Module,
    tensors: torch.Tensor,
    probabilities: np.ndarray,
    thresholds: Sequence[float],
    views: Sequence[ImageView],
    *,
    all_maps: bool = False,
    lock: Any = None,
    features: torch.Tensor | None = None,
) -> list[Explanation]:
    """Heatmaps and descriptions for a batch of screened images.

    Args:
        model: The PyTorch model that produced ``probabilities``.
        tensors: The normalised batch ``(B, 3, S, S)`` it was given.
        probabilities: ``(B, 14)`` probabilities in FINDINGS order.
        thresholds: The 14 operating thresholds.
        views: One :class:`ImageView` per image.
        all_maps: Keep the maps of all 14 findings of every image (the service, whose page lets a clinician
            look at any finding); otherwise only images with a positive finding are mapped and only the maps
            of their positive findings kept.
        lock: Held around the model's forward pass (the service shares one model between threads).
        features: The feature maps ``(B, C, h, w)`` the model computed for ``tensors`` while predicting
            (:meth:`~cxreader.screening.backend.TorchBackend.predict_features`): the maps are then read from
            them with the head's weights, without a second forward pass.

    Returns:
        One :class:`Explanation` per image; empty ones when localization is not available.
    """
    count = len(views)
    explanations = [Explanation() for _ in range(count)]
    if not localization_available() or count == 0:
        return explanations
    limits = np.asarray(thresholds, dtype=np.float64)
    positive = np.asarray(probabilities, dtype=np.float64) >= limits[None, :]
    mapped = [index for index in range(count) if all_maps or positive[index].any()]
    if not mapped:
        return explanations
    if features is not None:
        maps = _heatmaps(_PrecomputedFeatures(model, features[mapped]), tensors[mapped], None, HEATMAP_METHOD)
    elif lock is not None:
        with lock:
            maps = _heatmaps(model, tensors[mapped], None, HEATMAP_METHOD)
    else:
        maps = _heatmaps(model, tensors[mapped], None, HEATMAP_METHOD)
    threshold_map = dict(zip(FINDINGS, (float(t) for t in limits), strict=True))
    rules = _rules_for(model)
    for row, index in enumerate(mapped):
        image_maps = {name: maps[row, k] for k, name in enumerate(FINDINGS)}
        names = [name for k, name in enumerate(FINDINGS) if positive[index, k]]
        kept = FINDINGS if all_maps else names
        explanations[index].maps = {name: np.ascontiguousarray(image_maps[name]) for name in kept}
        if names:
            explanations[index].findings = _describe(
                probabilities[index],
                {name: image_maps[name] for name in names},
                threshold_map,
                views[index],
                rules,
            )
    return explanations


class _PrecomputedFeatures(torch.nn.Module):
    """A CheXNet stand-in for CAM: its ``forward_features`` returns feature maps computed during inference.

    CAM needs only the last feature map and the linear head's weights (Zhou et al. 2016), both of which the
    inference pass already has; this spares screening a second forward pass per explained batch.
    """

    def __init__(self, model: torch.nn.Module, features: torch.Tensor):
        super().__init__()
        # Only the head is held: ``heatmaps`` switches its model's mode, which must not reach the real model.
        self.classifier = model.classifier
        self.features = features
        self.train(model.training)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] != self.features.shape[0]:
            raise ValueError(f"{images.shape[0]} images but feature maps of {self.features.shape[0]}")
        return self.features


def _describe(
    probabilities: np.ndarray,
    maps: dict[str, np.ndarray],
    thresholds: dict[str, float],
    view: ImageView,
    rules: Any,
) -> dict[str, FindingExplanation]:
    height, width = view.display.shape
    scale_x = view.original_size[0] / width
    scale_y = view.original_size[1] / height
    spacing = None
    if view.pixel_spacing_mm is not None:
        # The display rendition's pixels are larger than the original's by the scale factors.
        spacing = (view.pixel_spacing_mm[0] * scale_y, view.pixel_spacing_mm[1] * scale_x)
    descriptions = _describe_findings(
        {name: float(p) for name, p in zip(FINDINGS, probabilities, strict=True)},
        maps,
        view.display,
        thresholds,
        view_position=view.view_position,
        pixel_spacing_mm=spacing,
        rules=rules,
    )
    result = {}
    for description in descriptions:
        box = _original_box(description.box, scale_x, scale_y) if description.box is not None else None
        data = description.to_json_dict()
        data["box"] = list(box) if box is not None else None
        for focus in data.get("foci", []):
            focus["box"] = list(_original_box(focus["box"], scale_x, scale_y))
        data["view"] = description.view
        data["view_assumed"] = bool(description.view_assumed)
        result[description.finding] = FindingExplanation(sentence=description.sentence, data=data, box=box)
    return result


def _original_box(box: Sequence[float], scale_x: float, scale_y: float) -> tuple[int, int, int, int]:
    """A display-rendition box ``[x, y, w, h]`` in whole original-image pixels."""
    x, y, w, h = box
    return (
        max(0, round(x * scale_x)),
        max(0, round(y * scale_y)),
        max(1, round(w * scale_x)),
        max(1, round(h * scale_y)),
    )


def map_to_png(heatmap: np.ndarray) -> bytes:
    """A heatmap as an 8-bit grayscale PNG (0 = not salient, 255 = most salient)."""
    values = np.rint(np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def map_from_png(path: str | Path) -> np.ndarray:
    """Read a heatmap written by :func:`map_to_png` back as float32 in [0, 1]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255.0)


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes under a temporary name in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
