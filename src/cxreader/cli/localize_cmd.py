"""``cxreader heatmap`` (overlay PNGs and descriptions) and ``cxreader localize eval`` (the Wang et al. 2017
table of box accuracy)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from cxreader import DISCLAIMER
from cxreader.cli import arguments


def register(subparsers) -> None:
    heatmap = subparsers.add_parser(
        "heatmap",
        help="class activation heatmap overlays (CAM / Grad-CAM) and grounded descriptions for image files",
        description="Writes one overlay PNG per file and finding: the X-ray in gray, the heatmap in colour, "
        "the box, the finding name and probability. Prints the description of every positive finding. "
        + DISCLAIMER,
    )
    heatmap.add_argument("files", nargs="+", metavar="FILE")
    arguments.add_checkpoint(heatmap)
    which = heatmap.add_mutually_exclusive_group()
    which.add_argument(
        "--finding", action="append", metavar="F", help="finding to map (repeatable; default: --positive)"
    )
    which.add_argument(
        "--positive", action="store_true", help="map every finding above its threshold (the default)"
    )
    add_map_arguments(heatmap)
    heatmap.add_argument("--out", required=True, help="folder for the overlay PNGs")
    heatmap.add_argument(
        "--view", default=None, help="view position (PA, AP, LL) when the file does not say; default PA"
    )
    heatmap.add_argument("--json", action="store_true", help="print JSON instead of text")
    heatmap.set_defaults(func=run_heatmap)

    localize_commands = arguments.add_command_group(
        subparsers, "localize", help="localization: box accuracy against ground-truth boxes"
    )
    evaluate = localize_commands.add_parser(
        "eval",
        help="localization accuracy of heatmap boxes against a BBox_List_2017.csv (Wang et al. 2017)",
        description="For each boxed finding: the fraction of ground-truth boxes hit at T(IoBB) = 0.1, 0.25, "
        "0.5, 0.75, 0.9, the average false positives per image, and the mean IoU.",
    )
    arguments.add_checkpoint(evaluate)
    evaluate.add_argument("--data", required=True, help="image folder: a ChestX-ray14 root or a flat folder")
    evaluate.add_argument("--boxes", required=True, help="BBox_List_2017.csv (or the same format)")
    evaluate.add_argument("--json", metavar="OUT", default=None, help="also write the table as JSON")
    add_map_arguments(evaluate)
    evaluate.add_argument(
        "--max-boxes", type=int, default=None, help="keep only the N most salient boxes per map (default all)"
    )
    evaluate.add_argument(
        "--box-space",
        type=int,
        default=None,
        metavar="N",
        help="the boxes are in N x N pixel space (1024 for NIH boxes on downscaled copies); default: the "
        "image's own pixels",
    )
    evaluate.add_argument(
        "--split",
        choices=("all", "train", "val", "test"),
        default="all",
        help="only images of this split, as the checkpoint's training run split --data (needs its Data_Entry)",
    )
    arguments.add_batch_size(evaluate, 16)
    evaluate.set_defaults(func=run_localize_eval)


def add_map_arguments(parser: argparse.ArgumentParser) -> None:
    """The heatmap options of ``heatmap`` and ``localize eval``: method, box level, device."""
    parser.add_argument("--method", choices=("cam", "gradcam"), default="cam")
    parser.add_argument(
        "--box-threshold",
        type=float,
        default=None,
        help="heatmap level of the boxes (default: 0.7 for LSE-pooled models, 0.9 for average-pooled)",
    )
    arguments.add_device(parser)


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem) or "image"


def run_heatmap(args: argparse.Namespace) -> int:
    from cxreader.errors import ConfigError
    from cxreader.files import write_bytes_atomic
    from cxreader.inference.predict import Predictor
    from cxreader.labels import HARMONISED_LABELS
    from cxreader.localization.boxes import boxes_from_heatmap
    from cxreader.localization.cam import resolve_findings
    from cxreader.localization.describe import normalise_view, rules_for
    from cxreader.localization.explain import explain
    from cxreader.localization.overlay import render_overlay

    if args.finding:  # names that are no finding at all fail before any work
        resolve_findings(args.finding, HARMONISED_LABELS)
    if args.box_threshold is not None and not 0.0 < args.box_threshold < 1.0:
        raise ConfigError(f"--box-threshold must be in (0, 1), got {args.box_threshold}")
    predictor = Predictor(args.checkpoint, device=args.device)
    rules = rules_for(predictor.backend.model)
    if args.box_threshold is not None:
        rules = dataclasses.replace(rules, box_threshold=args.box_threshold)
    synthetic = predictor.contract.synthetic
    # Findings and thresholds in the model's label order (its checkpoint's contract).
    requested = resolve_findings(args.finding, predictor.labels) if args.finding else None
    thresholds = dict(zip(predictor.labels, predictor.contract.thresholds, strict=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    for result in predictor.predict_files(args.files, keep_images=True):
        if result.error:
            report.append({"path": result.path, "error": result.error})
            continue
        if not result.read:  # the input gate refused it: no probabilities, so no heatmap either
            report.append(result.to_json_dict())
            continue
        image = result.image
        view_position = args.view or image.view_position
        explanation = explain(
            predictor.backend,
            image,
            result.probabilities,
            findings=requested,
            method=args.method,
            view_position=view_position,
            rules=rules,
        )
        view, _ = normalise_view(view_position)
        by_finding = {item.finding: item for item in explanation.descriptions}
        written = []
        for finding, heatmap in explanation.maps.items():
            description = by_finding.get(finding)
            box = description.box if description is not None else None
            if box is None:
                found = boxes_from_heatmap(
                    heatmap, rules.box_threshold, original_size=image.pixels.shape[::-1], max_boxes=1
                )
                box = found[0].to_list() if found else None
            png = render_overlay(
                image.pixels,
                heatmap,
                finding=finding,
                probability=result.probabilities[finding],
                threshold=thresholds[finding],
                box=box,
                sentence=description.sentence if description is not None else None,
                synthetic=synthetic,
                view=view,
                method=args.method,
            )
            target = out / f"{_safe_stem(result.path)}_{finding}_{args.method}.png"
            write_bytes_atomic(target, png)
            written.append(str(target))
        report.append(
            {
                "path": result.path,
                "overlays": written,
                "descriptions": [item.to_json_dict() for item in explanation.descriptions],
            }
        )
    if args.json:
        arguments.print_json_results(report, synthetic)
    else:
        for entry in report:
            if "error" in entry:
                print(f"{entry['path']}: ERROR {entry['error']}")
                continue
            if "overlays" not in entry:
                print(f"{entry['path']}: NOT READ: {'; '.join(entry['gate']['reasons'])}")
                continue
            print(f"{entry['path']}:")
            if not entry["descriptions"]:
                print("  no finding above its threshold")
            for item in entry["descriptions"]:
                print(f"  {item['sentence']}  (p = {item['probability']:.2f})")
            for path in entry["overlays"]:
                print(f"  overlay: {path}")
        arguments.print_footer(synthetic)
    return 1 if any("error" in entry for entry in report) else 0


def run_localize_eval(args: argparse.Namespace) -> int:
    from cxreader.inference.runtime import resolve_device
    from cxreader.localization.evaluation import evaluate_localization
    from cxreader.models.checkpoint import load_checkpoint
    from cxreader.progress import Progress

    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device=device)
    with Progress(None, desc="localizing", unit="img", leave=False) as bar:
        result = evaluate_localization(
            checkpoint,
            args.data,
            args.boxes,
            method=args.method,
            box_threshold=args.box_threshold,
            max_boxes=args.max_boxes,
            box_space=args.box_space,
            split=args.split,
            batch_size=args.batch_size,
            progress=bar.advance_to,
        )
    label = " (SYNTHETIC-trained checkpoint)" if checkpoint.contract.synthetic else ""
    print(
        f"Localization accuracy{label}: {args.method.upper()} boxes at heatmap level "
        f"{result.box_threshold:g} vs {args.boxes} (split {args.split})"
    )
    print(result.to_markdown())
    for note in result.notes:
        print(f"note: {note}")
    if args.json:
        payload = {**result.to_json_dict(), "checkpoint": str(args.checkpoint), "boxes": str(args.boxes)}
        payload.update(split=args.split, checkpoint_synthetic=checkpoint.contract.synthetic)
        arguments.write_json(args.json, payload)
    return 0
