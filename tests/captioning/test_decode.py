"""Greedy and beam-search decoding: shapes, forced prefixes, beam 1 = greedy, beam >= greedy, length penalty."""

from __future__ import annotations

import math

import pytest
import torch

from cxreader.captioning.decode import Hypothesis, beam_search, greedy_decode, length_penalty
from cxreader.captioning.vocab import Vocabulary
from cxreader.models.captioner import CaptionDecoder, DecoderMemory

BOS, EOS = Vocabulary.bos_id, Vocabulary.eos_id


def _tiny_decoder(seed: int = 0, vocab_size: int = 9) -> CaptionDecoder:
    torch.manual_seed(seed)
    decoder = CaptionDecoder(vocab_size, 6, embed_dim=8, hidden_dim=16, attention_dim=8, dropout=0.0)
    return decoder.eval()


def test_greedy_decodes_after_the_forced_prefix():
    decoder = _tiny_decoder()
    for forced in (5, 6, 7):
        memory = decoder.memory(torch.randn(1, 6, 2, 2))
        hypothesis = greedy_decode(decoder, memory, [BOS, forced], eos_id=EOS, max_len=5)
        assert hypothesis.ids[0] == forced  # the query comes back as the first token
        assert 1 <= len(hypothesis.ids) <= 1 + 5
        assert EOS not in hypothesis.ids and BOS not in hypothesis.ids
        assert hypothesis.log_prob <= 0 and hypothesis.score == hypothesis.log_prob
        assert hypothesis.finished or len(hypothesis.ids) == 1 + 5


def test_greedy_refuses_mismatched_inputs():
    decoder = _tiny_decoder()
    with pytest.raises(ValueError, match="one image"):
        greedy_decode(decoder, decoder.memory(torch.randn(2, 6, 2, 2)), [BOS], eos_id=EOS)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        greedy_decode(decoder, decoder.memory(torch.randn(1, 6, 2, 2)), [BOS, 99], eos_id=EOS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beams_are_never_worse_than_greedy(seed: int):
    """A beam of one follows the greedy path and also keeps the sequences that end on the way, so its best
    finished sequence is at least as probable as greedy's; wider beams are checked on the same models."""
    decoder = _tiny_decoder(seed)
    compared = 0
    for image in range(3):
        torch.manual_seed(100 * seed + image)
        memory = decoder.memory(torch.randn(1, 6, 2, 2))
        for prefix in ([BOS], [BOS, 5]):
            greedy = greedy_decode(decoder, memory, prefix, eos_id=EOS, max_len=12)
            one = beam_search(decoder, memory, prefix, eos_id=EOS, beam_size=1, max_len=12, length_alpha=0.0)
            wide = beam_search(decoder, memory, prefix, eos_id=EOS, beam_size=9, max_len=12, length_alpha=0.0)
            assert one[0].ids[: len(prefix) - 1] == tuple(prefix[1:])
            done = [h.score for h in wide if h.finished]
            assert done == sorted(done, reverse=True)
            assert [h.finished for h in wide] == sorted(
                (h.finished for h in wide), reverse=True
            )  # finished first
            assert all(Vocabulary.pad_id not in h.ids and BOS not in h.ids for h in (greedy, *one, *wide))
            if greedy.finished:
                compared += 1
                assert one[0].log_prob >= greedy.log_prob - 1e-6
                assert wide[0].log_prob >= greedy.log_prob - 1e-6
    assert compared >= 3


def test_beam_of_one_equals_greedy_when_no_shorter_sequence_wins():
    decoder = _TableDecoder()
    memory = DecoderMemory(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1))
    greedy = greedy_decode(decoder, memory, [BOS], eos_id=EOS, max_len=4)
    one = beam_search(decoder, memory, [BOS], eos_id=EOS, beam_size=1, max_len=4, length_alpha=0.0)[0]
    assert one.ids == greedy.ids == (4,)
    assert one.log_prob == pytest.approx(greedy.log_prob)


class _TableDecoder:
    """A decoder whose next-token distribution depends only on the previous token (a Markov chain).

    After <bos>: token 4 (p 0.6) or token 5 (p 0.4). After 4: <eos>, 6, 7 at p 0.34, 0.33, 0.33 and after 6
    or 7: <eos> for sure. After 5: <eos> for sure. Greedy takes 4 then <eos>: p = 0.204; the best sequence
    is [5] with p = 0.4, which a beam of two finds.
    """

    vocab_size = 8

    def __init__(self):
        table = torch.full((8, 8), 1e-9)
        table[BOS, 4], table[BOS, 5] = 0.6, 0.4
        table[4, EOS], table[4, 6], table[4, 7] = 0.34, 0.33, 0.33
        table[5, EOS] = table[6, EOS] = table[7, EOS] = 1.0
        self.log_table = table.log()

    def init_state(self, memory):
        return (torch.zeros(memory.values.shape[0], 1),)

    def step(self, tokens, state, memory):
        return self.log_table[tokens], state, None


def test_beam_search_finds_what_greedy_misses():
    decoder = _TableDecoder()
    memory = DecoderMemory(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1))
    greedy = greedy_decode(decoder, memory, [BOS], eos_id=EOS, max_len=4)
    assert greedy.ids == (4,) and math.exp(greedy.log_prob) == pytest.approx(0.6 * 0.34, rel=1e-4)
    best = beam_search(decoder, memory, [BOS], eos_id=EOS, beam_size=2, max_len=4, length_alpha=0.0)[0]
    assert best.ids == (5,) and math.exp(best.log_prob) == pytest.approx(0.4, rel=1e-4) and best.finished


def test_length_penalty_favours_longer_sequences_when_alpha_is_positive():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(1, 1.0) == pytest.approx(1.0)  # (5 + 1) / 6
    assert length_penalty(7, 0.7) == pytest.approx(2.0**0.7)
    decoder = _TableDecoder()
    memory = DecoderMemory(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1))
    # log 0.4 / lp(2) vs log(0.6 * 0.33) / lp(3): a strong penalty makes the longer [4, 6] win.
    best = beam_search(decoder, memory, [BOS], eos_id=EOS, beam_size=3, max_len=4, length_alpha=8.0)[0]
    assert len(best.ids) == 2


def test_beam_search_arguments_are_checked():
    decoder = _tiny_decoder()
    with pytest.raises(ValueError, match="one image"):
        beam_search(decoder, decoder.memory(torch.randn(2, 6, 2, 2)), [BOS], eos_id=EOS)
    memory = decoder.memory(torch.randn(1, 6, 2, 2))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(decoder, memory, [BOS], eos_id=EOS, beam_size=0)
    with pytest.raises(ValueError, match="at least <bos>"):
        beam_search(decoder, memory, [], eos_id=EOS)


def test_hypothesis_tokens_drop_special_tokens():
    vocab = Vocabulary(["effusion", "right"])
    assert Hypothesis(ids=(4, 5), log_prob=-1.0, score=-1.0, finished=True).tokens(vocab) == [
        "effusion",
        "right",
    ]
