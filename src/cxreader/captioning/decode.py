"""Greedy and beam-search decoding of annotation sequences from a :class:`~cxreader.models.captioner.CaptionDecoder`.

Both start from a prefix of forced tokens: ``<bos>`` and, to describe a given finding, that finding's token
("describe Effusion in this image"); the log-probability of a hypothesis covers the tokens the decoder chose,
``<eos>`` included, not the forced ones. ``<pad>`` and ``<bos>`` are never chosen.

Beam search keeps the ``beam_size`` best partial sequences at every step (looking at the ``2 * beam_size``
best extensions, so that sequences ending there are collected too) and ranks finished ones by their
log-probability divided by the length penalty of Wu et al., "Google's Neural Machine Translation System",
2016: lp(Y) = ((5 + |Y|) / 6)^alpha. With ``alpha = 0`` the score is the plain log-probability. The search
stops when no live hypothesis can still beat the best finished one: log-probabilities only fall as a
sequence grows, so a live one's score is bounded by its log-probability over lp(max_len).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cxreader.captioning.vocab import Vocabulary
from cxreader.models.captioner import CaptionDecoder, DecoderMemory, State


@dataclass(frozen=True)
class Hypothesis:
    """One decoded sequence.

    Attributes:
        ids: Token ids after ``<bos>``: the forced prefix tokens, then the chosen ones, without ``<eos>``.
        log_prob: Sum of the log-probabilities of the chosen tokens (``<eos>`` included when reached).
        score: ``log_prob`` over the length penalty (equal to ``log_prob`` for greedy decoding).
        finished: Whether the sequence ended with ``<eos>`` (False: it hit the length limit).
    """

    ids: tuple[int, ...]
    log_prob: float
    score: float
    finished: bool

    def tokens(self, vocab: Vocabulary) -> list[str]:
        """The tokens of the sequence (special tokens dropped)."""
        return vocab.decode(self.ids)


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. 2016: ((5 + length) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def _next_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next token, ``<pad>`` and ``<bos>`` ruled out: never targets in training,
    their scores mean nothing."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_probs[:, [Vocabulary.pad_id, Vocabulary.bos_id]] = -math.inf
    return log_probs


def _run_prefix(
    decoder: CaptionDecoder, memory: DecoderMemory, prefix: Sequence[int]
) -> tuple[list[int], torch.Tensor, State]:
    """Feed the forced tokens of one image: the checked prefix, the next token's log-probabilities (1, V) and
    the state."""
    if memory.values.shape[0] != 1:
        raise ValueError(f"decoding reads one image at a time, got a memory of {memory.values.shape[0]}")
    prefix = [int(token) for token in prefix]
    if not prefix:
        raise ValueError("a decoding prefix needs at least <bos>")
    if not all(0 <= token < decoder.vocab_size for token in prefix):
        raise ValueError(f"prefix ids {prefix} outside the vocabulary (0..{decoder.vocab_size - 1})")
    state = decoder.init_state(memory)
    for token in prefix:
        logits, state, _ = decoder.step(torch.tensor([token], device=memory.values.device), state, memory)
    return prefix, _next_log_probs(logits), state


@torch.no_grad()
def greedy_decode(
    decoder: CaptionDecoder,
    memory: DecoderMemory,
    prefix: Sequence[int],
    *,
    eos_id: int,
    max_len: int = 16,
) -> Hypothesis:
    """Decode one image by taking the most probable token at every step.

    Args:
        decoder: The decoder (put it in eval mode first: dropout would make the output random).
        memory: :meth:`CaptionDecoder.memory` of one image (batch size 1).
        prefix: The forced tokens (``[bos]`` or ``[bos, finding]``).
        max_len: Most tokens chosen (``<eos>`` included).
    """
    checked, log_probs, state = _run_prefix(decoder, memory, prefix)
    chosen: list[int] = []
    total = 0.0
    for _ in range(max_len):
        best_log_prob, best = log_probs.max(dim=-1)
        total += float(best_log_prob)
        if int(best) == eos_id:
            return Hypothesis(ids=tuple(checked[1:] + chosen), log_prob=total, score=total, finished=True)
        chosen.append(int(best))
        logits, state, _ = decoder.step(best, state, memory)
        log_probs = _next_log_probs(logits)
    return Hypothesis(ids=tuple(checked[1:] + chosen), log_prob=total, score=total, finished=False)


@torch.no_grad()
def beam_search(
    decoder: CaptionDecoder,
    memory: DecoderMemory,
    prefix: Sequence[int],
    *,
    eos_id: int,
    beam_size: int = 3,
    max_len: int = 16,
    length_alpha: float = 0.7,
) -> list[Hypothesis]:
    """Beam search for one image.

    Args:
        decoder: The decoder, in eval mode.
        memory: :meth:`CaptionDecoder.memory` of one image (batch size 1).
        prefix: The forced tokens (``[bos]`` or ``[bos, finding]``).
        beam_size: Live hypotheses kept per step (1 is greedy decoding).
        max_len: Most tokens chosen per sequence (``<eos>`` included).
        length_alpha: Exponent of the length penalty (0: rank by log-probability).

    Returns:
        Up to ``beam_size`` hypotheses, best score first; unfinished ones only when too few finished within
        ``max_len`` tokens.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    checked, log_probs, state = _run_prefix(decoder, memory, prefix)
    device = memory.values.device
    alive_ids: list[list[int]] = [[]]
    alive_scores = torch.zeros(1, dtype=torch.float64, device=device)
    finished: list[Hypothesis] = []
    best_bound_penalty = length_penalty(max_len, length_alpha)

    def make_hypothesis(ids: list[int], log_prob: float, ended: bool) -> Hypothesis:
        length = len(ids) + 1 if ended else len(ids)  # a finished sequence's length counts its <eos>
        return Hypothesis(
            ids=tuple(checked[1:] + ids),
            log_prob=log_prob,
            score=log_prob / length_penalty(length, length_alpha),
            finished=ended,
        )

    for step in range(max_len):
        vocab = log_probs.shape[-1]
        candidates = (alive_scores[:, None] + log_probs.double()).flatten()
        top_scores, top_index = candidates.topk(min(2 * beam_size, candidates.numel()))
        survivors: list[tuple[int, int, float]] = []  # (row, token, score) of the extended live hypotheses
        for score, index in zip(top_scores.tolist(), top_index.tolist(), strict=True):
            if score == -math.inf:  # only ruled-out tokens are left
                break
            row, token = divmod(index, vocab)
            if token == eos_id:
                finished.append(make_hypothesis(alive_ids[row], score, ended=True))
            elif len(survivors) < beam_size:
                survivors.append((row, token, score))
        alive_ids = [alive_ids[row] + [token] for row, token, _ in survivors]
        alive_scores = torch.tensor([score for _, _, score in survivors], dtype=torch.float64, device=device)
        if not survivors or step == max_len - 1:
            break
        if finished:
            best_finished = max(hypothesis.score for hypothesis in finished)
            if best_finished >= float(alive_scores.max()) / best_bound_penalty:
                break
        rows = torch.tensor([row for row, _, _ in survivors], dtype=torch.long, device=device)
        state = tuple(tensor.index_select(0, rows) for tensor in state)
        # Every live hypothesis reads the same image: one copy of it per hypothesis.
        beam_memory = memory.index_select(torch.zeros(len(rows), dtype=torch.long, device=device))
        tokens = torch.tensor([token for _, token, _ in survivors], dtype=torch.long, device=device)
        logits, state, _ = decoder.step(tokens, state, beam_memory)
        log_probs = _next_log_probs(logits)

    ranked = sorted(finished, key=lambda hypothesis: -hypothesis.score)[:beam_size]
    if len(ranked) < beam_size:
        unfinished = [
            make_hypothesis(ids, float(score), ended=False)
            for ids, score in zip(alive_ids, alive_scores.tolist(), strict=True)
        ]
        ranked += sorted(unfinished, key=lambda hypothesis: -hypothesis.score)[: beam_size - len(ranked)]
    return ranked
