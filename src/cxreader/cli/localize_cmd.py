"""``cxreader heatmap`` (overlay PNGs and descriptions), ``cxreader localize-eval`` (Wang et al. 2017 table) and
``cxreader localize-fit`` (a checkpoint's learned location reader)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from cxreader import DISCLAIMER


def register(subparsers) -> None:
    heatmap = subparsers.add_parser(
        "heatmap",
        help="class activation heatmap overlays (CAM / Grad-CAM) and grounded descriptions for image files",
        description="Writes one overlay PNG per file and finding: the X-ray in gray, the heatmap in colour, "
        "the box, the finding name and probability. Prints the description of every positive finding. "
        + DISCLAIMER,
    )
    heatmap.add_argument("files", nargs="+", metavar="FILE")
    heatmap.add_argument("--checkpoint", required=True, help="a cxreader checkpoint (RUN/best.pt)")
    which = heatmap.add_mutually_exclusive_group()
    which.add_argument(
        "--finding", action="append", metavar="F", help="finding to map (repeatable; default: --positive)"
    )
    which.add_argument(
        "--positive", action="store_true", help="map every finding above its threshold (the default)"
    )
    heatmap.add_argument("--method", choices=("cam", "gradcam"), default="cam")
    heatmap.add_argument("--out", required=True, help="folder for the overlay PNGs")
    heatmap.add_argument(
        "--view", default=None, help="view position (PA, AP, LL) when the file does not say; default PA"
    )
    heatmap.add_argument(
        "--box-threshold",
        type=float,
        default=None,
        help="heatmap level of the boxes (default: 0.7 for LSE-pooled models, 0.9 for average-pooled)",
    )
    heatmap.add_argument("--json", action="store_true", help="print JSON instead of text")
    heatmap.add_argument("--device", default="auto")
    heatmap.set_defaults(func=run_heatmap)

    evaluate = subparsers.add_parser(
        "localize-eval",
        help="localization accuracy of heatmap boxes against a BBox_List_2017.csv (Wang et al. 2017)",
        description="For each boxed finding: the fraction of ground-truth boxes hit at T(IoBB) = 0.1, 0.25, "
        "0.5, 0.75, 0.9, the average false positives per image, and the mean IoU.",
    )
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--data", required=True, help="image folder: a ChestX-ray14 root or a flat folder")
    evaluate.add_argument("--boxes", required=True, help="BBox_List_2017.csv (or the same format)")
    evaluate.add_argument("--json", metavar="OUT", default=None, help="also write the table as JSON")
    evaluate.add_argument("--method", choices=("cam", "gradcam"), default="cam")
    evaluate.add_argument(
        "--box-threshold",
        type=float,
        default=None,
        help="heatmap level of the boxes (default: 0.7 for LSE-pooled models, 0.9 for average-pooled)",
    )
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
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(func=run_localize_eval)

    fit = subparsers.add_parser(
        "localize-fit",
        help="fit the checkpoint's location reader (side and zone from its heatmaps) on location ground truth",
        description="Fits per-finding side and zone readers on the true positives of the checkpoint's "
        "TRAINING split against a synthetic_findings.csv, compares them with the rules on the validation "
        "split, and stores them in the checkpoint when they agree with the ground truth at least as often "
        "(cxreader.localization.reader). Held-out sets (--extra-data) add the true positives of every one "
        "of their images to the fit: more data than the training split alone, from images the CNN never saw.",
    )
    fit.add_argument("--checkpoint", required=True, help="the checkpoint to fit for (rewritten atomically)")
    fit.add_argument("--data", required=True, help="the dataset the checkpoint was trained on")
    fit.add_argument(
        "--findings", default=None, help="location ground truth (default: DATA/synthetic_findings.csv)"
    )
    fit.add_argument(
        "--extra-data",
        action="append",
        default=[],
        metavar="DIR",
        help="a held-out dataset with its DIR/synthetic_findings.csv, not used to train the checkpoint; all "
        "its images join the fit (repeatable)",
    )
    fit.add_argument("--force", action="store_true", help="store the reader even if the rules do better")
    fit.add_argument("--batch-size", type=int, default=32)
    fit.add_argument("--device", default="auto")
    fit.set_defaults(func=run_localize_fit)


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem) or "image"


def run_heatmap(args: argparse.Namespace) -> int:
    from cxreader.errors import ConfigError
    from cxreader.labels import FINDINGS
    from cxreader.localization.boxes import boxes_from_heatmap
    from cxreader.localization.cam import resolve_findings
    from cxreader.localization.describe import normalise_view, rules_for
    from cxreader.localization.explain import explain
    from cxreader.localization.overlay import render_overlay
    from cxreader.predict import Predictor

    requested = resolve_findings(args.finding) if args.finding else None  # bad names fail before any work
    if args.box_threshold is not None and not 0.0 < args.box_threshold < 1.0:
        raise ConfigError(f"--box-threshold must be in (0, 1), got {args.box_threshold}")
    predictor = Predictor(args.checkpoint, device=args.device)
    checkpoint = predictor.checkpoint
    rules = rules_for(checkpoint.model)
    if args.box_threshold is not None:
        rules = dataclasses.replace(rules, box_threshold=args.box_threshold)
    box_threshold = rules.box_threshold
    synthetic = checkpoint.contract.synthetic
    thresholds = dict(zip(FINDINGS, checkpoint.contract.thresholds, strict=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    failed = False
    for result in predictor.predict_files(args.files, keep_images=True):
        if result.error:
            failed = True
            report.append({"path": result.path, "error": result.error})
            continue
        image = result.image
        view_position = args.view or image.view_position
        explanation = explain(
            checkpoint,
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
                    heatmap, box_threshold, original_size=image.pixels.shape[::-1], max_boxes=1
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
            target.write_bytes(png)
            written.append(str(target))
        report.append(
            {
                "path": result.path,
                "overlays": written,
                "descriptions": [item.to_json_dict() for item in explanation.descriptions],
            }
        )
    if args.json:
        print(
            json.dumps(
                {"results": report, "checkpoint_synthetic": synthetic, "disclaimer": DISCLAIMER}, indent=2
            )
        )
    else:
        for entry in report:
            if "error" in entry:
                print(f"{entry['path']}: ERROR {entry['error']}")
                continue
            print(f"{entry['path']}:")
            if not entry["descriptions"]:
                print("  no finding above its threshold")
            for item in entry["descriptions"]:
                print(f"  {item['sentence']}  (p = {item['probability']:.2f})")
            for path in entry["overlays"]:
                print(f"  overlay: {path}")
        if synthetic:
            print("Model trained on SYNTHETIC data: its outputs mean nothing for real patients.")
        print(DISCLAIMER)
    return 1 if failed else 0


def run_localize_eval(args: argparse.Namespace) -> int:
    from cxreader.localization.evaluation import evaluate_localization
    from cxreader.training.checkpoint import load_checkpoint
    from cxreader.training.distributed import resolve_device

    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device=device)

    def progress(done: int, total: int) -> None:
        print(f"\r  {done}/{total} images", end="", file=sys.stderr, flush=True)

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
        progress=progress,
    )
    print(file=sys.stderr)
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
        payload["split"] = args.split
        payload["checkpoint_synthetic"] = checkpoint.contract.synthetic
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def run_localize_fit(args: argparse.Namespace) -> int:
    from cxreader.errors import ConfigError
    from cxreader.training.checkpoint import load_checkpoint
    from cxreader.training.distributed import resolve_device

    findings = Path(args.findings) if args.findings else Path(args.data) / "synthetic_findings.csv"
    if not findings.is_file():
        raise ConfigError(
            f"{findings}: no location ground truth (a synthetic_findings.csv); pass --findings FILE"
        )
    extra = [(Path(data), Path(data) / "synthetic_findings.csv") for data in args.extra_data]
    for data, extra_findings in extra:
        if not extra_findings.is_file():
            raise ConfigError(f"--extra-data {data}: no location ground truth ({extra_findings} is missing)")
        if data.resolve() == Path(args.data).resolve():
            raise ConfigError(f"--extra-data {data} is the training data itself; pass a held-out set")
    checkpoint = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    fit = fit_and_report(checkpoint, args.data, findings, extra=extra, batch_size=args.batch_size)
    if not fit.helps and not args.force:
        print(
            "the reader does not beat the rules on validation: checkpoint left as it was (--force stores it)"
        )
        return 1
    store_reader(args.checkpoint, fit)
    return 0


def fit_and_report(checkpoint, data, findings, *, extra=(), batch_size: int = 32):
    """Fit a location reader (:func:`cxreader.localization.fitting.fit_reader`) and print the comparison."""
    from cxreader.localization.fitting import fit_reader

    def progress(split: str, done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r  {split}: {done}/{total} images", end=end, file=sys.stderr, flush=True)

    fit = fit_reader(checkpoint, data, findings, extra=extra, batch_size=batch_size, progress=progress)
    rules, reader = fit.rules_val, fit.reader_val
    held_out = f" and {fit.extra_samples} of held-out sets" if extra else ""
    print(
        f"location reader fitted on {fit.train_samples} training true positives{held_out} "
        f"({len(fit.reader.zone)} findings); validation, {rules['n']} true positives:\n"
        f"  rules:  side {rules['side']:.3f}, zone {rules['zone']:.3f}, side and zone {rules['side_and_zone']:.3f}\n"
        f"  reader: side {reader['side']:.3f}, zone {reader['zone']:.3f}, side and zone {reader['side_and_zone']:.3f}"
    )
    return fit


def store_reader(path, fit) -> None:
    from cxreader.training.checkpoint import store_location_reader

    store_location_reader(path, fit.reader)
    print(f"stored in {path}")
