"""``localize eval``: heatmap boxes of a checkpoint against a ``BBox_List_2017.csv``, as Wang et al. 2017.

For every image in the box file, the checkpoint's heatmap of each boxed finding of that image is computed
(the ground-truth finding, whether or not the model calls it positive, as Wang et al. evaluated), boxes are
drawn from it (:func:`~cxreader.localization.boxes.boxes_from_heatmap`) in the image's own pixels, and they
are compared with the file's boxes (:func:`~cxreader.localization.boxes.evaluate_cases`).

Box coordinate space. ``BBox_List_2017.csv`` gives boxes in the pixels of the released 1024 x 1024 PNGs. The
model sees each image resized to its input size, so predicted boxes are scaled back by each image's ACTUAL
size (read from the file, not assumed). When the images at hand are smaller copies (e.g. 256 px renditions)
the boxes' space must be given (``box_space=1024``); a box that does not fit inside its image is an error
that says so.

Thorax restriction. Before boxes are drawn, each map is restricted to the image's thorax (the lung-field
estimate of :mod:`~cxreader.localization.geometry` grown by :data:`~cxreader.localization.geometry.THORAX_MARGIN`,
:func:`~cxreader.localization.cam.restrict_heatmap`, which says why). :func:`case_maps` with
``thorax=False`` gives the plain Wang et al. 2017 rule on the whole map.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxreader.data.chestxray14 import ImageLocator, base_name, load_splits, scan_files
from cxreader.data.io import load_image
from cxreader.data.nih_tables import read_bbox_list
from cxreader.errors import ConfigError, CXReaderError, DataError
from cxreader.localization.boxes import (
    DEFAULT_BOX_THRESHOLD,
    Box,
    LocalizationCase,
    LocalizationResult,
    box_threshold_for,
    boxes_from_heatmap,
    evaluate_cases,
)
from cxreader.localization.cam import heatmaps, restrict_heatmap
from cxreader.localization.geometry import THORAX_MARGIN, estimate_geometry
from cxreader.models.checkpoint import LoadedCheckpoint

logger = logging.getLogger(__name__)

#: How far (fraction of the image side) a ground-truth box may reach beyond its image before it is refused.
_BOX_TOLERANCE = 0.02


@dataclass
class CaseMap:
    """One image and finding with its ground-truth boxes (image pixels) and its heatmap (input grid)."""

    image: str
    finding: str
    ground_truth: list[Box]
    heatmap: np.ndarray
    original_size: tuple[int, int]

    def case(self, box_threshold: float, max_boxes: int | None = None) -> LocalizationCase:
        predicted = boxes_from_heatmap(
            self.heatmap, box_threshold, original_size=self.original_size, max_boxes=max_boxes
        )
        return LocalizationCase(self.image, self.finding, self.ground_truth, predicted)


def read_boxes(path: str | Path) -> pd.DataFrame:
    """The box file (``BBox_List_2017.csv`` format): unknown findings and malformed rows raise DataError."""
    frame = read_bbox_list(path)
    if frame.empty:
        raise DataError(path, "no boxes in the file")
    return frame


def split_images(checkpoint: LoadedCheckpoint, data_dir: str | Path, split: str) -> set[str] | None:
    """Image names of one split as the checkpoint's training run made it (same method and seed); ``None`` for all."""
    if split == "all":
        return None
    config = checkpoint.contract.config
    method = config.get("split") or "official"
    lists = config.get("lists") or None
    splits = load_splits(data_dir, split=method, lists=lists, seed=int(config.get("seed", 0)))
    if split not in splits:
        raise ConfigError(f"the checkpoint's split method {method!r} has no {split!r} split")
    return set(splits[split].images)


def case_maps(
    checkpoint: LoadedCheckpoint,
    data_dir: str | Path,
    boxes: pd.DataFrame,
    *,
    boxes_path: str | Path = "boxes",
    method: str = "cam",
    box_space: int | None = None,
    images: set[str] | None = None,
    batch_size: int = 16,
    notes: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    thorax: bool = True,
) -> Iterator[CaseMap]:
    """Heatmaps of every (image, finding) of the box file, with its ground truth in image pixels.

    Args:
        checkpoint: The loaded checkpoint (its model stays on its device).
        data_dir: Where the images are (a ChestX-ray14 root or a flat folder).
        boxes: The box table (:func:`read_boxes`).
        boxes_path: Its path, for messages.
        method: ``cam`` or ``gradcam``.
        box_space: Side of the square pixel space the boxes are given in (1024 for NIH boxes on smaller
            copies); ``None`` = the image's own pixels.
        images: Restrict to these image names.
        notes: Receives one line per skipped image.
        progress: Called with (done, total) images.
        thorax: Restrict every map to the image's thorax (module docstring).

    Raises:
        DataError: no image of the box file found, or a box beyond its image.
    """
    locator = ImageLocator(data_dir)  # the release layouts, and the folder itself for a flat folder
    files = {**scan_files([locator.root]), **locator.files}
    notes = notes if notes is not None else []
    grouped = boxes.groupby("image", sort=True)
    names = [name for name in grouped.groups if images is None or base_name(name) in images]
    if not names:
        raise DataError(boxes_path, "no box of the file belongs to the selected images")
    located = [(name, files.get(base_name(name))) for name in names]
    missing = [name for name, path in located if path is None]
    if len(missing) == len(located):
        raise DataError(data_dir, f"none of the {len(names)} boxed images found (e.g. {missing[0]})")
    if missing:
        notes.append(
            f"{len(missing)} boxed image(s) not found under {data_dir} and skipped (e.g. {missing[0]})"
        )
    transform = checkpoint.contract.eval_preset()
    model = checkpoint.model
    labels = tuple(checkpoint.contract.labels)
    unmodelled = sorted(set(boxes["finding"]) - set(labels))
    if unmodelled:
        notes.append(f"boxes of {', '.join(unmodelled)} skipped: not findings of this model")
    present = [(name, path) for name, path in located if path is not None]
    for start in range(0, len(present), batch_size):
        chunk = present[start : start + batch_size]
        loaded = []
        for name, path in chunk:
            try:
                loaded.append((name, load_image(path)))
            except CXReaderError as exc:
                notes.append(f"skipped {name}: {exc}")
        findings = sorted(
            {f for name, _ in loaded for f in grouped.get_group(name)["finding"] if f in labels}
        )
        if not findings:  # nothing readable, or no box of a finding the model knows
            continue
        batch = torch.stack([transform(image.pixels) for _, image in loaded])
        maps = heatmaps(model, batch, findings, method, labels=labels)
        for (name, image), image_maps in zip(loaded, maps, strict=True):
            height, width = image.pixels.shape
            inside = None
            if thorax:
                grid_h, grid_w = image_maps.shape[-2:]
                geometry = estimate_geometry(image.pixels).scaled_to(grid_w, grid_h)
                inside = geometry.thorax_mask(THORAX_MARGIN)
            rows = grouped.get_group(name)
            for finding, group in rows.groupby("finding", sort=False):
                if finding not in findings:
                    continue
                truth = [
                    _ground_truth_box(row, width, height, box_space, boxes_path) for row in group.itertuples()
                ]
                heatmap = image_maps[findings.index(finding)]
                if inside is not None:
                    heatmap = restrict_heatmap(heatmap, inside)
                yield CaseMap(name, finding, truth, heatmap, (width, height))
        if progress is not None:
            progress(min(start + batch_size, len(present)), len(present))


def _ground_truth_box(row, width: int, height: int, box_space: int | None, path: str | Path) -> Box:
    sx = width / box_space if box_space else 1.0
    sy = height / box_space if box_space else 1.0
    box = Box(row.x * sx, row.y * sy, row.w * sx, row.h * sy)
    tolerance_x, tolerance_y = _BOX_TOLERANCE * width, _BOX_TOLERANCE * height
    if (
        box.w <= 0
        or box.h <= 0
        or box.x < -tolerance_x
        or box.y < -tolerance_y
        or box.x + box.w > width + tolerance_x
        or box.y + box.h > height + tolerance_y
    ):
        space = f"{box_space}-pixel space" if box_space else "the image's own pixels"
        hint = "" if box_space else "; if the boxes are in 1024-pixel space (NIH), pass --box-space 1024"
        raise DataError(
            path,
            f"box {row.finding} of {row.image} ({row.x:g}, {row.y:g}, {row.w:g}, {row.h:g}) in {space} does not fit "
            f"its {width}x{height} image{hint}",
        )
    return box


def evaluate_maps(
    maps: Iterable[CaseMap],
    *,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    max_boxes: int | None = None,
    method: str = "cam",
    notes: Sequence[str] = (),
) -> LocalizationResult:
    """Wang et al.'s table for already computed maps (lets a benchmark try several box thresholds)."""
    rows = evaluate_cases(item.case(box_threshold, max_boxes) for item in maps)
    return LocalizationResult(rows=rows, box_threshold=box_threshold, method=method, notes=list(notes))


def evaluate_localization(
    checkpoint: LoadedCheckpoint,
    data_dir: str | Path,
    boxes_path: str | Path,
    *,
    method: str = "cam",
    box_threshold: float | None = None,
    max_boxes: int | None = None,
    box_space: int | None = None,
    split: str = "all",
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> LocalizationResult:
    """Run the whole evaluation: read the boxes, compute the maps, build the table.

    ``box_threshold`` defaults to the level for the checkpoint's pooling
    (:func:`~cxreader.localization.boxes.box_threshold_for`).

    Raises:
        DataError: unreadable box file, unknown finding in it, images not found, boxes beyond their image.
        ConfigError: unknown method or split.
    """
    if box_threshold is None:
        box_threshold = box_threshold_for(checkpoint.model)
    if not 0.0 < box_threshold < 1.0:
        raise ConfigError(f"box threshold must be in (0, 1), got {box_threshold}")
    boxes = read_boxes(boxes_path)
    images = split_images(checkpoint, data_dir, split)
    notes: list[str] = []
    maps = list(
        case_maps(
            checkpoint,
            data_dir,
            boxes,
            boxes_path=boxes_path,
            method=method,
            box_space=box_space,
            images=images,
            batch_size=batch_size,
            notes=notes,
            progress=progress,
        )
    )
    if checkpoint.contract.synthetic:
        notes.append("the checkpoint was trained on SYNTHETIC data")
    return evaluate_maps(maps, box_threshold=box_threshold, max_boxes=max_boxes, method=method, notes=notes)
