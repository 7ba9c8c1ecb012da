"""Localization and grounded descriptions of a demo-trained model, measured on the SYNTHETIC ground truth.

Usage (after ``cxreader demo --out DEMO``)::

    python benchmarks/localization_synthetic.py --checkpoint DEMO/run/best.pt --data DEMO/synthetic-data \\
        --out benchmarks/results/localization_synthetic

What it measures, tuning on the validation split of the checkpoint's own training run and reporting on the
held-out test split (both rebuilt from the checkpoint's split method and seed):

1. **Wang et al. 2017 table** of the heatmap boxes against ``BBox_List_2017.csv``: the box rule's heatmap
   level (and whether to keep all boxes or only the most salient one) is chosen on validation by the mean
   accuracy at T(IoBB) = 0.25 (ties: mean IoU), then the test table is computed once with that choice. The
   maps are restricted to the thorax (the product default, :func:`~cxreader.localization.cam.restrict_heatmap`);
   the same choice on the whole maps, and one level per finding chosen on val, are reported beside it for
   comparison.
2. **Grounded side and zone** of every true-positive finding (label positive and probability at or above the
   checkpoint's threshold) against ``synthetic_findings.csv``. Ground truth per image and finding: the side is
   ``bilateral`` when instances lie on both sides (or one is bilateral), ``midline`` for midline findings,
   else the one side; the zone is that of the instance with the largest extent. The rules as written
   (the product default), then tuned on validation by coordinate search on the side-and-zone agreement
   (:class:`~cxreader.localization.describe.DescriptionRules`), then
   applied once to test. Severity agreement and extent error are reported too (not tuned).
3. **Lung geometry**: how often the side and the zone of each ground-truth box centre are right when the zones
   come from the profile estimate (:func:`~cxreader.localization.geometry.estimate_geometry`) versus fixed
   image fractions, on the test images as drawn and on copies shifted and scaled at random (as real films
   are positioned and collimated differently).

Everything here is SYNTHETIC: the numbers describe the phantom, not patients.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxreader.data.chestxray14 import ChestXray14
from cxreader.data.io import load_image
from cxreader.data.sidecars import read_synthetic_findings
from cxreader.inference.predict import Predictor
from cxreader.labels import FINDINGS
from cxreader.localization.boxes import BOXED_FINDINGS, IOBB_THRESHOLDS
from cxreader.localization.cam import heatmaps
from cxreader.localization.describe import (
    DEFAULT_RULES,
    PLACED_BY_DEFINITION,
    DescriptionRules,
    describe_findings,
    rules_for,
)
from cxreader.localization.evaluation import case_maps, evaluate_maps, read_boxes, split_images
from cxreader.localization.foci import FOCAL_FINDINGS
from cxreader.localization.geometry import ChestGeometry, estimate_geometry, fixed_geometry

BOX_LEVELS = tuple(round(float(level), 2) for level in np.arange(0.3, 0.951, 0.05))
RULE_GRID = {
    "region_level": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "diffuse_level": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "bilateral_ratio": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "diffuse_bilateral_ratio": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
    "diffuse_cover": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# 1. Boxes


def tune_boxes(checkpoint, data: Path, boxes, method: str, batch_size: int, *, thorax: bool = True) -> dict:
    maps = {}
    for split in ("val", "test"):
        started = time.perf_counter()
        images = split_images(checkpoint, data, split)
        maps[split] = list(
            case_maps(
                checkpoint, data, boxes, method=method, images=images, batch_size=batch_size, thorax=thorax
            )
        )
        log(f"  {split}: {len(maps[split])} image/finding maps in {time.perf_counter() - started:.0f} s")
    grid = []
    for max_boxes in (None, 1):
        for level in BOX_LEVELS:
            result = evaluate_maps(maps["val"], box_threshold=level, max_boxes=max_boxes, method=method)
            grid.append((result.mean_accuracy(0.25), result.mean_iou(), level, max_boxes))
    best = max(grid, key=lambda row: (row[0], row[1]))
    _, _, level, max_boxes = best
    test = evaluate_maps(maps["test"], box_threshold=level, max_boxes=max_boxes, method=method)
    val = evaluate_maps(maps["val"], box_threshold=level, max_boxes=max_boxes, method=method)
    return {
        "chosen": {"box_threshold": level, "max_boxes": max_boxes},
        "val_grid": [
            {"box_threshold": lv, "max_boxes": mb, "acc_0.25": round(acc, 4), "mean_iou": round(miou, 4)}
            for acc, miou, lv, mb in grid
        ],
        "val": val,
        "test": test,
        "per_finding": per_finding_levels(maps, max_boxes, method),
    }


def per_finding_levels(maps: dict, max_boxes, method: str) -> dict:
    """One box level per finding, each chosen on val (Acc@0.25, ties: the higher level), applied to test.

    For information: a single level is the product default; this shows what per-finding levels would add.
    """
    chosen, accuracy = {}, {"val": {}, "test": {}}
    for finding in BOXED_FINDINGS:
        subset = {split: [m for m in items if m.finding == finding] for split, items in maps.items()}
        if not subset["val"] or not subset["test"]:
            continue
        scores = []
        for level in BOX_LEVELS:
            (row,) = evaluate_maps(
                subset["val"], box_threshold=level, max_boxes=max_boxes, method=method
            ).rows
            scores.append((row.accuracy[0.25], level))
        best_level = max(scores)[1]
        chosen[finding] = best_level
        for split in ("val", "test"):
            (row,) = evaluate_maps(
                subset[split], box_threshold=best_level, max_boxes=max_boxes, method=method
            ).rows
            accuracy[split][finding] = row.accuracy[0.25]
    return {
        "levels": chosen,
        "acc_0.25": {
            split: {k: round(v, 4) for k, v in values.items()} for split, values in accuracy.items()
        },
        "mean_acc_0.25": {
            split: round(float(np.mean(list(values.values()))), 4) for split, values in accuracy.items()
        },
    }


# ---------------------------------------------------------------------------------------------------------
# 2. Descriptions


@dataclasses.dataclass
class Positive:
    image: str
    finding: str
    probability: float
    heatmap: np.ndarray
    pixels: np.ndarray  # the image (the geometry is given)
    geometry: ChestGeometry
    truth_side: str
    truth_zone: str
    truth_zones: set[str]
    truth_severity: str
    truth_extent: float
    truth_places: tuple[tuple[str, str], ...]  # (patient side, zone) of every drawn instance


def truth_of(instances) -> tuple[str, str, set[str], str, float]:
    """Ground truth of one image's finding: its patient side (bilateral when instances lie on both sides or
    one is bilateral), the zone and severity of the largest instance, every instance's zone, the extent."""
    sides = {row.side for row in instances}
    if "bilateral" in sides or {"right", "left"} <= sides:
        side = "bilateral"
    elif len(sides) == 1:
        (side,) = sides
    else:  # midline
        side = sorted(sides)[0]
    largest = max(instances, key=lambda row: row.extent)
    return side, largest.zone, {row.zone for row in instances}, largest.severity, largest.extent


def true_positives(predictor: Predictor, data: Path, images: list[str], frame, sidecar, method: str) -> list:
    by_key = defaultdict(list)
    for row in sidecar.itertuples():
        by_key[(row.image, row.finding)].append(row)
    labels = frame.set_index("image")
    thresholds = dict(zip(FINDINGS, predictor.contract.thresholds, strict=True))
    checkpoint = predictor.backend.checkpoint
    transform = predictor.contract.eval_preset()
    positives = []
    for start in range(0, len(images), 32):
        chunk = images[start : start + 32]
        results = predictor.predict_files([data / "images" / name for name in chunk], keep_images=True)
        for name, result in zip(chunk, results, strict=True):
            wanted = [
                finding
                for finding in FINDINGS
                if labels.loc[name, finding] == 1 and result.probabilities[finding] >= thresholds[finding]
            ]
            if not wanted:
                continue
            maps = heatmaps(checkpoint.model, transform(result.image.pixels), wanted, method)
            geometry = estimate_geometry(result.image.pixels)
            for finding, heatmap in zip(wanted, maps, strict=True):
                side, zone, zones, severity, extent = truth_of(by_key[(name, finding)])
                positives.append(
                    Positive(
                        name,
                        finding,
                        result.probabilities[finding],
                        heatmap,
                        result.image.pixels,
                        geometry,
                        side,
                        zone,
                        zones,
                        severity,
                        extent,
                        tuple((row.side, row.zone) for row in by_key[(name, finding)]),
                    )
                )
    return positives


def describe_all(positives: list[Positive], rules: DescriptionRules, thresholds: dict) -> list:
    out = []
    for item in positives:
        (description,) = describe_findings(
            {item.finding: item.probability},
            {item.finding: item.heatmap},
            item.pixels,
            {item.finding: thresholds[item.finding]},  # a true positive: at or above its threshold
            view_position="PA",
            geometry=item.geometry,
            rules=rules,
        )
        out.append(description)
    return out


def agreement(positives: list[Positive], descriptions: list) -> dict:
    side_ok = [d.side == p.truth_side for p, d in zip(positives, descriptions, strict=True)]
    zone_ok = [d.zone == p.truth_zone for p, d in zip(positives, descriptions, strict=True)]
    zone_any = [d.zone in p.truth_zones for p, d in zip(positives, descriptions, strict=True)]
    both = [s and z for s, z in zip(side_ok, zone_ok, strict=True)]
    severity_ok = [d.severity == p.truth_severity for p, d in zip(positives, descriptions, strict=True)]
    extent_error = [abs(d.extent - p.truth_extent) for p, d in zip(positives, descriptions, strict=True)]
    per_finding = {}
    for finding in FINDINGS:
        index = [i for i, p in enumerate(positives) if p.finding == finding]
        if index:
            per_finding[finding] = {
                "n": len(index),
                "side": round(float(np.mean([side_ok[i] for i in index])), 3),
                "zone": round(float(np.mean([zone_ok[i] for i in index])), 3),
                "side_and_zone": round(float(np.mean([both[i] for i in index])), 3),
            }
    grounded = [i for i, p in enumerate(positives) if p.finding not in PLACED_BY_DEFINITION]
    return {
        "n": len(positives),
        "side": float(np.mean(side_ok)) if positives else float("nan"),
        "zone": float(np.mean(zone_ok)) if positives else float("nan"),
        "zone_any_instance": float(np.mean(zone_any)) if positives else float("nan"),
        "side_and_zone": float(np.mean(both)) if positives else float("nan"),
        "side_and_zone_excluding_cardiomegaly_hernia": float(np.mean([both[i] for i in grounded]))
        if grounded
        else float("nan"),
        "severity": float(np.mean(severity_ok)) if positives else float("nan"),
        "extent_mean_abs_error": float(np.mean(extent_error)) if positives else float("nan"),
        "per_finding": per_finding,
    }


def multifocal(positives: list[Positive], descriptions: list) -> dict:
    """How the focal findings' foci match the drawn instances (one sidecar row per nodule or mass).

    Per true positive: the number of places described (its foci, or the one finding-level place) against the
    number of instances, and whether the two multisets of (side, zone) are equal; per instance: whether its
    (side, zone) is among the places described; and how many single instances were split into several foci.
    """
    out = {}
    for finding in FOCAL_FINDINGS:
        pairs = [(p, d) for p, d in zip(positives, descriptions, strict=True) if p.finding == finding]
        if not pairs:
            continue
        count_ok = exact = instances = recalled = singles = split = several = several_found = 0
        for positive, description in pairs:
            places = [(f["side"], f["zone"]) for f in description.foci] or [
                (description.side, description.zone)
            ]
            truth = positive.truth_places
            count_ok += len(places) == len(truth)
            exact += Counter(places) == Counter(truth)
            instances += len(truth)
            recalled += sum(place in places for place in truth)
            if len(truth) == 1:
                singles += 1
                split += len(places) > 1
            else:
                several += 1
                several_found += len(places) > 1
        n = len(pairs)
        out[finding] = {
            "n": n,
            "count": round(count_ok / n, 3),
            "exact_places": round(exact / n, 3),
            "instance_recall": round(recalled / max(1, instances), 3),
            "instances": instances,
            "single_split": f"{split}/{singles}",
            "several_found": f"{several_found}/{several}",
        }
    return out


def tune_rules(positives: list[Positive], thresholds: dict, box_threshold: float) -> DescriptionRules:
    rules = dataclasses.replace(DEFAULT_RULES, box_threshold=box_threshold)

    def score(candidate: DescriptionRules) -> float:
        return agreement(positives, describe_all(positives, candidate, thresholds))["side_and_zone"]

    best = score(rules)
    for _ in range(2):  # two rounds of coordinate search
        for name, values in RULE_GRID.items():
            for value in values:
                candidate = dataclasses.replace(rules, **{name: value})
                value_score = score(candidate)
                if value_score > best + 1e-9:
                    best, rules = value_score, candidate
        log(f"  rules after a round: {rules} (val side+zone {best:.3f})")
    return rules


# ---------------------------------------------------------------------------------------------------------
# 3. Geometry


def geometry_accuracy(data: Path, images: list[str], sidecar, *, jitter: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = sidecar[
        sidecar["image"].isin(set(images))
        & sidecar["side"].isin(["right", "left"])
        & sidecar["zone"].isin(["upper", "middle", "lower"])
    ]
    counts = {"profile": [0, 0, 0], "fixed": [0, 0, 0]}  # side ok, zone ok, n
    fallbacks = 0
    for name, group in rows.groupby("image"):
        pixels = load_image(data / "images" / name).pixels
        size = pixels.shape[0]
        scale, dx, dy = 1.0, 0.0, 0.0
        if jitter:
            # A different position and collimation: scale 0.8-1.1 about the centre, shift up to 10 %.
            scale = rng.uniform(0.8, 1.1)
            dx, dy = rng.uniform(-0.1, 0.1, 2) * size
            pixels = _affine(pixels, scale, dx, dy)
        estimates = {"profile": estimate_geometry(pixels), "fixed": fixed_geometry(size, size)}
        fallbacks += estimates["profile"].method != "profile"
        for row in group.itertuples():
            cx = (row.x + row.w / 2 - size / 2) * scale + size / 2 + dx
            cy = (row.y + row.h / 2 - size / 2) * scale + size / 2 + dy
            image_side = "left" if row.side == "right" else "right"  # patient's right = image left
            for key, geometry in estimates.items():
                counts[key][0] += geometry.image_side_of(cx) == image_side
                counts[key][1] += geometry.zone_of(cy, (image_side,)) == row.zone
                counts[key][2] += 1
    result = {
        key: {"side": ok_side / n, "zone": ok_zone / n, "n": n}
        for key, (ok_side, ok_zone, n) in counts.items()
    }
    result["profile_fallbacks"] = int(fallbacks)
    return result


def _affine(pixels: np.ndarray, scale: float, dx: float, dy: float) -> np.ndarray:
    size = pixels.shape[0]
    image = Image.fromarray(pixels.astype(np.float32), mode="F")
    centre = size / 2
    # Output pixel (u, v) samples the input at ((u - centre - dx) / scale + centre, ...).
    coefficients = (
        1 / scale,
        0,
        centre - (centre + dx) / scale,
        0,
        1 / scale,
        centre - (centre + dy) / scale,
    )
    return np.asarray(
        image.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    )


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default=None, help="folder for results.json and tables.md")
    parser.add_argument("--method", choices=("cam", "gradcam"), default="cam")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = Path(args.data)
    predictor = Predictor(args.checkpoint, device=args.device)
    checkpoint = predictor.backend.checkpoint
    thresholds = dict(zip(FINDINGS, predictor.contract.thresholds, strict=True))
    started = time.perf_counter()

    log("[1/3] boxes: heatmaps of the val and test splits, box rule tuned on val ...")
    boxes = tune_boxes(
        checkpoint, data, read_boxes(data / "BBox_List_2017.csv"), args.method, args.batch_size
    )
    chosen = boxes["chosen"]
    plain = tune_boxes(
        checkpoint, data, read_boxes(data / "BBox_List_2017.csv"), args.method, args.batch_size, thorax=False
    )

    log("[2/3] descriptions of true-positive findings ...")
    frame = ChestXray14.from_root(data).frame
    sidecar = read_synthetic_findings(data / "synthetic_findings.csv")
    split_names = {split: sorted(split_images(checkpoint, data, split)) for split in ("val", "test")}
    positives = {
        split: true_positives(predictor, data, names, frame, sidecar, args.method)
        for split, names in split_names.items()
    }
    default_rules = dataclasses.replace(DEFAULT_RULES, box_threshold=chosen["box_threshold"])
    default_scores = {
        split: agreement(items, describe_all(items, default_rules, thresholds))
        for split, items in positives.items()
    }
    product_rules = dataclasses.replace(rules_for(checkpoint.model), box_threshold=chosen["box_threshold"])
    product_descriptions = {
        split: describe_all(items, product_rules, thresholds) for split, items in positives.items()
    }
    product_scores = {
        split: agreement(items, product_descriptions[split]) for split, items in positives.items()
    }
    foci_scores = {
        split: multifocal(items, product_descriptions[split]) for split, items in positives.items()
    }
    tuned = tune_rules(positives["val"], thresholds, chosen["box_threshold"])
    tuned_scores = {
        split: agreement(items, describe_all(items, tuned, thresholds)) for split, items in positives.items()
    }

    log("[3/3] lung geometry: profile estimate vs fixed fractions on the test images ...")
    geometry = {
        "as_drawn": geometry_accuracy(data, split_names["test"], sidecar, jitter=False),
        "shifted_and_scaled": geometry_accuracy(data, split_names["test"], sidecar, jitter=True),
    }

    summary = {
        "checkpoint": str(args.checkpoint),
        "data": str(data),
        "synthetic": True,
        "method": args.method,
        "boxes": {
            "chosen_on_val": chosen,
            "val_mean_accuracy": {str(t): round(boxes["val"].mean_accuracy(t), 4) for t in IOBB_THRESHOLDS},
            "test": boxes["test"].to_json_dict(),
            "val_grid": boxes["val_grid"],
            "per_finding_levels": boxes["per_finding"],
            "whole_map": {
                "chosen_on_val": plain["chosen"],
                "val_mean_accuracy": {
                    str(t): round(plain["val"].mean_accuracy(t), 4) for t in IOBB_THRESHOLDS
                },
                "test_mean_accuracy": {
                    str(t): round(plain["test"].mean_accuracy(t), 4) for t in IOBB_THRESHOLDS
                },
            },
        },
        "descriptions": {
            "product_scores": product_scores,
            "foci": foci_scores,
            "default_rules": dataclasses.asdict(default_rules),
            "default_rules_scores": default_scores,
            "tuned_rules": dataclasses.asdict(tuned),
            "tuned_rules_scores": tuned_scores,
        },
        "geometry": geometry,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report = render(summary, boxes["test"])
    print(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        (out / "tables.md").write_text(report + "\n")
    return 0


def render(summary: dict, test_table) -> str:
    chosen = summary["boxes"]["chosen_on_val"]
    lines = [
        "SYNTHETIC data: every number below describes phantoms, not patients.",
        "",
        f"Box rule chosen on val: heatmap level {chosen['box_threshold']}, "
        f"{'all boxes' if chosen['max_boxes'] is None else 'most salient box only'} "
        f"(val mean Acc@0.25 {summary['boxes']['val_mean_accuracy']['0.25']:.3f}, "
        f"test {test_table.mean_accuracy(0.25):.3f}); maps restricted to the thorax",
        f"Whole map (no thorax restriction), level {summary['boxes']['whole_map']['chosen_on_val']['box_threshold']} "
        f"chosen on val: val mean Acc@0.25 {summary['boxes']['whole_map']['val_mean_accuracy']['0.25']:.3f}, "
        f"test {summary['boxes']['whole_map']['test_mean_accuracy']['0.25']:.3f}",
        f"Per-finding levels chosen on val (information only): {summary['boxes']['per_finding_levels']['levels']}; "
        f"mean Acc@0.25 val {summary['boxes']['per_finding_levels']['mean_acc_0.25']['val']:.3f}, "
        f"test {summary['boxes']['per_finding_levels']['mean_acc_0.25']['test']:.3f}",
        "",
        f"Test split, {summary['method'].upper()}:",
        "",
        test_table.to_markdown(),
        "",
    ]
    lines.append("Product default (the description rules as written):")
    for split in ("val", "test"):
        s = summary["descriptions"]["product_scores"][split]
        lines.append(
            f"  {split}: {s['n']} true positives; side {s['side']:.3f}, zone {s['zone']:.3f}, "
            f"side+zone {s['side_and_zone']:.3f}; severity {s['severity']:.3f}; extent MAE {s['extent_mean_abs_error']:.3f}"
        )
    lines.append("")
    lines.append("| finding | TP (test) | side | zone | side+zone |")
    lines.append("|---|---|---|---|---|")
    for finding, row in summary["descriptions"]["product_scores"]["test"]["per_finding"].items():
        lines.append(
            f"| {finding} | {row['n']} | {row['side']:.3f} | {row['zone']:.3f} | {row['side_and_zone']:.3f} |"
        )
    lines.append("")
    lines.append("Foci of the focal findings (product default; places = side and zone of each focus):")
    lines.append("")
    lines.append(
        "| split | finding | TP | several instances: described as several | count right | places right "
        "| instance recall | single instance split |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for split in ("val", "test"):
        for finding, row in summary["descriptions"]["foci"][split].items():
            lines.append(
                f"| {split} | {finding} | {row['n']} | {row['several_found']} | {row['count']:.3f} | "
                f"{row['exact_places']:.3f} | {row['instance_recall']:.3f} ({row['instances']}) | {row['single_split']} |"
            )
    lines.append("")
    for label, key in (("default", "default_rules_scores"), ("tuned on val", "tuned_rules_scores")):
        for split in ("val", "test"):
            s = summary["descriptions"][key][split]
            lines.append(
                f"Descriptions ({label} rules), {split}: {s['n']} true positives; side {s['side']:.3f}, "
                f"zone {s['zone']:.3f}, side+zone {s['side_and_zone']:.3f} (without Cardiomegaly/Hernia "
                f"{s['side_and_zone_excluding_cardiomegaly_hernia']:.3f}); zone of any instance "
                f"{s['zone_any_instance']:.3f}; severity {s['severity']:.3f}; extent MAE {s['extent_mean_abs_error']:.3f}"
            )
    lines.append(f"Tuned rules: {summary['descriptions']['tuned_rules']}")
    lines.append("")
    lines.append("| finding | TP (test) | side | zone | side+zone |")
    lines.append("|---|---|---|---|---|")
    for finding, row in summary["descriptions"]["tuned_rules_scores"]["test"]["per_finding"].items():
        lines.append(
            f"| {finding} | {row['n']} | {row['side']:.3f} | {row['zone']:.3f} | {row['side_and_zone']:.3f} |"
        )
    lines.append("")
    lines.append("Lung geometry (test images, ground-truth box centres):")
    lines.append("")
    lines.append("| images | geometry | side right | zone right | instances |")
    lines.append("|---|---|---|---|---|")
    for condition, values in summary["geometry"].items():
        for key in ("profile", "fixed"):
            v = values[key]
            lines.append(f"| {condition} | {key} | {v['side']:.3f} | {v['zone']:.3f} | {v['n']} |")
    lines.append("")
    lines.append(f"({summary['seconds']:.0f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
