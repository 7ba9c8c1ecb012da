"""Where and what: class activation heatmaps, boxes, the IoBB evaluation and grounded descriptions.

* :mod:`~cxreader.localization.cam`: CAM (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017) at input size.
* :mod:`~cxreader.localization.boxes`: boxes from heatmaps and the accuracy table of Wang et al. 2017.
* :mod:`~cxreader.localization.geometry`: a lung-field estimate from intensity profiles.
* :mod:`~cxreader.localization.describe`: side, zone, organ, extent, size and severity in words.
* :mod:`~cxreader.localization.overlay`: overlay PNGs.
* :mod:`~cxreader.localization.evaluation`: ``localize-eval`` over a box file.
* :mod:`~cxreader.localization.explain`: from a prediction to its maps and descriptions in one call.
"""

from __future__ import annotations

from cxreader.localization.boxes import (
    BOXED_FINDINGS,
    DEFAULT_BOX_THRESHOLD,
    IOBB_THRESHOLDS,
    Box,
    boxes_from_heatmap,
    iobb,
    iou,
)
from cxreader.localization.cam import METHODS, heatmaps
from cxreader.localization.describe import FindingDescription, describe_findings
from cxreader.localization.explain import Explanation, explain
from cxreader.localization.geometry import ChestGeometry, estimate_geometry, fixed_geometry

__all__ = [
    "BOXED_FINDINGS",
    "DEFAULT_BOX_THRESHOLD",
    "IOBB_THRESHOLDS",
    "METHODS",
    "Box",
    "ChestGeometry",
    "Explanation",
    "FindingDescription",
    "boxes_from_heatmap",
    "describe_findings",
    "estimate_geometry",
    "explain",
    "fixed_geometry",
    "heatmaps",
    "iobb",
    "iou",
]
