"""Probabilities with a known miscalibration, for the calibration tests (fitting and applying)."""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def overconfident(n: int, k: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z), and the probabilities of a model that outputs sigmoid(T · z)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-1.0, 2.0, size=(n, k))
    labels = (rng.random((n, k)) < expit(logits)).astype(float)
    return labels, expit(temperature * logits)


def bent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities p whose true frequency is p²: a bend no single temperature can straighten."""
    rng = np.random.default_rng(seed)
    probs = rng.random(n)
    return (rng.random(n) < probs**2).astype(float), probs
