"""``cxreader predict``: the probability of each of the model's findings per file (the 14 of a CheXNet model, or
the labels its checkpoint names), with a clear per-file error for bad files."""

from __future__ import annotations

import argparse

from cxreader.cli import arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="probabilities of the model's findings for PNG/JPEG/DICOM files"
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    arguments.add_checkpoint(parser, arguments.CHECKPOINT_OR_ONNX_HELP)
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
    arguments.add_device(parser)
    arguments.add_batch_size(parser, 16)
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
        from cxreader.captioning.predict import CaptionPredictor
        from cxreader.screening.captions import caption_predictions

        captioner = CaptionPredictor(args.caption, device=args.device, beam_size=args.beam)
        caption_predictions(captioner, results)
    synthetic = predictor.contract.synthetic
    operating_point = predictor.contract.operating_point
    if args.json:
        arguments.print_json_results(
            [result.to_json_dict() for result in results], synthetic, operating_point=operating_point
        )
    else:
        print(format_predictions(results, predictor.thresholds, operating_point, predictor.labels))
        arguments.print_footer(synthetic)
    return 1 if any(result.error for result in results) else 0
