"""``cxreader caption``: learned captions (Shin et al., CVPR 2016): pairs, train, evaluate, predict.

* ``caption pairs --synthetic DIR --out PAIRS.csv`` (or ``--openi REPORTS --images DIR``) writes the
  (image, finding, annotation tokens) pairs of a dataset;
* ``caption train --pairs PAIRS --encoder CKPT --out RUN [--mesh-reports TGZ]`` trains the decoder on a
  classifier's features and writes ``RUN/caption.pt``;
* ``caption evaluate --checkpoint RUN/caption.pt --pairs PAIRS [--json OUT]`` prints BLEU-1..4 and the
  slot accuracies, on all test pairs and on the classifier's true positives;
* ``caption predict --checkpoint RUN/caption.pt FILE... [--finding F]`` describes findings in images.
"""

from __future__ import annotations

import argparse
import time

from cxreader import DISCLAIMER
from cxreader.cli import arguments
from cxreader.errors import ConfigError

SYNTHETIC_NOTE = (
    "SYNTHETIC: trained or evaluated on synthetic images; the captions mean nothing for patients."
)


def register(subparsers) -> None:
    commands = arguments.add_command_group(
        subparsers,
        "caption",
        help="learned captions: pairs, train, evaluate, predict (CNN + RNN, Shin et al. 2016)",
        description="A CheXNet encoder and an attention LSTM/GRU decoder that writes one MeSH-style annotation "
        "per finding. " + DISCLAIMER,
    )

    pairs = commands.add_parser("pairs", help="write the (image, finding, tokens) pairs of a dataset")
    source = pairs.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", metavar="DIR", help="a synthetic dataset (NIH layout + sidecar)")
    source.add_argument("--openi", metavar="REPORTS", help="NLMCXR_reports.tgz or its unpacked folder")
    pairs.add_argument("--images", metavar="DIR", help="OpenI image folder (with --openi)")
    pairs.add_argument("--out", required=True, metavar="PAIRS.csv")
    pairs.add_argument("--seed", type=int, default=0, help="seed of the validation / report split")
    pairs.add_argument("--val-fraction", type=float, default=0.1, help="synthetic: val share of train_val")
    pairs.add_argument(
        "--mapped-only", action="store_true", help="OpenI: only terms mapped to the 14 findings"
    )
    pairs.set_defaults(func=run_pairs)

    train = commands.add_parser("train", help="train the captioner on a PAIRS file")
    train.add_argument("--pairs", required=True, metavar="PAIRS.csv")
    train.add_argument(
        "--encoder", required=True, metavar="CKPT", help="a classifier checkpoint (RUN/best.pt)"
    )
    train.add_argument("--out", required=True, metavar="RUN", help="run folder (receives caption.pt)")
    train.add_argument(
        "--mesh-reports",
        metavar="TGZ",
        help="OpenI reports (NLMCXR_reports.tgz): real MeSH sequences for the vocabulary and language statistics",
    )
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--cell", choices=("lstm", "gru"), default=None)
    train.add_argument("--hidden-dim", type=int, default=None)
    train.add_argument("--no-attention", action="store_true", help="condition on pooled features only")
    train.add_argument("--text-weight", type=float, default=None, help="weight of the text-only MeSH loss")
    train.add_argument(
        "--finetune-encoder", action="store_true", help="train the encoder too (slow on a CPU)"
    )
    train.add_argument("--encoder-lr", type=float, default=None)
    train.add_argument("--seed", type=int, default=None)
    arguments.add_device(train)
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser("evaluate", help="BLEU-1..4 and slot accuracy on a PAIRS split")
    arguments.add_checkpoint(evaluate, "RUN/caption.pt", metavar="CKPT")
    evaluate.add_argument("--pairs", required=True, metavar="PAIRS.csv")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    evaluate.add_argument("--beam", type=int, default=3, help="beam width (1: greedy)")
    evaluate.add_argument("--length-alpha", type=float, default=0.7, help="length-penalty exponent")
    evaluate.add_argument("--classifier", metavar="CKPT", help="decide true positives with this classifier")
    evaluate.add_argument("--json", metavar="OUT", help="also write the full report as JSON")
    arguments.add_device(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    predict = commands.add_parser("predict", help="describe findings in image files")
    predict.add_argument("files", nargs="+", metavar="FILE")
    arguments.add_checkpoint(predict, "RUN/caption.pt", metavar="CKPT")
    predict.add_argument(
        "--finding",
        action="append",
        metavar="F",
        help="finding to describe (repeatable); default: each finding the encoder calls positive",
    )
    predict.add_argument("--beam", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="print JSON")
    arguments.add_device(predict)
    predict.set_defaults(func=run_predict)


def run_pairs(args: argparse.Namespace) -> int:
    from collections import Counter

    from cxreader.captioning.pairs import openi_pairs, synthetic_pairs, write_pairs

    if args.synthetic:
        if args.images:
            raise ConfigError("--images goes with --openi (a synthetic dataset has its own images/)")
        pairs = synthetic_pairs(args.synthetic, seed=args.seed, val_fraction=args.val_fraction)
    else:
        from cxreader.data.openi import load_openi

        if not args.images:
            raise ConfigError("--openi needs --images DIR: the folder of the OpenI image files")
        dataset = load_openi(args.openi, images_dir=args.images)
        pairs = openi_pairs(dataset, seed=args.seed, mapped_only=args.mapped_only)
        if dataset.warnings:
            print("OpenI warnings: " + ", ".join(f"{k} {v}" for k, v in sorted(dataset.warnings.items())))
    if not pairs:
        raise ConfigError("no pairs: the dataset has no described finding with an image file")
    count = write_pairs(pairs, args.out)
    splits = Counter(pair.split for pair in pairs)
    images = len({pair.image for pair in pairs})
    print(
        f"{count} pairs of {images} images -> {args.out} "
        f"({', '.join(f'{name} {splits.get(name, 0)}' for name in ('train', 'val', 'test'))})"
    )
    if args.synthetic:
        print(SYNTHETIC_NOTE)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from cxreader.captioning.pairs import mesh_sequences, read_pairs
    from cxreader.captioning.train import CaptionTrainConfig, train_captioner

    keys = ("epochs", "batch_size", "lr", "cell", "hidden_dim", "text_weight", "encoder_lr", "seed")
    overrides = {key: getattr(args, key) for key in keys}
    overrides["attention"] = False if args.no_attention else None
    overrides["finetune_encoder"] = True if args.finetune_encoder else None
    config = CaptionTrainConfig(
        device=args.device, **{key: value for key, value in overrides.items() if value is not None}
    )
    pairs = read_pairs(args.pairs)
    text: list[list[str]] = []
    if args.mesh_reports:
        text, warnings = mesh_sequences(args.mesh_reports)
        note = f" (reader warnings: {sum(warnings.values())})" if warnings else ""
        print(f"{len(text)} real MeSH sequences from {args.mesh_reports}{note}")
    started = time.perf_counter()
    result = train_captioner(
        pairs,
        args.encoder,
        args.out,
        config=config,
        text_sequences=text,
        progress=lambda line: print(line, flush=True),
    )
    total = time.perf_counter() - started
    print(
        f"best epoch {result.best_epoch} (val loss {result.best_val_loss:.4f}) -> {result.checkpoint}; "
        f"features {result.feature_seconds:.1f} s, decoder training {result.train_seconds:.1f} s, total {total:.1f} s"
    )
    if all(pair.source == "synthetic" for pair in pairs):
        print(SYNTHETIC_NOTE)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from cxreader.captioning.evaluate import evaluate_captioner, format_report
    from cxreader.captioning.pairs import read_pairs, select_split
    from cxreader.captioning.predict import CaptionPredictor
    from cxreader.models.checkpoint import load_checkpoint

    predictor = CaptionPredictor(
        args.checkpoint, device=args.device, beam_size=args.beam, length_alpha=args.length_alpha
    )
    pairs = select_split(read_pairs(args.pairs), args.split)
    if not pairs:
        raise ConfigError(f"{args.pairs}: no pairs in split {args.split!r}")
    classifier = load_checkpoint(args.classifier) if args.classifier else None
    report = evaluate_captioner(
        predictor, pairs, classifier=classifier, progress=lambda line: print(line, flush=True)
    )
    report.update(checkpoint=str(args.checkpoint), pairs_file=str(args.pairs), split=args.split)
    report["disclaimer"] = DISCLAIMER
    print(format_report(report))
    if args.json:
        arguments.write_json(args.json, report)
        print(f"report -> {args.json}")
    print(DISCLAIMER)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from cxreader.captioning.predict import CaptionPredictor

    predictor = CaptionPredictor(args.checkpoint, device=args.device, beam_size=args.beam)
    results = predictor.describe_files(args.files, args.finding)
    synthetic = predictor.contract.synthetic
    if args.json:
        arguments.print_json_results([result.to_json_dict() for result in results], synthetic)
    else:
        for result in results:
            if result.error:
                print(f"{result.path}: ERROR {result.error}")
                continue
            print(f"{result.path}:")
            if not result.captions:
                print("  (no finding called positive)")
            for caption in result.captions:
                probability = result.probabilities.get(caption.finding or "", None)
                shown = f"  p={probability:.3f}" if probability is not None else ""
                print(f"  {caption.text}{shown}")
        arguments.print_footer(synthetic)
    return 1 if any(result.error for result in results) else 0
