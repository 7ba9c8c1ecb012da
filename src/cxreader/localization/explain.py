"""From predictions to heatmaps and grounded descriptions, for a batch of images or one (CLI, screening, API).

Class activation maps (CAM: Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016,
as CheXNet drew them, Rajpurkar et al. 2017) or Grad-CAM come from :func:`~cxreader.localization.cam.heatmaps`
for a whole batch at once, and the grounded description of each positive finding from
:func:`~cxreader.localization.describe.describe_findings`. A description may be computed on a smaller
rendition of the image (screening keeps one whose longer side is at most 1,024 pixels, so a 4,000-pixel DICOM
costs no more than a 1,000-pixel one) while its boxes and sizes are given in the original image's pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cxreader.data.io import LoadedImage
from cxreader.errors import ConfigError
from cxreader.inference.backends import ModelBackend
from cxreader.inference.predict import FilePrediction
from cxreader.labels import positive_findings
from cxreader.localization.cam import heatmaps, resolve_findings
from cxreader.localization.describe import DescriptionRules, FindingDescription, describe_findings, rules_for


@dataclass(frozen=True)
class ImageView:
    """What a description needs to know about an image besides its heatmaps.

    Attributes:
        pixels: The image, or a smaller rendition of it (grayscale, bone bright): the chest geometry is
            estimated on it.
        original_size: ``(width, height)`` of the original image; boxes are given in its pixels.
        view_position: DICOM ViewPosition, ``None`` when unknown (PA is then assumed).
        pixel_spacing_mm: ``(row, column)`` spacing of the original pixels in mm, when known.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    view_position: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None


@dataclass
class Explanation:
    """The heatmaps and descriptions of one image.

    Attributes:
        maps: Finding -> float32 map in [0, 1] at the model's input size, 1 = most salient.
        descriptions: The grounded descriptions of the positive findings, most probable first, boxes in the
            original image's pixels.
    """

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    descriptions: list[FindingDescription] = field(default_factory=list)


def explain_batch(
    backend: ModelBackend,
    tensors: torch.Tensor,
    probabilities: np.ndarray,
    views: Sequence[ImageView],
    *,
    findings: str | Sequence[str] | None = None,
    method: str = "cam",
    rules: DescriptionRules | None = None,
    features: torch.Tensor | None = None,
) -> list[Explanation]:
    """Heatmaps and descriptions for a batch of images the backend has classified.

    Args:
        backend: The PyTorch backend that produced ``probabilities``; its contract gives the label order and
            the thresholds, and its lock is held around the forward pass of the maps (the service shares one
            model between threads).
        tensors: The normalised batch ``(B, 3, S, S)`` it was given.
        probabilities: ``(B, K)`` probabilities in the backend's label order
            (:attr:`~cxreader.inference.backends.ModelBackend.labels`).
        views: One :class:`ImageView` per image.
        findings: The findings whose maps are kept: ``None`` for each image's positive findings (an image
            without one is not mapped at all); ``"all"`` or a list of names for those of every image (the
            service keeps all of them, so that a clinician can look at any finding). The descriptions are those
            of the positive findings either way.
        method: ``cam`` or ``gradcam``.
        rules: The numbers of the description rules; by default those for the backend's model
            (:func:`~cxreader.localization.describe.rules_for`).
        features: The feature maps ``(B, C, h, w)`` the backend computed for ``tensors`` while predicting
            (:meth:`~cxreader.inference.backends.TorchBackend.predict_features`): CAM is then read from them
            with the head's weights, without a second forward pass.

    Returns:
        One :class:`Explanation` per image.

    Raises:
        ConfigError: a backend without a PyTorch model (ONNX Runtime), an unknown finding or method.
    """
    model = backend.model
    if model is None:
        raise ConfigError(
            "heatmaps and descriptions need a PyTorch checkpoint: they read the model's feature map "
            f"(this backend: {backend.kind})"
        )
    labels = backend.labels
    thresholds = backend.contract.thresholds
    if probabilities.shape[-1] != len(labels):
        raise ConfigError(
            f"{probabilities.shape[-1]} probabilities per image for a model of {len(labels)} labels"
        )
    rules = rules if rules is not None else rules_for(model)
    requested = set(resolve_findings(findings, labels)) if findings is not None else None
    positives = [positive_findings(row, thresholds, labels) for row in probabilities]
    kept = [
        [name for name in labels if name in requested] if requested is not None else names
        for names in positives
    ]
    explanations = [Explanation() for _ in views]
    mapped = [index for index in range(len(views)) if kept[index] or positives[index]]
    if not mapped:
        return explanations
    wanted = [name for name in labels if any(name in kept[i] or name in positives[i] for i in mapped)]
    if features is not None and method == "cam":
        maps = heatmaps(
            _PrecomputedFeatures(model, features[mapped]), tensors[mapped], wanted, method, labels=labels
        )
    else:
        with backend.lock:
            maps = heatmaps(model, tensors[mapped], wanted, method, labels=labels)
    limits = dict(zip(labels, thresholds, strict=True))
    for row, index in enumerate(mapped):
        image_maps = dict(zip(wanted, maps[row], strict=True))
        view = views[index]
        explanations[index] = Explanation(
            maps={name: np.ascontiguousarray(image_maps[name]) for name in kept[index]},
            descriptions=describe_findings(
                dict(zip(labels, (float(p) for p in probabilities[index]), strict=True)),
                {name: image_maps[name] for name in positives[index]},
                view.pixels,
                limits,
                view_position=view.view_position,
                pixel_spacing_mm=view.pixel_spacing_mm,
                original_size=view.original_size,
                rules=rules,
            ),
        )
    return explanations


def explain(
    backend: ModelBackend,
    image: LoadedImage,
    probabilities: Mapping[str, float],
    *,
    findings: str | Sequence[str] | None = None,
    method: str = "cam",
    view_position: str | None = None,
    rules: DescriptionRules | None = None,
) -> Explanation:
    """Heatmaps and descriptions of one decoded image: :func:`explain_batch` for a batch of one.

    Args:
        backend: The PyTorch backend that produced ``probabilities``.
        image: The decoded image.
        probabilities: Finding -> probability for this image, for every label of the backend's model.
        findings, method, rules: As for :func:`explain_batch`.
        view_position: Overrides the image's own (e.g. from the Data_Entry CSV).

    Raises:
        ConfigError: probabilities without all of the model's findings; see :func:`explain_batch`.
    """
    labels = backend.labels
    missing = [name for name in labels if name not in probabilities]
    if missing:
        raise ConfigError(f"probabilities lack {', '.join(missing)}")
    height, width = image.pixels.shape[:2]
    view = ImageView(
        pixels=image.pixels,
        original_size=(width, height),
        view_position=view_position or image.view_position,
        pixel_spacing_mm=image.pixel_spacing_mm,
    )
    row = np.asarray([[probabilities[name] for name in labels]], dtype=np.float64)
    tensors = backend.transform(image.pixels)[None]
    [explanation] = explain_batch(
        backend, tensors, row, [view], findings=findings, method=method, rules=rules
    )
    return explanation


def describe_predictions(backend: ModelBackend, results: Sequence[FilePrediction]) -> None:
    """Attach the grounded descriptions of the positive findings to each readable result (``--describe``).

    Args:
        backend: The backend that predicted ``results`` (a PyTorch one: descriptions read its heatmaps).
        results: Predictions that kept their images (``Predictor.predict_files(..., keep_images=True)``).

    Raises:
        ConfigError: a backend without a PyTorch model.
    """
    for result in results:
        if result.read:
            explanation = explain(backend, result.image, result.probabilities)
            result.descriptions = [item.to_json_dict() for item in explanation.descriptions]


class _PrecomputedFeatures(torch.nn.Module):
    """A CheXNet stand-in for CAM: its ``forward_features`` returns feature maps computed during inference.

    CAM needs only the last feature map and the linear head's weights (Zhou et al. 2016), both of which the
    inference pass already has; this spares screening and the service a second forward pass per batch.
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
