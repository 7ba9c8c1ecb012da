"""The caption vocabulary: special ids, build, encode/decode, save/load inside a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxreader.captioning.vocab import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, Vocabulary
from cxreader.errors import CheckpointError
from cxreader.vocabulary import annotation_tokens, parse_mesh

SEQUENCES = [
    ["effusion", "right", "small"],
    ["effusion", "left", "small"],
    ["cardiomegaly", "mild"],
    ["nodule", "lung", "right", "upper_lobe"],
    ["effusion", "bilateral"],
]


def test_special_tokens_have_fixed_ids() -> None:
    vocab = Vocabulary()
    assert vocab.tokens == [PAD, BOS, EOS, UNK] == list(SPECIAL_TOKENS)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)


def test_build_orders_by_count_then_name_and_honours_min_count() -> None:
    vocab = Vocabulary.build(SEQUENCES)
    assert vocab.tokens[4:] == [
        "effusion", "right", "small", "bilateral", "cardiomegaly",
        "left", "lung", "mild", "nodule", "upper_lobe",
    ]  # fmt: skip
    assert Vocabulary.build(SEQUENCES, min_count=2).tokens[4:] == ["effusion", "right", "small"]
    assert Vocabulary.build(reversed(SEQUENCES)) == vocab  # the same ids whatever the order of the data
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(SEQUENCES, min_count=0)
    with pytest.raises(TypeError, match="not strings"):
        Vocabulary.build(["effusion right"])


def test_encode_decode() -> None:
    vocab = Vocabulary.build(SEQUENCES, min_count=2)
    ids = vocab.encode(["effusion", "left", "small"])
    assert ids == [1, vocab.token_to_id("effusion"), vocab.unk_id, vocab.token_to_id("small"), 2]
    assert vocab.decode(ids) == ["effusion", UNK, "small"]
    # Decoding a decoder's raw output: stop at <eos>, drop <bos> and padding.
    assert vocab.decode([1, 4, 0, 5, 2, 6, 6]) == ["effusion", "right"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([99])
    with pytest.raises(TypeError, match="not a string"):
        vocab.encode("effusion")


def test_constructor_refuses_bad_tokens() -> None:
    with pytest.raises(ValueError, match="duplicate vocabulary tokens: a"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="special token"):
        Vocabulary([EOS])
    with pytest.raises(ValueError, match="non-empty string"):
        Vocabulary([""])


def test_save_and_load_inside_a_checkpoint(tmp_path: Path) -> None:
    import torch

    vocab = Vocabulary.build(SEQUENCES)
    path = tmp_path / "captioner.pt"
    torch.save({"vocab": vocab.to_dict(), "state_dict": {"w": torch.zeros(2)}}, path)
    # weights_only loading accepts it: the vocabulary is plain lists, strings and ints.
    loaded = Vocabulary.from_dict(torch.load(path, weights_only=True)["vocab"])
    assert loaded == vocab and loaded.encode(SEQUENCES[3]) == vocab.encode(SEQUENCES[3])
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a dict"),
        ({"format": 2, "special_tokens": list(SPECIAL_TOKENS), "tokens": []}, "unsupported format 2"),
        ({"format": 1, "special_tokens": ["<pad>", "<s>", "</s>", "<unk>"], "tokens": []}, "special tokens"),
        ({"format": 1, "special_tokens": list(SPECIAL_TOKENS), "tokens": "abc"}, "must be a list"),
        ({"format": 1, "special_tokens": list(SPECIAL_TOKENS), "tokens": ["a", "a"]}, "duplicate"),
    ],
)
def test_from_dict_refuses_what_is_not_a_vocabulary(data: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Vocabulary.from_dict(data)


def test_real_mesh_vocabulary(shared_data: Path) -> None:
    from cxreader.data.openi import iter_openi_reports

    reports = iter_openi_reports(shared_data / "meta/NLMCXR_reports.tgz")
    sequences = [annotation_tokens(parse_mesh(term)) for report in reports for term in report.mesh_major]
    vocab = Vocabulary.build(sequences)
    # "lung" is the organ of most parenchymal terms and a heading of its own: the commonest token.
    assert vocab.tokens[4:6] == ["lung", "normal"]
    assert all(vocab.unk_id not in vocab.encode(sequence) for sequence in sequences)
    assert all(vocab.decode(vocab.encode(sequence)) == sequence for sequence in sequences)
    assert len(Vocabulary.build(sequences, min_count=5)) < len(vocab)
