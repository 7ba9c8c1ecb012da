"""A token vocabulary for the caption decoder, saved inside its checkpoint as a plain dict.

Four special tokens come first, at fixed ids: ``<pad>`` = 0 (so zero-padded batches need no lookup),
``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3. The other tokens follow by decreasing count (ties in alphabetical
order), so building from the same sequences always gives the same ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cxreader.errors import CheckpointError

PAD = "<pad>"
BOS = "<bos>"
EOS = "<eos>"
UNK = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)

#: Version of the :meth:`Vocabulary.to_dict` layout.
VOCAB_FORMAT = 1


class Vocabulary:
    """Token <-> id mapping with the special tokens of :data:`SPECIAL_TOKENS` at ids 0-3.

    Args:
        tokens: The ordinary tokens, in id order (ids start at 4). Duplicates and special tokens are refused.
    """

    pad_id = SPECIAL_TOKENS.index(PAD)
    bos_id = SPECIAL_TOKENS.index(BOS)
    eos_id = SPECIAL_TOKENS.index(EOS)
    unk_id = SPECIAL_TOKENS.index(UNK)

    def __init__(self, tokens: Iterable[str] = ()):
        self._tokens: list[str] = list(SPECIAL_TOKENS)
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise ValueError(f"a vocabulary token must be a non-empty string, got {token!r}")
            if token in SPECIAL_TOKENS:
                raise ValueError(f"{token!r} is a special token; it is always in the vocabulary")
            self._tokens.append(token)
        self._ids = {token: index for index, token in enumerate(self._tokens)}
        if len(self._ids) != len(self._tokens):
            duplicates = sorted(token for token, n in Counter(self._tokens).items() if n > 1)
            raise ValueError(f"duplicate vocabulary tokens: {', '.join(duplicates)}")

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """A vocabulary of every token seen at least ``min_count`` times, most frequent first.

        Args:
            sequences: Token sequences (e.g. :func:`cxreader.vocabulary.annotation_tokens` outputs).
            min_count: Rarer tokens are left out and encode as ``<unk>``.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts: Counter[str] = Counter()
        for sequence in sequences:
            if isinstance(sequence, str):  # a bare string would be counted character by character
                raise TypeError("sequences must be sequences of tokens, not strings")
            counts.update(sequence)
        kept = [token for token, n in counts.items() if n >= min_count and token not in SPECIAL_TOKENS]
        kept.sort(key=lambda token: (-counts[token], token))
        return cls(kept)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, special tokens first."""
        return list(self._tokens)

    def token_to_id(self, token: str) -> int:
        """The id of a token; ``<unk>``'s id for a token outside the vocabulary."""
        return self._ids.get(token, self.unk_id)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids of a sequence, framed by ``<bos>`` and ``<eos>``."""
        if isinstance(tokens, str):
            raise TypeError("encode takes a sequence of tokens, not a string")
        return [self.bos_id, *(self.token_to_id(token) for token in tokens), self.eos_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of a decoder's raw output: up to the first ``<eos>``, without ``<bos>`` and ``<pad>``.

        ``<unk>`` is kept, as it carries information.

        Raises:
            ValueError: for an id outside ``0 .. len(self) - 1``.
        """
        tokens = []
        for index in map(int, ids):
            if not 0 <= index < len(self._tokens):
                raise ValueError(f"token id {index} is outside the vocabulary (0..{len(self._tokens) - 1})")
            token = self._tokens[index]
            if token == EOS:
                break
            if token not in (BOS, PAD):
                tokens.append(token)
        return tokens

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and ``torch.save``-friendly dict that :meth:`from_dict` reads back."""
        return {
            "format": VOCAB_FORMAT,
            "special_tokens": list(SPECIAL_TOKENS),
            "tokens": self._tokens[len(SPECIAL_TOKENS) :],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Read a vocabulary written by :meth:`to_dict` (from a checkpoint).

        Raises:
            CheckpointError: when the dict is not such a vocabulary (wrong format, other special tokens, ...).
        """
        if not isinstance(data, Mapping):
            raise CheckpointError(f"caption vocabulary: expected a dict, got {type(data).__name__}")
        if data.get("format") != VOCAB_FORMAT:
            raise CheckpointError(
                f"caption vocabulary: unsupported format {data.get('format')!r} (expected {VOCAB_FORMAT})"
            )
        if list(data.get("special_tokens", ())) != list(SPECIAL_TOKENS):
            raise CheckpointError(
                f"caption vocabulary: special tokens {data.get('special_tokens')!r} differ from "
                f"{list(SPECIAL_TOKENS)}; ids would not line up with this version of cxreader"
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise CheckpointError("caption vocabulary: 'tokens' must be a list of strings")
        try:
            return cls(tokens)
        except ValueError as exc:
            raise CheckpointError(f"caption vocabulary: {exc}") from exc
