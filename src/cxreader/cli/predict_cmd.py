"""``cxreader predict``: the 14 probabilities per file, with a clear per-file error for bad files."""

from __future__ import annotations

import argparse
import json

from cxreader import DISCLAIMER
from cxreader.labels import FINDINGS, display_name


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="probabilities of the 14 findings for PNG/JPEG/DICOM files"
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--checkpoint", required=True, help="a cxreader checkpoint (RUN/best.pt)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from cxreader.predict import Predictor

    predictor = Predictor(args.checkpoint, device=args.device, batch_size=args.batch_size)
    results = predictor.predict_files(args.files)
    synthetic = predictor.contract.synthetic
    if args.json:
        print(
            json.dumps(
                {
                    "results": [r.to_json_dict() for r in results],
                    "checkpoint_synthetic": synthetic,
                    "disclaimer": DISCLAIMER,
                },
                indent=2,
            )
        )
    else:
        print(format_predictions(results, predictor.thresholds))
        if synthetic:
            print("Model trained on SYNTHETIC data: its outputs mean nothing for real patients.")
        print(DISCLAIMER)
    return 1 if any(result.error for result in results) else 0


def format_predictions(results, thresholds) -> str:
    """A readable block per file: findings sorted by probability, '*' where the threshold is crossed."""
    lines = []
    for result in results:
        if result.error:
            lines.append(f"{result.path}: ERROR {result.error}")
            continue
        lines.append(f"{result.path}:")
        order = sorted(FINDINGS, key=lambda name: -result.probabilities[name])
        for name in order:
            threshold = thresholds[FINDINGS.index(name)]
            mark = "*" if name in result.positive else " "
            lines.append(
                f"  {mark} {display_name(name):<20} {result.probabilities[name]:.3f}  (threshold {threshold:.3f})"
            )
    return "\n".join(lines)
