"""The input gate: whether an image is one the model may read, and if not, why.

A CheXNet model was trained on frontal chest radiographs; on anything else (a CT slice, a lateral view, a
photograph, a 1 x 1 pixel file) it still returns a probability per finding, and they mean nothing. Every reader of images
(predict, screen, the service) asks the gate first and keeps its verdict with the result; a refused image gets
no findings, only "not read: REASON".

**Rules** (:func:`rule_reasons`), from the file and its pixels:

* DICOM Modality, when present, must be a projection radiograph (:data:`RADIOGRAPH_MODALITIES`);
* DICOM BodyPartExamined, when present, must name the chest (:data:`CHEST_BODY_PARTS`);
* the view must not be lateral (DICOM ViewPosition, or the view a label table gives; :data:`LATERAL_VIEWS`);
* the short side must be at least half the model's input side (:data:`MIN_SIDE_FRACTION`: upsampling more than
  2x invents detail), and the long side at most :data:`MAX_ASPECT` times the short one (chest films are 14 x 17
  or 17 x 17 inches, ratios 1.0 to 1.25; an exported strip or a banner is not one);
* a colour image must be grey in effect (R = G = B up to :data:`MAX_COLOUR_SPREAD`): radiographs have no
  colour, photographs and screenshots do;
* the image must not be nearly constant (the 1st to 99th percentile range of its grey values at least
  :data:`MIN_CONTRAST`): a blank or saturated frame holds no anatomy.

**Learned out-of-distribution score** (:class:`OutOfDistribution`): the Mahalanobis distance of the image's
pooled last-layer features from their mean over the training images, with a shared covariance estimated with
Ledoit-Wolf shrinkage (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
Adversarial Attacks", NeurIPS 2018, in its class-agnostic form; Ledoit and Wolf, J. Multivariate Anal. 2004).
Its threshold is the distance that a stated share of the *validation* images exceed (1% by default), so about
1% of in-distribution images are refused by it. It is fitted at the end of training and stored in the
checkpoint's contract; a checkpoint without it is gated by the rules alone, and says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cxreader.data.io import LoadedImage
from cxreader.models.checkpoint import CheckpointContract

logger = logging.getLogger(__name__)

#: DICOM Modality values of projection radiographs: CR, DX, DR (written by some systems though not a defined
#: term) and RG. Files without a Modality (PNG, JPEG) pass this rule.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
#: Words of a BodyPartExamined value that name the chest (CHEST, THORAX, "PORTABLE CHEST", LUNG, ...).
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "THORAC")
#: View positions of a lateral projection (DICOM LL / RL, and the spellings of label tables).
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT", "L"})
#: Shortest side accepted, as a fraction of the model's input side.
MIN_SIDE_FRACTION = 0.5
#: Largest long-side / short-side ratio accepted.
MAX_ASPECT = 2.0
#: Largest :attr:`~cxreader.data.io.LoadedImage.colour_spread` of an image that is grey in effect.
MAX_COLOUR_SPREAD = 0.04
#: Smallest 1st-to-99th percentile range of the grey values in [0, 1].
MIN_CONTRAST = 0.05
#: Share of validation images the out-of-distribution threshold refuses, by default.
DEFAULT_FALSE_ALARM_RATE = 0.01
_CONTRAST_SAMPLE = 1 << 16


@dataclass(frozen=True)
class GateVerdict:
    """The gate's answer for one image.

    Attributes:
        accepted: The model may read it.
        reasons: Why not, one short sentence each (empty when accepted).
        score: The out-of-distribution score (Mahalanobis distance), when the checkpoint carries the detector.
        threshold: The score above which an image is refused.
    """

    accepted: bool
    reasons: tuple[str, ...] = ()
    score: float | None = None
    threshold: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "score": self.score,
            "threshold": self.threshold,
        }


def rule_reasons(image: LoadedImage, *, input_size: int, view: str | None = None) -> list[str]:
    """The rules the image breaks (see the module docstring); empty when it passes them all.

    Args:
        image: The decoded image (its pixels, grey values in [0, 1]) and what its file says.
        input_size: The model's input side in pixels.
        view: The view a label table gives (NIH's ``View Position``), when the file says none.
    """
    reasons = []
    metadata = image.metadata
    modality = (metadata.get("Modality") or "").strip().upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        reasons.append(
            f"modality {modality} is not a projection radiograph (accepted: {', '.join(sorted(RADIOGRAPH_MODALITIES))})"
        )
    body_part = (metadata.get("BodyPartExamined") or "").strip().upper()
    if body_part and not any(word in body_part for word in CHEST_BODY_PARTS):
        reasons.append(f"body part {body_part} is not the chest")
    position = (image.view_position or view or "").strip().upper()
    if position in LATERAL_VIEWS:
        reasons.append(f"lateral view ({position}): the model reads frontal (PA/AP) radiographs only")
    pixels = image.pixels
    if pixels.size:
        height, width = pixels.shape
        short, long = min(width, height), max(width, height)
        minimum = max(1, int(np.ceil(MIN_SIDE_FRACTION * input_size)))
        if short < minimum:
            reasons.append(
                f"image too small ({width} x {height} px; the short side must be at least {minimum} px)"
            )
        elif long / short > MAX_ASPECT:
            reasons.append(
                f"aspect ratio {long / short:.1f}:1 is not a chest film's ({width} x {height} px; at most {MAX_ASPECT:g}:1)"
            )
    if image.colour_spread > MAX_COLOUR_SPREAD:
        reasons.append(f"a colour image (channel spread {image.colour_spread:.2f}): radiographs are grey")
    if pixels.size:
        contrast = _contrast(pixels)
        if contrast < MIN_CONTRAST:
            reasons.append(
                f"nearly constant image (grey-value range {contrast:.3f}, at least {MIN_CONTRAST:g} needed)"
            )
    return reasons


def _contrast(pixels: np.ndarray) -> float:
    step = max(1, int(np.ceil(np.sqrt(pixels.size / _CONTRAST_SAMPLE))))
    low, high = np.percentile(pixels[::step, ::step], [1.0, 99.0])
    return float(high - low)


def pooled_features(features: torch.Tensor) -> np.ndarray:
    """Global average pool of feature maps ``(B, C, h, w)`` (after the final ReLU), as float64 ``(B, C)``."""
    return torch.relu(features.float()).mean(dim=(2, 3)).double().cpu().numpy()


@dataclass(frozen=True, eq=False)
class OutOfDistribution:
    """The class-agnostic Mahalanobis detector (see the module docstring).

    Attributes:
        mean: Mean pooled feature vector of the training images ``(C,)``.
        precision: Inverse of the shrunk covariance ``(C, C)``.
        threshold: Distances above it are refused.
        false_alarm_rate: Share of validation images above the threshold when it was set.
        fitted_on: How many training and validation images it was fitted on.
    """

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    fitted_on: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        train_features: np.ndarray,
        validation_features: np.ndarray,
        *,
        false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    ) -> OutOfDistribution:
        """Estimate mean and shrunk covariance on the training features; set the threshold on validation.

        Raises:
            ValueError: fewer than two training or one validation image, or a rate outside (0, 1).
        """
        from sklearn.covariance import LedoitWolf

        if len(train_features) < 2 or len(validation_features) < 1:
            raise ValueError("the detector needs at least 2 training and 1 validation images")
        if not 0.0 < false_alarm_rate < 1.0:
            raise ValueError(f"the false-alarm rate must be in (0, 1), got {false_alarm_rate}")
        estimate = LedoitWolf().fit(np.asarray(train_features, dtype=np.float64))
        detector = cls(
            mean=estimate.location_,
            precision=estimate.precision_,
            threshold=float("inf"),
            false_alarm_rate=false_alarm_rate,
            fitted_on={"train": len(train_features), "validation": len(validation_features)},
        )
        distances = detector.score(validation_features)
        threshold = float(np.quantile(distances, 1.0 - false_alarm_rate))
        return cls(detector.mean, detector.precision, threshold, false_alarm_rate, detector.fitted_on)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` ``(N, C)`` from the training mean."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        squared = np.einsum("nc,cd,nd->n", centred, self.precision, centred)
        return np.sqrt(np.maximum(squared, 0.0))

    @classmethod
    def from_contract(cls, contract: CheckpointContract) -> OutOfDistribution | None:
        """The detector a checkpoint's contract carries, or ``None`` when it has none."""
        return cls.from_state(contract.ood) if contract.ood else None

    def to_state(self) -> dict[str, Any]:
        """What a checkpoint stores (tensors for the arrays)."""
        return {
            "method": "mahalanobis",
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "precision": torch.from_numpy(self.precision.astype(np.float32)),
            "threshold": self.threshold,
            "false_alarm_rate": self.false_alarm_rate,
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OutOfDistribution:
        def array(value: Any) -> np.ndarray:
            return (
                value.double().numpy()
                if isinstance(value, torch.Tensor)
                else np.asarray(value, dtype=np.float64)
            )

        return cls(
            mean=array(state["mean"]),
            precision=array(state["precision"]),
            threshold=float(state["threshold"]),
            false_alarm_rate=float(state.get("false_alarm_rate", DEFAULT_FALSE_ALARM_RATE)),
            fitted_on=dict(state.get("fitted_on", {})),
        )


class InputGate:
    """The gate of one model: the rules, and its out-of-distribution detector when the checkpoint has one."""

    def __init__(self, *, input_size: int, detector: OutOfDistribution | None, name: str = "model"):
        self.input_size = input_size
        self.detector = detector
        if detector is None:
            logger.info(
                "%s carries no out-of-distribution detector: images are gated by the rules only", name
            )

    def rules(self, image: LoadedImage, *, view: str | None = None) -> list[str]:
        return rule_reasons(image, input_size=self.input_size, view=view)

    def verdicts(self, reasons: Sequence[Sequence[str]], features: torch.Tensor | None) -> list[GateVerdict]:
        """Combine each image's broken rules with its out-of-distribution score (from the forward pass)."""
        scores: list[float | None] = [None] * len(reasons)
        threshold = None
        if self.detector is not None and features is not None:
            scores = [float(value) for value in self.detector.score(pooled_features(features))]
            threshold = self.detector.threshold
        verdicts = []
        for broken, score in zip(reasons, scores, strict=True):
            why = list(broken)
            if score is not None and threshold is not None and score > threshold:
                why.append(
                    f"unlike the images the model was trained on (out-of-distribution score {score:.1f} > {threshold:.1f})"
                )
            verdicts.append(
                GateVerdict(accepted=not why, reasons=tuple(why), score=score, threshold=threshold)
            )
        return verdicts
