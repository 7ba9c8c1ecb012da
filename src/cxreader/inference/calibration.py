"""Applying a fitted calibration of per-finding probabilities: temperature scaling or isotonic knots.

This is the *application* side: what a checkpoint stores and what every model call uses to turn the model's
sigmoid outputs into calibrated probabilities. The *fitting* side (the temperature by maximum likelihood, the
isotonic regression, the cross-validated choice between them) lives in :mod:`cxreader.evaluation.calibration`,
a layer above, which builds the :class:`Calibration` objects defined here.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, §4.2) divides a
finding's logit by one temperature ``T > 0``; ``T > 1`` softens over-confident probabilities. It is strictly
monotonic, so it never changes a finding's ranking of images: AUROC is unchanged. Isotonic regression
(Zadrozny & Elkan, "Transforming classifier scores into accurate multiclass probability estimates", KDD 2002)
maps probabilities through a non-decreasing piecewise-linear function given by its knots; it may merge
nearby scores into ties.

Both work from probabilities: the logit is ``log(p / (1 - p))`` with ``p`` clipped to ``[1e-12, 1 - 1e-12]``.

A :class:`Calibration` is small and serialisable (:meth:`Calibration.to_json`): per finding the method, the
temperature and, for isotonic, its knots, so it travels inside a checkpoint's contract
(``CheckpointContract.calibration``) and in an ONNX export's metadata; :func:`contract_calibration` reads it
back for the model runner (:mod:`cxreader.inference.backends`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, logit

from cxreader.errors import CheckpointError
from cxreader.models.checkpoint import CheckpointContract

#: The ``format`` field of :meth:`Calibration.to_json`; bump it when the layout changes.
CALIBRATION_FORMAT = "cxreader.calibration/1"
TEMPERATURE = "temperature"
ISOTONIC = "isotonic"
IDENTITY = "identity"
METHODS = (TEMPERATURE, ISOTONIC, IDENTITY)
#: Probabilities are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before taking logits (0 and 1 have none).
LOGIT_EPS = 1e-12


def probability_to_logit(probs: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]``; order-preserving."""
    return logit(np.clip(np.asarray(probs, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities ``sigmoid(logit(p) / T)`` (Guo et al. 2017)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return expit(probability_to_logit(probs) / temperature)


def apply_isotonic(probs: np.ndarray, knots_x: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    """Map probabilities through isotonic knots: linear between knots, the end values beyond them (the same
    as ``IsotonicRegression.predict`` with ``out_of_bounds="clip"``)."""
    return np.interp(np.asarray(probs, dtype=np.float64), knots_x, knots_y)


@dataclass(frozen=True)
class FindingCalibration:
    """The calibration of one finding.

    Attributes:
        method: ``"temperature"``, ``"isotonic"`` or ``"identity"``.
        temperature: The fitted temperature (1.0 for ``identity``); kept for ``isotonic`` too.
        knots_x, knots_y: Isotonic knots (empty unless ``method == "isotonic"``).
        n: Validation images with a known label.
        positives: Their positives.
        reason: Why this method was chosen, in words.
        cross_validated: Out-of-fold ``{"nll", "ece"}`` of each compared method (empty when not compared).
    """

    method: str
    temperature: float = 1.0
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    n: int = 0
    positives: int = 0
    reason: str = ""
    cross_validated: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown calibration method {self.method!r}; expected one of {', '.join(METHODS)}"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if self.method == ISOTONIC:
            x, y = np.asarray(self.knots_x), np.asarray(self.knots_y)
            if x.size == 0 or x.shape != y.shape:
                raise ValueError("isotonic calibration needs knots_x and knots_y of one non-zero length")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) or y.min() < 0 or y.max() > 1:
                raise ValueError("isotonic knots must be non-decreasing, with y in [0, 1]")

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of this finding."""
        if self.method == TEMPERATURE:
            return apply_temperature(probs, self.temperature)
        if self.method == ISOTONIC:
            return apply_isotonic(probs, np.asarray(self.knots_x), np.asarray(self.knots_y))
        return np.asarray(probs, dtype=np.float64).copy()

    def to_json(self) -> dict[str, Any]:
        """JSON scalars and lists only: plain Python numbers, never NumPy scalars (a checkpoint's contract is
        read back with ``torch.load(weights_only=True)``, which refuses them)."""
        data: dict[str, Any] = {
            "method": self.method,
            "temperature": float(self.temperature),
            "n": int(self.n),
            "positives": int(self.positives),
            "reason": str(self.reason),
            "cross_validated": {
                str(name): {str(key): float(value) for key, value in scores.items()}
                for name, scores in self.cross_validated.items()
            },
        }
        if self.method == ISOTONIC:
            data["isotonic"] = {"x": [float(x) for x in self.knots_x], "y": [float(y) for y in self.knots_y]}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FindingCalibration:
        """The inverse of :meth:`to_json`; raises ``ValueError`` on a malformed entry."""
        knots = data.get("isotonic") or {}
        return cls(
            method=str(data["method"]),
            temperature=float(data.get("temperature", 1.0)),
            knots_x=tuple(float(value) for value in knots.get("x", ())),
            knots_y=tuple(float(value) for value in knots.get("y", ())),
            n=int(data.get("n", 0)),
            positives=int(data.get("positives", 0)),
            reason=str(data.get("reason", "")),
            cross_validated={
                str(name): {str(key): float(value) for key, value in scores.items()}
                for name, scores in (data.get("cross_validated") or {}).items()
            },
        )


@dataclass(frozen=True)
class Calibration:
    """Per-finding calibration maps, in the order of ``findings``, and a record of the rule that chose them.

    Attributes:
        findings: Finding names, the column order :meth:`apply` expects.
        per_finding: One :class:`FindingCalibration` per finding.
        rule: How the methods were chosen (the fitting side's settings, e.g. ``min_isotonic_positives``,
            ``folds``, ``seed``, ``ece_bins``; see :func:`cxreader.evaluation.calibration.fit_calibration`).
            A record only: applying the calibration does not read it.
    """

    findings: tuple[str, ...]
    per_finding: tuple[FindingCalibration, ...]
    rule: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.findings) != len(self.per_finding):
            raise ValueError(f"{len(self.findings)} findings but {len(self.per_finding)} calibrations")

    @property
    def methods(self) -> dict[str, str]:
        """Finding → method."""
        return {name: entry.method for name, entry in zip(self.findings, self.per_finding, strict=True)}

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrate ``(N, K)`` probabilities whose columns are :attr:`findings` in order (float64)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.findings):
            raise ValueError(
                f"expected probabilities of shape (N, {len(self.findings)}), got {probabilities.shape}"
            )
        columns = [entry.apply(probabilities[:, k]) for k, entry in enumerate(self.per_finding)]
        return np.stack(columns, axis=1) if columns else probabilities.copy()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps`` it, or store it in a checkpoint); :meth:`from_json` reads it."""
        return {
            "format": CALIBRATION_FORMAT,
            "rule": dict(self.rule),
            "findings": [
                {"finding": name, **entry.to_json()}
                for name, entry in zip(self.findings, self.per_finding, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """Rebuild a calibration from :meth:`to_json`'s dict.

        Raises:
            ValueError: another format, or a malformed finding entry.
        """
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(
                f"not a cxreader calibration: format {data.get('format')!r}, expected {CALIBRATION_FORMAT!r}"
            )
        entries = list(data.get("findings") or [])
        try:
            return cls(
                findings=tuple(str(entry["finding"]) for entry in entries),
                per_finding=tuple(FindingCalibration.from_json(entry) for entry in entries),
                rule=dict(data.get("rule") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed calibration entry ({exc!r})") from exc


def contract_calibration(contract: CheckpointContract, *, source: str = "model") -> Calibration | None:
    """The calibration a checkpoint's (or an ONNX export's) contract carries, ``None`` when it has none.

    Raises:
        CheckpointError: the stored calibration is malformed or names other findings than the contract's
            ``labels``, in their order (its columns would be applied to the wrong outputs).
    """
    if not contract.calibration:
        return None
    try:
        calibration = Calibration.from_json(contract.calibration)
    except ValueError as exc:
        raise CheckpointError(f"{source}: unreadable calibration in its contract ({exc})") from None
    if tuple(calibration.findings) != tuple(contract.labels):
        raise CheckpointError(
            f"{source}: its calibration names {list(calibration.findings)}, not cxreader's findings in the "
            f"model's label order ({', '.join(contract.labels)})"
        )
    return calibration
