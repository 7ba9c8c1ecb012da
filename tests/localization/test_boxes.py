"""Boxes from heatmaps, IoBB/IoU, and the Wang et al. 2017 table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxreader.localization.boxes import (
    BOXED_FINDINGS,
    IOBB_THRESHOLDS,
    Box,
    LocalizationCase,
    LocalizationResult,
    boxes_from_heatmap,
    evaluate_cases,
    iobb,
    iou,
)


def test_iobb_divides_by_the_predicted_box_and_iou_by_the_union():
    truth = Box(0, 0, 10, 10)
    inside = Box(2, 2, 4, 4)  # entirely inside the ground truth
    assert iobb(truth, inside) == 1.0
    assert iou(truth, inside) == pytest.approx(16 / 100)
    half = Box(5, 0, 10, 10)
    assert iobb(truth, half) == pytest.approx(0.5)
    assert iou(truth, half) == pytest.approx(50 / 150)
    assert iobb(truth, Box(20, 20, 5, 5)) == 0.0 and iou(truth, Box(20, 20, 5, 5)) == 0.0
    assert iobb(truth, Box(1, 1, 0, 0)) == 0.0  # an empty predicted box localizes nothing


def test_one_box_per_connected_component_sorted_by_peak_and_specks_dropped():
    heatmap = np.zeros((32, 32), np.float32)
    heatmap[2:6, 3:9] = 0.8  # component A, peak 0.8
    heatmap[20:30, 20:26] = 0.9  # component B, peak 1.0 at one pixel
    heatmap[25, 22] = 1.0
    heatmap[15, 0] = 0.95  # a one-pixel speck: < 10 % of the largest component's area
    boxes = boxes_from_heatmap(heatmap, 0.7)
    assert [(b.x, b.y, b.w, b.h) for b in boxes] == [(20, 20, 6, 10), (3, 2, 6, 4)]
    assert [b.score for b in boxes] == pytest.approx([1.0, 0.8])
    assert boxes_from_heatmap(heatmap, 0.7, max_boxes=1)[0].score == pytest.approx(1.0)
    assert boxes_from_heatmap(heatmap, 1.01) == []


def test_diagonal_neighbours_are_one_component():
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[[1, 2, 3], [1, 2, 3]] = 1.0
    assert len(boxes_from_heatmap(heatmap, 0.5)) == 1


def test_boxes_are_scaled_to_each_original_image_size():
    heatmap = np.zeros((16, 16), np.float32)
    heatmap[4:8, 2:6] = 1.0
    (box,) = boxes_from_heatmap(heatmap, 0.5, original_size=(1024, 512))  # 64x along x, 32x along y
    assert (box.x, box.y, box.w, box.h) == (128, 128, 256, 128)


def test_the_table_counts_hits_false_positives_and_best_iou():
    truth = Box(10, 10, 20, 20)
    cases = [
        LocalizationCase("a.png", "Mass", [truth], [Box(12, 12, 4, 4), Box(100, 100, 5, 5)]),
        LocalizationCase("b.png", "Mass", [truth], [Box(0, 10, 20, 20)]),  # IoBB 0.5: a hit below 0.5 only
        LocalizationCase("c.png", "Nodule", [Box(0, 0, 4, 4), Box(50, 50, 4, 4)], []),
    ]
    rows = {row.finding: row for row in evaluate_cases(cases)}
    assert set(rows) == {"Mass", "Nodule"}  # findings without boxes are left out
    mass = rows["Mass"]
    assert mass.boxes == 2 and mass.images == 2
    assert mass.accuracy[0.1] == 1.0 and mass.accuracy[0.25] == 1.0
    assert mass.accuracy[0.5] == 0.5  # IoBB must EXCEED T (Wang et al.): 0.5 is not > 0.5
    assert mass.accuracy[0.9] == 0.5
    assert mass.afp[0.1] == pytest.approx(0.5)  # the far box of a.png, over 2 images
    assert mass.afp[0.75] == pytest.approx(1.0)
    assert mass.mean_iou == pytest.approx((16 / 400 + 200 / 600) / 2)
    assert rows["Nodule"].accuracy[0.1] == 0.0 and rows["Nodule"].mean_iou == 0.0

    result = LocalizationResult(rows=list(rows.values()))
    assert result.mean_accuracy(0.25) == pytest.approx(0.5)
    payload = result.to_json_dict()
    assert payload["findings"]["Mass"]["accuracy"]["0.5"] == 0.5
    assert payload["mean"]["accuracy"]["0.25"] == 0.5
    table = result.to_markdown()
    assert table.splitlines()[0].startswith("| finding | boxes | Acc@0.1")
    assert "**mean**" in table and len(table.splitlines()) == 2 + 2 + 1


def test_thresholds_and_boxed_findings_are_those_of_wang_et_al():
    assert IOBB_THRESHOLDS == (0.1, 0.25, 0.5, 0.75, 0.9)
    assert len(BOXED_FINDINGS) == 8 and "Infiltration" in BOXED_FINDINGS
    empty = LocalizationResult(rows=[])
    assert math.isnan(empty.mean_accuracy(0.1))


def test_the_box_level_follows_the_pooling_of_the_model():
    from cxreader.localization.boxes import BOX_THRESHOLD_BY_POOLING, DEFAULT_BOX_THRESHOLD, box_threshold_for
    from cxreader.localization.describe import DEFAULT_RULES, rules_for
    from cxreader.models import create_model

    average, lse = create_model("densenet_small"), create_model("densenet_small", pooling="lse")
    assert box_threshold_for(average) == BOX_THRESHOLD_BY_POOLING["avg"] == 0.9
    assert box_threshold_for(lse) == BOX_THRESHOLD_BY_POOLING["lse"] == DEFAULT_BOX_THRESHOLD == 0.7
    assert box_threshold_for(object()) == 0.9  # a model without the attribute pools by average
    assert rules_for(average).box_threshold == 0.9 and rules_for(lse) == DEFAULT_RULES
