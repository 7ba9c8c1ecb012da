"""The separate foci of a focal finding's heatmap: several nodules are several places, not one.

A heatmap of an image with three nodules has three peaks; one side and one zone for all of them (the
finding-level description) hides two. For the findings that come as discrete round opacities
(:data:`FOCAL_FINDINGS`), the involved region (the map at the description's region level) is split into its
8-connected components (those of :func:`~cxreader.localization.boxes.boxes_from_heatmap`, Wang et
al. 2017), and every component holding at least ``share`` of the heaviest one's heatmap mass is a focus.
Lighter components are the spill-over of one focus onto a neighbouring vessel or rib crossing, not another
lesion.

The level (the region level, 0.7) and the share (0.3) were chosen on the TRAINING and validation true-positive
nodules of the demo model against the synthetic sidecar (``benchmarks/BENCHMARKS.md``, "Multifocal findings").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxreader.localization.boxes import Box, component_boxes

#: Findings described focus by focus when their map shows more than one (a lung lesion of the harmonised label
#: space is a nodule or a mass whose label does not say which).
FOCAL_FINDINGS = ("Nodule", "Mass", "Lung_Lesion")
#: A component holding less than this share of the heaviest component's map mass is not a focus of its own.
FOCUS_SHARE = 0.3


@dataclass(frozen=True)
class Focus:
    """One focus on the heatmap's grid: its map-weighted centre and its box."""

    centre_x: float
    centre_y: float
    box: Box


def foci_of(values: np.ndarray, level: float, share: float = FOCUS_SHARE) -> list[Focus]:
    """The foci of ``values >= level`` (module docstring), heaviest first; empty when nothing reaches it.

    Args:
        values: ``(H, W)`` heatmap in [0, 1] (already restricted to the thorax by the caller).
        level: Heatmap level of the involved region.
        share: Smallest share of the heaviest component's mass that makes a focus.
    """
    values = np.asarray(values, dtype=np.float64)
    labels, boxes = component_boxes(values, level)
    if not boxes:
        return []
    weights = np.where(labels > 0, values, 0.0)
    masses = np.bincount(labels.ravel(), weights=weights.ravel())[1:]
    centres = ndimage.center_of_mass(weights, labels, np.arange(1, len(boxes) + 1))
    foci = []
    for index in np.argsort(-masses, kind="stable"):
        if masses[index] < share * masses.max():
            break
        centre_y, centre_x = centres[index]
        foci.append(Focus(float(centre_x) + 0.5, float(centre_y) + 0.5, boxes[index]))
    return foci
