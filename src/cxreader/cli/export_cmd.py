"""``cxreader export``: write a checkpoint as an ONNX model (optionally int8) for fast CPU inference.

The exported file carries the checkpoint's contract in its metadata; ``cxreader predict --checkpoint
model.onnx`` runs it with ONNX Runtime.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxreader.cli import arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (optionally int8-quantized) for fast CPU inference",
        description="Export a cxreader checkpoint to ONNX with its contract (labels, input size, "
        "normalisation, thresholds) in the model's metadata. --quantize int8 quantizes statically with "
        "activation ranges measured on --calibration images (real radiographs of the kind the model will "
        "read); int8-dynamic needs no calibration but runs convolutions slower on most CPUs.",
    )
    arguments.add_checkpoint(parser, type=Path)
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    parser.add_argument(
        "--quantize",
        default="none",
        choices=["none", "int8", "int8-dynamic"],
        help="none (float32, default) | int8 (static, needs --calibration) | int8-dynamic",
    )
    parser.add_argument(
        "--calibration", type=Path, default=None, metavar="DIR", help="images for int8 calibration"
    )
    parser.add_argument(
        "--calibration-images",
        type=arguments.positive_int,
        default=64,
        metavar="N",
        help="use at most N calibration images (default 64)",
    )
    parser.add_argument(
        "--calibration-method",
        default="percentile",
        choices=["percentile", "minmax", "entropy"],
        help="how int8 activation ranges are chosen from the calibration images (default percentile)",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="the .onnx file to write")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from cxreader.errors import ConfigError
    from cxreader.export.onnx import export_onnx

    if args.out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {args.out}: an ONNX model file must end in .onnx")
    summary = export_onnx(
        args.checkpoint,
        args.out,
        quantize=args.quantize,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        calibration_method=args.calibration_method,
    )
    print(
        f"wrote {summary.path} ({summary.size_bytes / 1e6:.1f} MB, quantization: {summary.quantization}) "
        f"in {summary.seconds:.1f} s"
    )
    if summary.check_images:
        inputs = "calibration images" if summary.calibration_images else "random inputs"
        print(
            f"  largest probability difference to the PyTorch model on {summary.check_images} {inputs}: "
            f"{summary.max_abs_prob_diff:.2e}"
        )
    print(f"  run it with: cxreader predict --checkpoint {summary.path} FILE ...")
    return 0
