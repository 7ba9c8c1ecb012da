"""Evaluating learned captions: corpus BLEU-1..4 and per-slot accuracy, on all pairs and on true positives.

BLEU (Papineni et al., "BLEU: a method for automatic evaluation of machine translation", ACL 2002) is
computed with sacreBLEU (Post, "A Call for Clarity in Reporting BLEU Scores", WMT 2018) at corpus level, on
the annotation tokens as they are (``tokenize="none"``), without smoothing; BLEU-n is the geometric mean of the
1..n-gram precisions times the brevity penalty, as in the captioning literature Shin et al. (CVPR 2016) report.
A (image, finding) with several reference annotations (an OpenI report listing two terms for one finding)
is scored against all of them. Two BLEU figures are given: on the whole annotation (``bleu``, the finding
token included, as written in MeSH) and on its context alone (``bleu_context``, the tokens after the finding
token, which the query forces and which would otherwise count as a free correct unigram).

Slot accuracy parses each decoded sequence back with :func:`cxreader.vocabulary.tokens_to_annotation`:
side, zone (:func:`~cxreader.vocabulary.zone_of`) and severity are scored on the pairs whose reference
has that slot, the decoded value having to equal it (any reference's, when there are several). The finding
slot cannot be scored on the conditioned captions (the finding is the query); it is scored on free decoding,
from ``<bos>`` alone, per image: the finding the decoder names first must be one present in the image.

"True positives" are the (image, finding) pairs whose finding the classifier calls positive: the captioner's
own encoder head at the encoder checkpoint's thresholds (the unchanged classifier when the encoder is frozen,
the default), or another classifier checkpoint when given. Every reference pair is a finding truly present.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU

from cxreader.captioning.features import read_images
from cxreader.captioning.pairs import CaptionPair
from cxreader.captioning.predict import CaptionPredictor, caption_text
from cxreader.errors import DataError
from cxreader.inference.predict import Predictor
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import LoadedCheckpoint
from cxreader.vocabulary import MeshAnnotation, tokens_to_annotation, zone_of

#: Slots scored on the conditioned captions; ``side_lateral`` is the side slot on the references whose side is
#: right or left (a midline or bilateral side follows from the finding itself; right vs left must be seen).
CONTEXT_SLOTS: tuple[str, ...] = ("side", "side_lateral", "zone", "severity")
#: Every slot reported (the finding from free decoding).
SLOTS: tuple[str, ...] = ("finding", *CONTEXT_SLOTS)
LATERAL_SIDES = frozenset({"right", "left"})
MAX_ORDER = 4
#: Decoded groups listed in an evaluation report.
EXAMPLES = 10


def bleu_scores(
    references: Sequence[Sequence[Sequence[str]]], hypotheses: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU-1..4 in [0, 1] with sacreBLEU (see the module docstring).

    Args:
        references: For each hypothesis, one or more reference token sequences.

    Returns:
        ``{"bleu1": ..., "bleu2": ..., ...}``; all 0.0 for an empty corpus.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    if not hypotheses:
        return {f"bleu{n}": 0.0 for n in range(1, MAX_ORDER + 1)}
    hyps = [" ".join(hypothesis) for hypothesis in hypotheses]
    streams = max(len(refs) for refs in references)
    # sacreBLEU takes one stream per reference position; None marks a missing reference of that position.
    refs = [
        [" ".join(ref_set[k]) if k < len(ref_set) else None for ref_set in references] for k in range(streams)
    ]
    scores = {}
    for n in range(1, MAX_ORDER + 1):
        metric = BLEU(tokenize="none", smooth_method="none", max_ngram_order=n, effective_order=False)
        scores[f"bleu{n}"] = metric.corpus_score(hyps, refs).score / 100.0
    return scores


def slot_value(annotation: MeshAnnotation | None, slot: str) -> str | None:
    """The value of one slot (see :data:`SLOTS`) of an annotation; None when absent."""
    if annotation is None:
        return None
    if slot == "side_lateral":
        return annotation.side if annotation.side in LATERAL_SIDES else None
    if slot == "finding":
        return annotation.finding if annotation.finding is not None else annotation.heading.lower()
    if slot == "zone":
        return zone_of(annotation)
    if slot in ("side", "severity"):
        return getattr(annotation, slot)
    raise ValueError(f"unknown slot {slot!r}; expected one of {', '.join(SLOTS)}")


def _parse(tokens: Sequence[str]) -> MeshAnnotation | None:
    return tokens_to_annotation(tokens) if tokens else None


def slot_accuracy(
    references: Sequence[Sequence[Sequence[str]]],
    hypotheses: Sequence[Sequence[str]],
    slots: Iterable[str] = CONTEXT_SLOTS,
) -> dict[str, dict[str, float]]:
    """Per-slot accuracy of decoded sequences against their references (rules in the module docstring).

    Returns:
        ``{slot: {"correct": int, "total": int, "accuracy": float | None}}``; ``total`` counts the pairs whose
        references have the slot; ``accuracy`` is None when ``total`` is 0.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    result = {}
    parsed_refs = [[_parse(ref) for ref in refs] for refs in references]
    parsed_hyps = [_parse(hyp) for hyp in hypotheses]
    for slot in slots:
        correct = total = 0
        for refs, hyp in zip(parsed_refs, parsed_hyps, strict=True):
            wanted = {value for value in (slot_value(ref, slot) for ref in refs) if value is not None}
            if not wanted:
                continue
            total += 1
            correct += slot_value(hyp, slot) in wanted
        result[slot] = {"correct": correct, "total": total, "accuracy": correct / total if total else None}
    return result


def exact_match(
    references: Sequence[Sequence[Sequence[str]]], hypotheses: Sequence[Sequence[str]]
) -> float | None:
    """Share of hypotheses equal to one of their references (None for an empty corpus)."""
    if not hypotheses:
        return None
    hits = sum(
        tuple(hyp) in {tuple(ref) for ref in refs} for refs, hyp in zip(references, hypotheses, strict=True)
    )
    return hits / len(hypotheses)


@dataclass
class CaptionGroup:
    """One (image, query) with its references and, after decoding, its caption."""

    image: str
    finding: str | None
    query: str
    references: list[tuple[str, ...]]
    hypothesis: tuple[str, ...] = ()
    probability: float | None = None
    positive: bool = False


def group_pairs(pairs: Sequence[CaptionPair]) -> list[CaptionGroup]:
    """Group pairs by (image, query token); each group keeps every distinct reference, in file order."""
    groups: dict[tuple[str, str], CaptionGroup] = {}
    for pair in pairs:
        key = (str(pair.image), pair.query)
        group = groups.setdefault(
            key, CaptionGroup(image=key[0], finding=pair.finding, query=pair.query, references=[])
        )
        if pair.tokens not in group.references:
            group.references.append(pair.tokens)
    return list(groups.values())


def corpus_metrics(groups: Sequence[CaptionGroup]) -> dict[str, Any]:
    """BLEU on whole annotations and on their context, slot accuracy and exact match of decoded groups."""
    references = [group.references for group in groups]
    hypotheses = [group.hypothesis for group in groups]
    context_refs = [[ref[1:] for ref in group.references] for group in groups]
    context_hyps = [group.hypothesis[1:] for group in groups]
    usable = [i for i, refs in enumerate(context_refs) if any(refs)]
    return {
        "n": len(groups),
        "bleu": bleu_scores(references, hypotheses),
        "bleu_context": bleu_scores(
            [[ref for ref in context_refs[i] if ref] for i in usable], [context_hyps[i] for i in usable]
        ),
        "slots": slot_accuracy(references, hypotheses),
        "exact_match": exact_match(references, hypotheses),
    }


def evaluate_captioner(
    predictor: CaptionPredictor,
    pairs: Sequence[CaptionPair],
    *,
    classifier: LoadedCheckpoint | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Decode every (image, finding) of ``pairs`` and score the captions.

    Args:
        predictor: The captioner and its decoding settings.
        pairs: The pairs to score (usually the test split).
        classifier: Decides the true positives instead of the captioner's encoder head.
        progress: Called with a line now and then.

    Returns:
        A JSON-ready dict: counts, ``all`` and ``true_positives`` metrics (:func:`corpus_metrics`), the
        free-decoding ``finding`` accuracy, decoding settings, examples and timing.

    Raises:
        DataError: no pairs, or none of their images readable.
    """
    say = progress or (lambda line: None)
    if not pairs:
        raise DataError("pairs", "no pairs to evaluate")
    started = time.perf_counter()
    groups = group_pairs(pairs)
    paths = sorted({group.image for group in groups})
    images, row_of, errors = read_images(paths, predictor.contract.encoder.input_size)
    features = predictor.features(images)
    labels: tuple[str, ...] = FINDINGS  # the encoder head's (a captioner's encoder has the 14 findings)
    if classifier is not None:
        probabilities = Predictor(classifier, device="cpu").predict_arrays(images)
        thresholds = np.asarray(classifier.contract.thresholds, dtype=np.float32)
        labels = tuple(classifier.contract.labels)  # its outputs come in its own label order
        classifier_name = str(classifier.path)
    else:
        probabilities = predictor.probabilities(features)
        thresholds = predictor.thresholds
        classifier_name = "captioner encoder head" + (
            "" if predictor.contract.encoder_frozen else " (fine-tuned)"
        )
    say(f"{len(images)} images encoded ({len(errors)} unreadable); decoding {len(groups)} captions")

    decoded = [group for group in groups if group.image in row_of]
    for number, group in enumerate(decoded, start=1):
        row = row_of[group.image]
        group.hypothesis = predictor.caption(features[row : row + 1], group.query).tokens
        if group.finding is not None and group.finding in labels:  # else the classifier has no say on it
            index = labels.index(group.finding)
            group.probability = float(probabilities[row, index])
            group.positive = group.probability >= float(thresholds[index])
        if number % 200 == 0:
            say(f"  {number}/{len(decoded)} captions")

    # Free decoding, once per image: does the decoder name a finding the image has?
    per_image: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for group in decoded:
        per_image[group.image].extend(group.references)
    free_hyps = []
    for image in per_image:
        row = row_of[image]
        free_hyps.append(predictor.caption(features[row : row + 1], None).tokens)
    finding_slot = slot_accuracy(list(per_image.values()), free_hyps, slots=("finding",))["finding"]

    all_metrics = corpus_metrics(decoded)
    all_metrics["slots"] = {"finding": finding_slot, **all_metrics["slots"]}
    return {
        "pairs": len(pairs),
        "groups": len(groups),
        "decoded": len(decoded),
        "images": len(paths),
        "unreadable_images": errors,
        "synthetic": predictor.contract.synthetic or all(pair.source == "synthetic" for pair in pairs),
        "decoding": {
            "beam_size": predictor.beam_size,
            "length_alpha": predictor.length_alpha,
            "max_len": predictor.contract.max_len,
        },
        "classifier": classifier_name,
        "bleu_implementation": "sacrebleu corpus BLEU, tokenize=none, no smoothing",
        "all": all_metrics,
        "true_positives": corpus_metrics([group for group in decoded if group.positive]),
        "finding_free_decoding": finding_slot,
        "examples": [
            {
                "image": group.image,
                "finding": group.finding,
                "references": [caption_text(ref) for ref in group.references],
                "caption": caption_text(group.hypothesis),
                "probability": group.probability,
                "positive": group.positive,
            }
            for group in decoded[:EXAMPLES]
        ],
        "seconds": round(time.perf_counter() - started, 2),
    }


def format_report(report: dict[str, Any]) -> str:
    """A readable summary of :func:`evaluate_captioner`'s result."""
    lines = []
    if report.get("synthetic"):
        lines.append("SYNTHETIC data: these figures describe synthetic images, not patients.")
    decoding = report["decoding"]
    lines.append(
        f"{report['decoded']} captions of {report['images']} images (beam {decoding['beam_size']}, "
        f"length alpha {decoding['length_alpha']}); true positives by {report['classifier']}"
    )
    for name in ("all", "true_positives"):
        block = report[name]
        bleu = " ".join(f"B{n}={block['bleu'][f'bleu{n}']:.3f}" for n in range(1, MAX_ORDER + 1))
        context = " ".join(f"B{n}={block['bleu_context'][f'bleu{n}']:.3f}" for n in range(1, MAX_ORDER + 1))
        slots = []
        for slot, value in block["slots"].items():
            if value["accuracy"] is not None:
                slots.append(f"{slot} {value['accuracy']:.3f} ({value['correct']}/{value['total']})")
        exact = "n/a" if block["exact_match"] is None else f"{block['exact_match']:.3f}"
        lines.append(f"{name.replace('_', ' ')} (n={block['n']}):")
        lines.append(f"  BLEU          {bleu}")
        lines.append(f"  BLEU context  {context}")
        lines.append(f"  slots         {'; '.join(slots) or 'n/a'}")
        lines.append(f"  exact match   {exact}")
    free = report["finding_free_decoding"]
    if free["accuracy"] is not None:
        lines.append(
            f"free decoding names a present finding: {free['accuracy']:.3f} ({free['correct']}/{free['total']} images)"
        )
    for example in report["examples"][:5]:
        lines.append(
            f"  {example['image']}: {example['caption']}  (reference: {' | '.join(example['references'])})"
        )
    return "\n".join(lines)
