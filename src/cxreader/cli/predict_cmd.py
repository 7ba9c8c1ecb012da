"""``cxreader predict``: the 14 probabilities per file, with a clear per-file error for bad files."""

from __future__ import annotations

import argparse
import json

from cxreader import DISCLAIMER


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="probabilities of the 14 findings for PNG/JPEG/DICOM files"
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a cxreader checkpoint (RUN/best.pt) or a model exported with `cxreader export` (.onnx)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto: ONNX Runtime (CPU) for a .onnx file, PyTorch otherwise",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--describe",
        action="store_true",
        help="describe each positive finding (side, zone, organ, extent, size, severity) from its heatmap; "
        "needs a PyTorch checkpoint",
    )
    parser.add_argument(
        "--caption",
        metavar="CKPT",
        help="a learned captioner (RUN/caption.pt from `cxreader caption train`): add its MeSH-style "
        "caption to each positive finding",
    )
    parser.add_argument("--beam", type=int, default=3, help="beam width of the learned captions (1: greedy)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from cxreader.inference.predict import Predictor, format_predictions

    predictor = Predictor(
        args.checkpoint, device=args.device, batch_size=args.batch_size, backend=args.backend
    )
    results = predictor.predict_files(args.files, keep_images=args.describe or bool(args.caption))
    if args.describe:  # first: it refuses a backend without heatmaps before the captioner is loaded
        from cxreader.localization.explain import describe_predictions

        describe_predictions(predictor.backend, results)
    if args.caption:
        from cxreader.screening.captions import caption_predictions, load_captioner

        captioner = load_captioner(args.caption, device=args.device, beam_size=args.beam)
        caption_predictions(captioner, results, predictor.thresholds)
    for result in results:
        result.image = None  # the pixels are not needed any more
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
