"""BLEU-1..4 (sacreBLEU, corpus level) and per-slot accuracy of decoded annotations."""

from __future__ import annotations

import math

import pytest

from cxreader.captioning.evaluate import (
    CaptionGroup,
    bleu_scores,
    corpus_metrics,
    exact_match,
    slot_accuracy,
    slot_value,
)
from cxreader.vocabulary import tokens_to_annotation

EFFUSION = ("effusion", "pleura", "right", "lower_lobe", "moderate")
NODULE = ("nodule", "lung", "left", "upper_lobe", "mild", "small")


def test_bleu_of_identical_sequences_is_one():
    scores = bleu_scores([[EFFUSION], [NODULE]], [EFFUSION, NODULE])
    assert scores == pytest.approx({"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0})


def test_bleu_matches_the_hand_computed_value():
    # 4 tokens, 3 right: precisions 3/4, 2/3, 1/2, 0/1; equal lengths, so no brevity penalty.
    scores = bleu_scores([[("a", "b", "c", "e")]], [("a", "b", "c", "d")])
    assert scores["bleu1"] == pytest.approx(0.75)
    assert scores["bleu2"] == pytest.approx(math.sqrt(0.75 * 2 / 3))
    assert scores["bleu3"] == pytest.approx((0.75 * 2 / 3 * 0.5) ** (1 / 3))
    assert scores["bleu4"] == 0.0  # no smoothing: no 4-gram in common


def test_bleu_uses_every_reference_and_the_brevity_penalty():
    assert bleu_scores([[NODULE, EFFUSION]], [EFFUSION])["bleu4"] == pytest.approx(1.0)
    short = bleu_scores([[EFFUSION]], [EFFUSION[:4]])
    assert short["bleu1"] == pytest.approx(math.exp(1 - 5 / 4))  # all 4 unigrams right, BP = e^(1 - r/c)
    assert bleu_scores([], []) == {"bleu1": 0.0, "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0}
    with pytest.raises(ValueError, match="hypotheses"):
        bleu_scores([[EFFUSION]], [])
    with pytest.raises(ValueError, match="at least one reference"):
        bleu_scores([[]], [EFFUSION])


def test_slot_values_parse_the_tokens_back():
    annotation = tokens_to_annotation(EFFUSION)
    assert slot_value(annotation, "finding") == "Effusion"
    assert slot_value(annotation, "side") == "right"
    assert slot_value(annotation, "zone") == "lower"
    assert slot_value(annotation, "severity") == "moderate"
    assert (
        slot_value(tokens_to_annotation(["calcified_granuloma", "lung"]), "finding") == "calcified granuloma"
    )
    assert slot_value(None, "side") is None
    with pytest.raises(ValueError, match="slot"):
        slot_value(annotation, "colour")


def test_slot_accuracy_counts_only_references_that_have_the_slot():
    references = [[EFFUSION], [("cardiomegaly", "heart", "midline", "severe")], [NODULE]]
    hypotheses = [
        ("effusion", "pleura", "left", "lower_lobe", "moderate"),  # side wrong
        ("cardiomegaly", "heart", "midline", "mild"),  # severity wrong; no zone in the reference
        (),  # nothing decoded: every slot wrong
    ]
    result = slot_accuracy(references, hypotheses)
    assert result["side"] == {"correct": 1, "total": 3, "accuracy": pytest.approx(1 / 3)}
    assert result["zone"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert result["severity"] == {"correct": 1, "total": 3, "accuracy": pytest.approx(1 / 3)}
    # Any reference's value counts when there are several.
    assert slot_accuracy([[EFFUSION, NODULE]], [NODULE], slots=("side",))["side"]["accuracy"] == 1.0
    assert slot_accuracy([], [], slots=("side",))["side"]["accuracy"] is None


def test_exact_match_and_corpus_metrics():
    assert exact_match([[EFFUSION], [NODULE]], [EFFUSION, EFFUSION]) == 0.5
    assert exact_match([], []) is None
    groups = [
        CaptionGroup(
            image="a.png", finding="Effusion", query="effusion", references=[EFFUSION], hypothesis=EFFUSION
        ),
        CaptionGroup(image="b.png", finding="Nodule", query="nodule", references=[NODULE], hypothesis=NODULE),
    ]
    metrics = corpus_metrics(groups)
    assert metrics["n"] == 2 and metrics["exact_match"] == 1.0
    assert metrics["bleu"]["bleu4"] == pytest.approx(1.0)
    assert metrics["bleu_context"]["bleu4"] == pytest.approx(1.0)
    assert metrics["slots"]["side"]["accuracy"] == 1.0
