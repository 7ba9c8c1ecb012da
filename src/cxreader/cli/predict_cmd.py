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
    from cxreader.predict import Predictor

    predictor = Predictor(
        args.checkpoint, device=args.device, batch_size=args.batch_size, backend=args.backend
    )
    results = predictor.predict_files(args.files, keep_images=args.describe or bool(args.caption))
    if args.caption:
        attach_captions(args.caption, results, predictor.thresholds, device=args.device, beam_size=args.beam)
    if args.describe:
        attach_descriptions(predictor, results)
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


def attach_descriptions(predictor, results) -> None:
    """Attach the grounded descriptions of the positive findings (cxreader.localization) to each result."""
    from cxreader.errors import ConfigError
    from cxreader.localization.explain import explain

    if predictor.checkpoint is None:
        raise ConfigError("--describe needs a PyTorch checkpoint: heatmaps read the model's feature map")
    for result in results:
        if result.error is None:
            explanation = explain(predictor.checkpoint, result.image, result.probabilities)
            result.descriptions = [item.to_json_dict() for item in explanation.descriptions]


def attach_captions(checkpoint, results, thresholds, *, device: str, beam_size: int) -> None:
    """Attach the learned caption (Shin et al. 2016) of each positive finding to each result.

    The findings are the classifier's positives (``--checkpoint`` and its ``thresholds``), as in ``screen``
    (:func:`cxreader.screening.captions.learned_captions`); a finding the captioner has no token for is listed
    with ``text: null`` rather than silently dropped.
    """
    from cxreader.screening.captions import learned_captions, load_captioner

    captioner = load_captioner(checkpoint, device=device, beam_size=beam_size)
    for result in results:
        if result.error is not None:
            continue
        probabilities = [result.probabilities[name] for name in FINDINGS]
        captions = learned_captions(captioner, result.image.pixels, probabilities, thresholds)
        result.captions = [{"finding": name, "text": captions.get(name)} for name in result.positive]


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
        if getattr(result, "descriptions", None) is not None:
            empty = "" if result.descriptions else " no finding above its threshold"
            lines.append(f"  description:{empty}")
            lines.extend(f"    {item['sentence']}" for item in result.descriptions)
        if getattr(result, "captions", None) is not None:
            empty = "" if result.captions else " no finding above its threshold"
            lines.append(f"  learned caption:{empty}")
            lines.extend(
                f"    {display_name(item['finding'])}: {item['text'] or '(the captioner does not know this finding)'}"
                for item in result.captions
            )
    return "\n".join(lines)
