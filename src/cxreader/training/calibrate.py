"""Knowing when not to answer: fit a checkpoint's calibration, operating point and out-of-distribution detector.

The one home of this fitting. The training loop calls :func:`fit_trust` at the end of training on the best
model (:mod:`cxreader.training.engine`), and ``cxreader calibrate`` calls :func:`calibrate_checkpoint` for a
checkpoint that has none (one trained before this existed, or elsewhere). Three things are fitted, in order:

1. **Calibration** of each finding's probability on the validation split
   (:func:`cxreader.evaluation.calibration.fit_calibration`: temperature scaling, Guo et al., "On Calibration
   of Modern Neural Networks", ICML 2017; isotonic regression where its cross-validated rule picks it).
2. **Operating point**: each finding's threshold chosen on the *calibrated* validation probabilities by a
   stated rule (:mod:`cxreader.evaluation.thresholds`: Youden's J, Youden 1950, by default; F1; a target
   sensitivity or specificity). The checkpoint's ``thresholds`` become these, on the calibrated scale, and
   ``operating_point`` records the rule and the sensitivity and specificity each reached on validation.
3. **Out-of-distribution detector** of the input gate (:class:`cxreader.inference.gate.OutOfDistribution`:
   the class-agnostic Mahalanobis score of Lee et al., NeurIPS 2018): mean and Ledoit-Wolf covariance of the
   pooled last-layer features of up to ``ood_train_images`` training images (a seeded subsample, evaluation
   transform, no augmentation), threshold at the ``1 - false_alarm_rate`` quantile of the validation images'
   scores.

Each fit's wall time is logged and stored in the contract (``metrics["trust"]["seconds"]``), with those of the
two forward passes that feed them (the validation split, and the training subsample): the passes cost what
inference costs on that many images; the fits take well under a second on the demo's 240 validation images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cxreader.evaluation.calibration import fit_calibration
from cxreader.evaluation.calibration_metrics import expected_calibration_error
from cxreader.evaluation.checkpoint_eval import predict_split
from cxreader.evaluation.thresholds import (
    DEFAULT_RULE,
    FALLBACK_THRESHOLD,
    OperatingPointRule,
    operating_points,
)
from cxreader.inference.calibration import TEMPERATURE, Calibration
from cxreader.inference.gate import DEFAULT_FALSE_ALARM_RATE, OutOfDistribution
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import CheckpointContract, LoadedCheckpoint, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

#: Training images the out-of-distribution detector is fitted on, at most (a seeded subsample).
DEFAULT_OOD_TRAIN_IMAGES = 20_000


@dataclass
class TrustFit:
    """What :func:`fit_trust` fitted, and how it did on the validation split it was fitted on.

    Attributes:
        calibration: Per-finding calibration (its ``findings``: the model's label space, in output order).
        operating_point: The contract's ``operating_point`` (rule, and per finding threshold, sensitivity and
            specificity on the calibrated validation probabilities).
        ood: The out-of-distribution detector, ``None`` when it could not be fitted (too few images).
        ece_raw, ece_calibrated: ``(K,)`` validation ECE (15 bins) before and after calibration (NaN for a
            finding without known labels).
        counts: Images behind the fits (``validation``, ``train``).
        seconds: Wall time of each fit (``calibration``, ``operating_point``, ``ood``), and of the forward
            passes where the caller measured them.
    """

    calibration: Calibration
    operating_point: dict[str, Any]
    ood: OutOfDistribution | None
    ece_raw: np.ndarray
    ece_calibrated: np.ndarray
    counts: dict[str, int]
    seconds: dict[str, float]

    @property
    def findings(self) -> tuple[str, ...]:
        """The model's label space, in output order (:data:`FINDINGS` for a CheXNet model)."""
        return tuple(self.calibration.findings)

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The operating point's thresholds in :attr:`findings` order (calibrated scale)."""
        return tuple(float(self.operating_point["findings"][name]["threshold"]) for name in self.findings)

    def summary(self, fitted_by: str) -> dict[str, Any]:
        """What the contract's ``metrics["trust"]`` records: who fitted, on how many images, ECE, times."""
        return {
            "fitted_by": fitted_by,
            "images": dict(self.counts),
            "val_mean_ece_raw": _mean(self.ece_raw),
            "val_mean_ece_calibrated": _mean(self.ece_calibrated),
            "seconds": {key: round(value, 3) for key, value in self.seconds.items()},
        }

    def apply_to(self, contract: CheckpointContract, *, fitted_by: str) -> CheckpointContract:
        """A copy of ``contract`` with this calibration, operating point (its thresholds) and detector."""
        return replace(
            contract,
            calibration=self.calibration.to_json(),
            operating_point=self.operating_point,
            thresholds=self.thresholds,
            ood=self.ood.to_state() if self.ood is not None else None,
            metrics={**contract.metrics, "trust": self.summary(fitted_by)},
        )

    def table(self) -> str:
        """One line per finding: method, temperature, validation ECE before/after, the operating point."""
        width = max(19, max(len(name) for name in self.findings) + 1)
        header = (
            f"{'finding':<{width}}{'method':<12}{'T':>6}  {'ECE raw':>8}{'ECE cal':>8}  "
            f"{'threshold':>9}{'sens':>7}{'spec':>7}"
        )
        lines = [f"operating point: {self.operating_point['rule']} (validation, calibrated)", header]
        for k, (name, entry) in enumerate(zip(self.findings, self.calibration.per_finding, strict=True)):
            point = self.operating_point["findings"][name]
            temperature = f"{entry.temperature:.3f}" if entry.method == TEMPERATURE else "-"
            lines.append(
                f"{name:<{width}}{entry.method:<12}{temperature:>6}  {_fmt(self.ece_raw[k]):>8}"
                f"{_fmt(self.ece_calibrated[k]):>8}  {point['threshold']:>9.4f}"
                f"{_fmt(point['sensitivity']):>7}{_fmt(point['specificity']):>7}"
            )
        lines.append(
            f"{'mean':<{width}}{'':<12}{'':>6}  {_fmt(_mean(self.ece_raw)):>8}{_fmt(_mean(self.ece_calibrated)):>8}"
        )
        if self.ood is None:
            lines.append(
                "out-of-distribution detector: not fitted (too few images); the gate uses its rules only"
            )
        else:
            lines.append(
                f"out-of-distribution detector: Mahalanobis on {self.counts['train']} training images, "
                f"threshold {self.ood.threshold:.2f} refuses {self.ood.false_alarm_rate:.1%} of "
                f"{self.counts['validation']} validation images"
            )
        return "\n".join(lines)


def _mean(values: np.ndarray) -> float | None:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else None


def _fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def one_sided_labels(labels: np.ndarray, findings: Sequence[str]) -> dict[str, str]:
    """Finding → what its known labels lack (``"no positives"``, ``"no negatives"``, ``"no known labels"``),
    for the findings whose AUROC, calibration and threshold cannot be fitted on these labels."""
    labels = np.asarray(labels, dtype=np.float64)
    lacking = {}
    for k, name in enumerate(findings):
        known = labels[~np.isnan(labels[:, k]), k]
        if known.size == 0:
            lacking[name] = "no known labels"
        elif not (known == 1).any():
            lacking[name] = f"no positives among {known.size} known labels"
        elif not (known == 0).any():
            lacking[name] = f"no negatives among {known.size} known labels"
    return lacking


def warn_one_sided_labels(labels: np.ndarray, findings: Sequence[str], *, where: str) -> dict[str, str]:
    """Log one warning naming every finding :func:`one_sided_labels` finds; return them."""
    lacking = one_sided_labels(labels, findings)
    if lacking:
        logger.warning(
            "%s labels cannot score %d finding(s): %s. Their AUROC is undefined, their probabilities stay "
            "uncalibrated and their threshold is the default %.2f",
            where,
            len(lacking),
            "; ".join(f"{name} ({why})" for name, why in lacking.items()),
            FALLBACK_THRESHOLD,
        )
    return lacking


def fit_trust(
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    *,
    val_features: np.ndarray,
    train_features: np.ndarray,
    rule: str | OperatingPointRule = DEFAULT_RULE,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    seed: int = 0,
    findings: Sequence[str] = FINDINGS,
) -> TrustFit:
    """Fit calibration, operating point and out-of-distribution detector (module docstring).

    Every finding is fitted on the validation images whose label for it is known (NaN left out): a finding
    without positives or without negatives there keeps its raw probabilities and the default threshold
    (:data:`~cxreader.evaluation.thresholds.FALLBACK_THRESHOLD`), with a warning.

    Args:
        val_probs: ``(N, K)`` raw sigmoid probabilities of the validation images.
        val_labels: ``(N, K)`` their labels (NaN unknown).
        val_features: ``(N, C)`` their pooled features (:func:`~cxreader.inference.gate.pooled_features`).
        train_features: ``(M, C)`` pooled features of the training subsample.
        rule: The operating-point rule (``youden``, ``f1``, ``sensitivity=X``, ``specificity=X``).
        false_alarm_rate: Share of validation images the detector refuses.
        seed: Seed of the calibration's cross-validation folds.
        findings: The K output names, in order (default: the 14 :data:`FINDINGS`).

    Raises:
        ConfigError: a malformed rule.
    """
    rule = OperatingPointRule.parse(rule)
    findings = tuple(findings)
    warn_one_sided_labels(val_labels, findings, where="validation")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    calibration = fit_calibration(val_probs, val_labels, findings=findings, seed=seed)
    calibrated = calibration.apply(val_probs)
    seconds["calibration"] = time.perf_counter() - started

    started = time.perf_counter()
    point = operating_points(
        val_labels, calibrated, rule, findings=findings, scale="calibrated", split="validation"
    )
    seconds["operating_point"] = time.perf_counter() - started

    started = time.perf_counter()
    try:
        ood = OutOfDistribution.fit(train_features, val_features, false_alarm_rate=false_alarm_rate)
    except ValueError as exc:
        logger.warning("out-of-distribution detector not fitted: %s", exc)
        ood = None
    seconds["ood"] = time.perf_counter() - started
    logger.info(
        "fitted calibration in %.2f s, operating point (%s) in %.2f s, out-of-distribution detector in %.2f s",
        seconds["calibration"],
        rule,
        seconds["operating_point"],
        seconds["ood"],
    )
    return TrustFit(
        calibration=calibration,
        operating_point=point,
        ood=ood,
        ece_raw=expected_calibration_error(val_labels, val_probs),
        ece_calibrated=expected_calibration_error(val_labels, calibrated),
        counts={"validation": int(len(val_probs)), "train": int(len(train_features))},
        seconds=seconds,
    )


def calibrate_checkpoint(
    checkpoint: str | Path | LoadedCheckpoint,
    out: str | Path,
    *,
    data: str = "",
    cache: str = "",
    split_overrides: dict[str, Any] | None = None,
    rule: str | OperatingPointRule = DEFAULT_RULE,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    train_images: int = DEFAULT_OOD_TRAIN_IMAGES,
    batch_size: int = 32,
    workers: int = 2,
    seed: int = 0,
) -> TrustFit:
    """Fit calibration, operating point and detector for an existing checkpoint; write them to ``out``.

    The validation split and a training subsample are scored as ``cxreader evaluate`` scores a checkpoint's
    splits (:func:`~cxreader.evaluation.checkpoint_eval.predict_split`: rebuilt from the checkpoint's saved
    configuration, or ``split_overrides``), on the raw sigmoid outputs, so a calibrated checkpoint is
    recalibrated from scratch. ``out`` is written atomically with the same weights and the new contract (it
    may be the input file).

    Raises:
        ConfigError: a malformed rule, or splits that cannot be rebuilt.
        CheckpointError: an unreadable checkpoint.
    """
    rule = OperatingPointRule.parse(rule)
    loaded = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)
    kwargs = dict(
        data=data,
        cache=cache,
        split_overrides=split_overrides,
        batch_size=batch_size,
        workers=workers,
        calibrated=False,
        with_features=True,
    )
    started = time.perf_counter()
    val = predict_split(loaded, split="val", **kwargs)
    val_seconds = time.perf_counter() - started
    started = time.perf_counter()
    train = predict_split(loaded, split="train", limit=train_images, seed=seed, **kwargs)
    train_seconds = time.perf_counter() - started
    fit = fit_trust(
        val.probs,
        val.labels,
        val_features=val.features,
        train_features=train.features,
        rule=rule,
        false_alarm_rate=false_alarm_rate,
        seed=seed,
        findings=loaded.contract.labels,
    )
    fit.seconds.update(validation_pass=val_seconds, train_pass=train_seconds)
    contract = fit.apply_to(loaded.contract, fitted_by="cxreader calibrate")
    save_checkpoint(out, model=loaded.model, contract=contract)
    logger.info(
        "wrote %s (validation pass %.1f s, training subsample pass %.1f s)", out, val_seconds, train_seconds
    )
    return fit
