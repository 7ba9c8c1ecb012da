"""Boxes from heatmaps and the localization accuracy of Wang et al. 2017.

Wang et al., "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised
Classification and Localization of Common Thorax Diseases", CVPR 2017, section 4.3:

* **Boxes from a heatmap**: the map (here in [0, 1]) is thresholded and a box is drawn around each
  connected component of the binary map (8-connectivity). Wang et al. thresholded at fixed levels of the
  0-255 map; the level here is a parameter (:data:`DEFAULT_BOX_THRESHOLD`, chosen on validation data).
  Components smaller than :data:`MIN_COMPONENT_FRACTION` of the largest one are dropped (specks at the
  threshold's edge), and boxes come back sorted by their peak value, most salient first.
* **IoBB**, intersection over the detected box, ``|A_gt ∩ B_pred| / |B_pred|``, Wang et al.'s measure: a
  ground-truth box counts as localized at ``T(IoBB)`` when some predicted box of its image and finding has
  IoBB > T. The table reports that accuracy at T = 0.1, 0.25, 0.5, 0.75, 0.9 for each of the 8 boxed
  findings, the average number of false-positive boxes per image (AFP: predicted boxes that localize no
  ground-truth box at T), and the mean IoU (intersection over union) of each ground-truth box with its
  best-overlapping predicted box.

Coordinates: a :class:`Box` is ``(x, y, w, h)`` with ``(x, y)`` the top-left corner, in pixels of the ORIGINAL
image (the ``BBox_List_2017.csv`` convention). A heatmap lives on the model's input grid (e.g. 224 x 224 after
resizing the whole image); :func:`boxes_from_heatmap` scales its boxes by ``original / input`` on each axis,
taking each image's own size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cxreader.labels import BOXED_FINDINGS

#: The T(IoBB) levels of Wang et al. 2017, Table 3.
IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: Heatmap level (maps in [0, 1]) for boxes, by the pooling of the model's head, each chosen on the synthetic
#: validation split of a demo model by mean Acc@T(IoBB)=0.25 (``benchmarks/BENCHMARKS.md``). Average pooling
#: (CheXNet) gets the higher level: its flatter maps give small boxes around the peak the better IoBB.
BOX_THRESHOLD_BY_POOLING = {"lse": 0.7, "avg": 0.9}
#: The level of the demo recipe's models (log-sum-exp pooling).
DEFAULT_BOX_THRESHOLD = BOX_THRESHOLD_BY_POOLING["lse"]
#: Components whose area is below this fraction of the largest component's are dropped.
MIN_COMPONENT_FRACTION = 0.1

#: Connectivity of heatmap components: diagonal neighbours connect.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def box_threshold_for(model: object) -> float:
    """The box level for a model's maps (:data:`BOX_THRESHOLD_BY_POOLING`; average pooling when unknown)."""
    return BOX_THRESHOLD_BY_POOLING.get(getattr(model, "pooling", "avg"), BOX_THRESHOLD_BY_POOLING["avg"])


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``(x, y, w, h)`` in pixels, top-left corner first; ``score`` = peak heatmap value."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    def scaled(self, sx: float, sy: float) -> Box:
        return Box(self.x * sx, self.y * sy, self.w * sx, self.h * sy, self.score)

    def to_list(self) -> list[float]:
        """``[x, y, w, h]`` rounded to 0.1 pixel, for JSON."""
        return [round(float(value), 1) for value in (self.x, self.y, self.w, self.h)]


def intersection(a: Box, b: Box) -> float:
    """Area of the overlap of two boxes."""
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return max(width, 0.0) * max(height, 0.0)


def iobb(ground_truth: Box, predicted: Box) -> float:
    """Intersection over the detected (predicted) box, Wang et al. 2017: ``|gt ∩ pred| / |pred|``."""
    area = predicted.area
    return intersection(ground_truth, predicted) / area if area > 0 else 0.0


def iou(a: Box, b: Box) -> float:
    """Intersection over union."""
    inter = intersection(a, b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def boxes_from_heatmap(
    heatmap: np.ndarray,
    threshold: float = DEFAULT_BOX_THRESHOLD,
    *,
    original_size: tuple[int, int] | None = None,
    max_boxes: int | None = None,
) -> list[Box]:
    """Boxes around the connected components of ``heatmap >= threshold`` (Wang et al. 2017).

    Args:
        heatmap: ``(H, W)`` map in [0, 1] on the model's input grid.
        threshold: Level that makes the binary map.
        original_size: ``(width, height)`` of the original image; boxes are scaled to it. ``None`` keeps the
            heatmap's own pixels.
        max_boxes: Keep at most this many boxes (the most salient); ``None`` keeps all.

    Returns:
        Boxes in original-image pixels, most salient (highest peak) first; empty when nothing reaches the
        threshold.
    """
    values = np.asarray(heatmap, dtype=np.float32)
    labels, components = component_boxes(values, threshold)
    if not components:
        return []
    height, width = values.shape
    areas = np.bincount(labels.ravel())[1:]
    sx = original_size[0] / width if original_size else 1.0
    sy = original_size[1] / height if original_size else 1.0
    boxes = [
        box.scaled(sx, sy)
        for box, area in zip(components, areas, strict=True)
        if area >= MIN_COMPONENT_FRACTION * areas.max()
    ]
    boxes.sort(key=lambda box: -box.score)
    return boxes[:max_boxes] if max_boxes is not None else boxes


def component_boxes(values: np.ndarray, level: float) -> tuple[np.ndarray, list[Box]]:
    """The 8-connected components of ``values >= level`` (also the foci of :mod:`.foci`).

    Returns:
        The label image (0 = below the level, ``k`` = component ``k``) and the box of each component in
        label order, on the map's own grid, scored by the component's peak value.
    """
    if values.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {values.shape}")
    labels, count = ndimage.label(values >= level, structure=EIGHT_CONNECTED)
    peaks = ndimage.maximum(values, labels, np.arange(1, count + 1))
    boxes = []
    for (rows, cols), peak in zip(ndimage.find_objects(labels), peaks, strict=True):
        boxes.append(Box(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start, float(peak)))
    return labels, boxes


@dataclass
class LocalizationCase:
    """One image and finding: its ground-truth boxes and the boxes predicted from the heatmap."""

    image: str
    finding: str
    ground_truth: list[Box]
    predicted: list[Box]


@dataclass
class FindingLocalization:
    """Wang et al.'s row for one finding."""

    finding: str
    boxes: int
    images: int
    accuracy: dict[float, float]
    afp: dict[float, float]
    mean_iou: float


@dataclass
class LocalizationResult:
    """The table: one row per boxed finding present, plus the average over them."""

    rows: list[FindingLocalization]
    box_threshold: float = DEFAULT_BOX_THRESHOLD
    method: str = "cam"
    notes: list[str] = field(default_factory=list)

    def mean_accuracy(self, t: float) -> float:
        """Accuracy at ``T(IoBB) = t`` averaged over the findings with boxes (unweighted, as Wang's table)."""
        values = [row.accuracy[t] for row in self.rows if row.boxes]
        return float(np.mean(values)) if values else float("nan")

    def mean_iou(self) -> float:
        values = [row.mean_iou for row in self.rows if row.boxes]
        return float(np.mean(values)) if values else float("nan")

    def to_json_dict(self) -> dict:
        return {
            "method": self.method,
            "box_threshold": self.box_threshold,
            "iobb_thresholds": list(IOBB_THRESHOLDS),
            "findings": {
                row.finding: {
                    "boxes": row.boxes,
                    "images": row.images,
                    "accuracy": {str(t): round(row.accuracy[t], 4) for t in IOBB_THRESHOLDS},
                    "afp": {str(t): round(row.afp[t], 4) for t in IOBB_THRESHOLDS},
                    "mean_iou": round(row.mean_iou, 4),
                }
                for row in self.rows
            },
            "mean": {
                "accuracy": {str(t): round(self.mean_accuracy(t), 4) for t in IOBB_THRESHOLDS},
                "mean_iou": round(self.mean_iou(), 4),
            },
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        """Wang et al.'s Table 3 layout: Acc. and AFP per T(IoBB), plus mean IoU."""
        head = ["finding", "boxes"]
        head += [f"Acc@{t:g}" for t in IOBB_THRESHOLDS]
        head += [f"AFP@{t:g}" for t in IOBB_THRESHOLDS] + ["mean IoU"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [row.finding.replace("_", " "), str(row.boxes)]
            cells += [f"{row.accuracy[t]:.3f}" for t in IOBB_THRESHOLDS]
            cells += [f"{row.afp[t]:.3f}" for t in IOBB_THRESHOLDS]
            cells.append(f"{row.mean_iou:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
        mean = ["**mean**", str(sum(row.boxes for row in self.rows))]
        mean += [f"**{self.mean_accuracy(t):.3f}**" for t in IOBB_THRESHOLDS]
        mean += ["" for _ in IOBB_THRESHOLDS] + [f"**{self.mean_iou():.3f}**"]
        lines.append("| " + " | ".join(mean) + " |")
        return "\n".join(lines)


def evaluate_cases(cases: Iterable[LocalizationCase]) -> list[FindingLocalization]:
    """Per-finding accuracy at each T(IoBB), AFP and mean IoU (see the module docstring)."""
    by_finding: dict[str, list[LocalizationCase]] = {name: [] for name in BOXED_FINDINGS}
    for case in cases:
        by_finding.setdefault(case.finding, []).append(case)
    rows = []
    for name, group in by_finding.items():
        boxes = sum(len(case.ground_truth) for case in group)
        accuracy, afp = {}, {}
        for t in IOBB_THRESHOLDS:
            hits = 0
            false_positives = 0
            for case in group:
                hits += sum(any(iobb(gt, p) > t for p in case.predicted) for gt in case.ground_truth)
                false_positives += sum(
                    not any(iobb(gt, p) > t for gt in case.ground_truth) for p in case.predicted
                )
            accuracy[t] = hits / boxes if boxes else float("nan")
            afp[t] = false_positives / len(group) if group else float("nan")
        ious = [
            max((iou(gt, p) for p in case.predicted), default=0.0)
            for case in group
            for gt in case.ground_truth
        ]
        rows.append(
            FindingLocalization(
                finding=name,
                boxes=boxes,
                images=len(group),
                accuracy=accuracy,
                afp=afp,
                mean_iou=float(np.mean(ious)) if ious else float("nan"),
            )
        )
    return [row for row in rows if row.boxes]
