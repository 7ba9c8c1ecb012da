"""Learned captions for images: "describe Effusion in this image" with a trained captioner checkpoint.

The captioner's encoder keeps its classification head, so the same checkpoint can also say which findings
are positive (at the encoder checkpoint's operating thresholds) and describe each of them. Captions are
decoded by beam search (greedy with ``beam_size=1``) and written both as tokens and as a MeSH-style string
(``Pleural Effusion/pleura/right/lower lobe/moderate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxreader.captioning.checkpoint import load_caption_checkpoint
from cxreader.captioning.decode import Hypothesis, beam_search, greedy_decode
from cxreader.captioning.features import encoder_features, read_encoder_image
from cxreader.errors import ConfigError, CXReaderError
from cxreader.inference.calibration import contract_calibration
from cxreader.inference.runtime import resolve_device
from cxreader.labels import FINDINGS, NO_FINDING, UnknownFindingError, canonical_finding
from cxreader.vocabulary import to_mesh_string, to_token, tokens_to_annotation


@dataclass(frozen=True)
class Caption:
    """One learned caption.

    Attributes:
        finding: The finding the caption describes (parsed from its first token), or None for a MeSH heading
            that maps to none of the 14.
        text: The annotation as a MeSH-style string.
        log_prob: Log-probability of the decoded tokens.
    """

    finding: str | None
    tokens: tuple[str, ...]
    text: str
    log_prob: float

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "finding": self.finding,
            "tokens": list(self.tokens),
            "text": self.text,
            "log_prob": round(self.log_prob, 4),
        }


def caption_text(tokens: Sequence[str]) -> str:
    """A token sequence as a MeSH-style string; ``""`` for an empty sequence."""
    return to_mesh_string(tokens_to_annotation(tokens)) if tokens else ""


@dataclass
class FileCaptions:
    """The captions of one file, or why it could not be read."""

    path: str
    captions: list[Caption] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "captions": [caption.to_json_dict() for caption in self.captions],
            "probabilities": self.probabilities,
        }


class CaptionPredictor:
    """A caption checkpoint ready to describe images.

    Args:
        checkpoint: ``caption.pt``.
        device: ``auto``, ``cpu`` or ``cuda``.
        beam_size: Beam width (1: greedy decoding).
        length_alpha: Length-penalty exponent of the beam search.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        beam_size: int = 3,
        length_alpha: float = 0.7,
    ):
        if beam_size < 1:
            raise ConfigError(f"beam size must be at least 1, got {beam_size}")
        self.device = resolve_device(device)
        loaded = load_caption_checkpoint(checkpoint, device=self.device)
        self.model = loaded.model
        self.contract = loaded.contract
        self.vocab = self.contract.vocab
        self.transform = self.contract.encoder.eval_preset()
        self.thresholds = np.asarray(self.contract.encoder.thresholds, dtype=np.float32)
        # The encoder checkpoint's thresholds are on its calibrated scale where it carries a calibration.
        self.calibration = contract_calibration(self.contract.encoder, source=str(checkpoint))
        self.beam_size = beam_size
        self.length_alpha = length_alpha

    def query_token(self, finding: str) -> str:
        """The decoder token that asks for ``finding`` (one of the 14, any accepted spelling, or a MeSH
        heading the vocabulary knows).

        Raises:
            ConfigError: the finding is unknown or the captioner never saw it.
        """
        try:
            name = canonical_finding(finding)
        except UnknownFindingError:
            name = None
        token = to_token(name if name and name != NO_FINDING else finding)
        if token not in self.vocab:
            known = [f for f in FINDINGS if to_token(f) in self.vocab]
            raise ConfigError(
                f"the captioner has no token for {finding!r}; it describes: {', '.join(known) or 'no finding'}"
            )
        return token

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Encoder features (N, C, h, w) of grayscale images (uint8, or float in [0, 1])."""
        return encoder_features(
            self.model.encoder, images, self.transform, device=self.device, dtype=torch.float32
        )

    @torch.no_grad()
    def probabilities(self, features: torch.Tensor) -> np.ndarray:
        """Finding probabilities (N, 14) from the encoder's head, calibrated by the encoder checkpoint's
        calibration where it has one (the scale of :attr:`thresholds`)."""
        probabilities = self.model.classify(features.to(self.device)).cpu().numpy()
        if self.calibration is None:
            return probabilities
        return self.calibration.apply(probabilities).astype(np.float32)

    @torch.no_grad()
    def decode(self, features: torch.Tensor, query: str | None) -> Hypothesis:
        """The best hypothesis for one image's features (1, C, h, w), forcing ``query`` after ``<bos>``."""
        prefix = [self.vocab.bos_id] + ([self.vocab.token_to_id(query)] if query is not None else [])
        memory = self.model.memory(features.to(self.device, torch.float32))
        if self.beam_size == 1:
            return greedy_decode(
                self.model.decoder, memory, prefix, eos_id=self.vocab.eos_id, max_len=self.contract.max_len
            )
        return beam_search(
            self.model.decoder,
            memory,
            prefix,
            eos_id=self.vocab.eos_id,
            beam_size=self.beam_size,
            max_len=self.contract.max_len,
            length_alpha=self.length_alpha,
        )[0]

    def caption(self, features: torch.Tensor, query: str | None) -> Caption:
        """A :class:`Caption` for one image's features and a query token (None: the model picks the finding)."""
        hypothesis = self.decode(features, query)
        tokens = tuple(hypothesis.tokens(self.vocab))
        annotation = tokens_to_annotation(tokens) if tokens else None
        return Caption(
            finding=annotation.finding if annotation is not None else None,
            tokens=tokens,
            text=to_mesh_string(annotation) if annotation is not None else "",
            log_prob=hypothesis.log_prob,
        )

    def describe(self, image: np.ndarray, findings: Sequence[str]) -> list[Caption]:
        """One caption per finding for a grayscale image."""
        queries = [self.query_token(finding) for finding in findings]
        features = self.features([image])
        return [self.caption(features, query) for query in queries]

    def describe_files(
        self, paths: Sequence[str | Path], findings: Sequence[str] | None = None
    ) -> list[FileCaptions]:
        """Captions for files: for ``findings`` when given, else for each finding the encoder calls positive.

        Unreadable files get their error; the others still get captions.
        """
        queries = [self.query_token(finding) for finding in findings] if findings is not None else None
        results = []
        for path in paths:
            try:
                image = read_encoder_image(path, self.contract.encoder.input_size)
            except CXReaderError as exc:
                results.append(FileCaptions(path=str(path), error=str(exc)))
                continue
            features = self.features([image])
            probabilities = self.probabilities(features)[0]
            positives = zip(FINDINGS, probabilities, self.thresholds, strict=True)
            asked = queries if queries is not None else [to_token(f) for f, p, t in positives if p >= t]
            results.append(
                FileCaptions(
                    path=str(path),
                    captions=[self.caption(features, query) for query in asked if query in self.vocab],
                    probabilities={name: float(p) for name, p in zip(FINDINGS, probabilities, strict=True)},
                )
            )
        return results
