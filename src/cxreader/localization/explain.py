"""One call from a prediction to its heatmaps and grounded descriptions (for the CLI, the API and screening)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cxreader.data.io import LoadedImage
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS
from cxreader.localization.cam import heatmaps, resolve_findings
from cxreader.localization.describe import (
    DescriptionRules,
    FindingDescription,
    describe_findings,
    rules_for,
)
from cxreader.localization.geometry import ChestGeometry, estimate_geometry
from cxreader.training.checkpoint import LoadedCheckpoint


@dataclass
class Explanation:
    """Heatmaps (input grid, [0, 1]) of the requested findings and descriptions of the positive ones."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    descriptions: list[FindingDescription] = field(default_factory=list)
    geometry: ChestGeometry | None = None


def explain(
    checkpoint: LoadedCheckpoint,
    image: LoadedImage,
    probabilities: dict[str, float],
    *,
    findings: Sequence[str] | None = None,
    method: str = "cam",
    view_position: str | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
    rules: DescriptionRules | None = None,
) -> Explanation:
    """Heatmaps for ``findings`` (default: the positive ones) and descriptions of every positive finding.

    Args:
        checkpoint: The checkpoint that produced ``probabilities`` (its contract gives the transform and
            the thresholds).
        image: The decoded image.
        probabilities: Finding -> probability for this image.
        findings: Findings to map besides the positive ones; ``None`` maps only the positive ones.
        method: ``cam`` or ``gradcam``.
        view_position, pixel_spacing_mm: Override the image's own (e.g. from the Data_Entry CSV).
        rules: The numbers of the description rules (box level included); by default those for the
            checkpoint's model (:func:`~cxreader.localization.describe.rules_for`).

    Raises:
        ConfigError: unknown finding or method.
    """
    contract = checkpoint.contract
    thresholds = dict(zip(FINDINGS, contract.thresholds, strict=True))
    missing = [name for name in FINDINGS if name not in probabilities]
    if missing:
        raise ConfigError(f"probabilities lack {', '.join(missing)}")
    positives = [name for name in FINDINGS if probabilities[name] >= thresholds[name]]
    requested = resolve_findings(findings) if findings is not None else []
    wanted = [name for name in FINDINGS if name in set(requested) | set(positives)]
    if not wanted:
        return Explanation()
    tensor = contract.eval_preset()(image.pixels)
    maps = dict(zip(wanted, heatmaps(checkpoint.model, tensor, wanted, method), strict=True))
    geometry = estimate_geometry(image.pixels)
    descriptions = describe_findings(
        probabilities,
        {name: maps[name] for name in positives},
        image,
        thresholds,
        view_position=view_position,
        pixel_spacing_mm=pixel_spacing_mm,
        geometry=geometry,
        rules=rules if rules is not None else rules_for(checkpoint.model),
    )
    shown = set(requested) if findings is not None else set(positives)
    return Explanation(
        maps={name: maps[name] for name in wanted if name in shown},
        descriptions=descriptions,
        geometry=geometry,
    )
