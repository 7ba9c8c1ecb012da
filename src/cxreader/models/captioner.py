"""The learned captioner: a CheXNet image encoder and a recurrent decoder with soft attention.

Shin et al., "Learning to Read Chest X-Rays: Recurrent Neural Cascade Model for Automated Image Annotation",
CVPR 2016, trained a CNN on chest X-rays and an RNN (LSTM or GRU) that writes a finding's context as a short
MeSH annotation sequence (``Opacity/lung/upper lobe/right/streaky``). This module follows that design, with the
soft attention of Xu et al., "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention",
ICML 2015:

* Encoder: the CheXNet backbone's :meth:`~cxreader.models.chexnet.CheXNet.forward_features` (B, C, h, w),
  frozen by default (its features can then be computed once and cached), optionally fine-tuned.
* Image conditioning: the decoder state starts from the spatially pooled features (Xu et al. §4.2.1) and at
  every step attends over the h × w locations (additive attention, Bahdanau et al., ICLR 2015, with Xu et
  al.'s gating scalar β). Each location's feature vector is extended with its normalised image coordinates:
  a weighted sum of CNN features keeps little of *where* the weights were, and the side of a finding is
  exactly that; with the coordinates the attention's centroid becomes part of the context. Each location
  also carries the encoder head's 14 per-location logits, its class activation maps (Zhou et al., "Learning
  Deep Features for Discriminative Localization", CVPR 2016): where the classifier sees each finding, which
  lets the attention find the queried finding without relearning the classifier from the captions.
* Finding conditioning: one annotation sequence per finding, the finding token being the first token after
  ``<bos>`` (``<bos> effusion pleura right lower_lobe moderate <eos>``). At inference the finding token is
  forced ("describe Effusion in this image"); decoding from ``<bos>`` alone lets the model name the finding.
* Output: Xu et al.'s deep output layer, logits = L_o(E y_{t-1} + L_h h_t + L_z z_t).
* Text-only sequences (the real OpenI MeSH terms, no image) are decoded against a learned "no image"
  feature, so they shape the decoder's language statistics without an image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cxreader.errors import ConfigError
from cxreader.models._registry import create_model, register_model
from cxreader.models.chexnet import CheXNet

#: Recurrent cells the decoder supports.
CELLS: tuple[str, ...] = ("lstm", "gru")
#: Channels appended to each feature location: its x (image left → right) and y (top → bottom) in [-1, 1].
COORD_CHANNELS = 2

State = tuple[torch.Tensor, ...]


class DecoderMemory(NamedTuple):
    """What the decoder reads from the image at every step; every field has the batch first.

    Attributes:
        values: (B, L, D) location features with their coordinates (D = C + 2).
        keys: (B, L, A) the values projected for attention.
        pooled: (B, D) the mean of ``values`` over the locations.
    """

    values: torch.Tensor
    keys: torch.Tensor
    pooled: torch.Tensor

    def index_select(self, index: torch.Tensor) -> DecoderMemory:
        """The memory of the batch rows in ``index`` (beam search expands and reorders with it)."""
        return DecoderMemory(*(tensor.index_select(0, index) for tensor in self))


def coordinate_grid(height: int, width: int, *, device: torch.device | None = None) -> torch.Tensor:
    """(h·w, 2) coordinates of the feature locations in row-major order: x then y, each in [-1, 1].

    x runs from the image's left edge (-1) to its right edge (+1). In a PA or AP view the patient's right lies
    in the image's left half, so x < 0 is the patient's right.
    """
    ys = torch.linspace(-1.0, 1.0, height, device=device) if height > 1 else torch.zeros(1, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device) if width > 1 else torch.zeros(1, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)


class AdditiveAttention(nn.Module):
    """Soft attention: alpha = softmax(v^T tanh(W_k f_i + W_h h)) over the locations (Bahdanau et al. 2015)."""

    def __init__(self, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.query = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(
        self, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, D) and weights (B, L) for keys (B, L, A), values (B, L, D) and state (B, H)."""
        energy = self.score(torch.tanh(keys + self.query(hidden)[:, None, :])).squeeze(-1)
        alpha = torch.softmax(energy, dim=1)
        return torch.bmm(alpha[:, None, :], values).squeeze(1), alpha


class CaptionDecoder(nn.Module):
    """An LSTM or GRU decoder of annotation tokens conditioned on image features (Xu et al. 2015).

    Args:
        vocab_size: Number of tokens (:class:`cxreader.captioning.vocab.Vocabulary`, ``<pad>`` = 0).
        feature_dim: Channels C of the encoder's feature map.
        attention_dim: Joint space of the attention; ignored without attention.
        cell: ``"lstm"`` or ``"gru"`` (Shin et al. compare both).
        attention: Attend over the locations at every step; without it the context is the pooled feature.
        dropout: Dropout on embeddings and on the deep output layer's input.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        *,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        cell: str = "lstm",
        attention: bool = True,
        dropout: float = 0.2,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"unknown decoder cell {cell!r}; expected one of {', '.join(CELLS)}")
        if vocab_size < 5:
            raise ConfigError(
                f"vocab_size must cover the 4 special tokens and at least one more, got {vocab_size}"
            )
        self.vocab_size = int(vocab_size)
        self.feature_dim = int(feature_dim)
        self.cell_type = cell
        self.use_attention = bool(attention)
        self._config = {
            "vocab_size": self.vocab_size,
            "feature_dim": self.feature_dim,
            "embed_dim": int(embed_dim),
            "hidden_dim": int(hidden_dim),
            "attention_dim": int(attention_dim),
            "cell": cell,
            "attention": self.use_attention,
            "dropout": float(dropout),
        }
        value_dim = self.feature_dim + COORD_CHANNELS

        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        # A learned stand-in for the image of text-only sequences (one location, no coordinates known).
        self.null_feature = nn.Parameter(torch.zeros(1, 1, value_dim))
        self.init_h = nn.Linear(value_dim, hidden_dim)
        self.init_c = nn.Linear(value_dim, hidden_dim) if cell == "lstm" else None
        if self.use_attention:
            self.key = nn.Linear(value_dim, attention_dim)
            self.attention = AdditiveAttention(hidden_dim, attention_dim)
            self.gate = nn.Linear(hidden_dim, 1)
        cell_class = nn.LSTMCell if cell == "lstm" else nn.GRUCell
        self.rnn = cell_class(embed_dim + value_dim, hidden_dim)
        # Deep output layer (Xu et al. 2015, eq. 7): L_o(E y + L_h h + L_z z).
        self.out_hidden = nn.Linear(hidden_dim, embed_dim)
        self.out_context = nn.Linear(value_dim, embed_dim)
        self.out = nn.Linear(embed_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, stored in the caption checkpoint to rebuild the decoder."""
        return dict(self._config)

    def memory(self, features: torch.Tensor | None, batch_size: int | None = None) -> DecoderMemory:
        """Prepare the image for decoding.

        Args:
            features: (B, C, h, w) encoder features, or None for text-only sequences (the learned null image).
            batch_size: The batch size when ``features`` is None.
        """
        if features is None:
            if batch_size is None:
                raise ValueError("memory(None) needs the batch_size of the text-only batch")
            values = self.null_feature.expand(batch_size, 1, -1)
        else:
            if features.ndim != 4 or features.shape[1] != self.feature_dim:
                raise ValueError(
                    f"expected features of shape (B, {self.feature_dim}, h, w), got {tuple(features.shape)}"
                )
            batch, _, height, width = features.shape
            flat = features.float().flatten(2).transpose(1, 2)  # (B, h*w, C), row-major like the grid
            coords = coordinate_grid(height, width, device=flat.device).to(flat.dtype)
            values = torch.cat([flat, coords.expand(batch, -1, -1)], dim=2)
        keys = (
            self.key(values) if self.use_attention else values.new_zeros(values.shape[0], values.shape[1], 0)
        )
        return DecoderMemory(values=values, keys=keys, pooled=values.mean(dim=1))

    def init_state(self, memory: DecoderMemory) -> State:
        """The initial state from the pooled features (Xu et al. 2015, §4.2.1): (h, c) or (h,)."""
        h = torch.tanh(self.init_h(memory.pooled))
        if self.init_c is None:
            return (h,)
        return (h, torch.tanh(self.init_c(memory.pooled)))

    def step(
        self, tokens: torch.Tensor, state: State, memory: DecoderMemory
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One decoding step.

        Args:
            tokens: (B,) ids of the previous tokens.
            state: The recurrent state from :meth:`init_state` or the previous step.

        Returns:
            Logits (B, vocab) of the next token, the new state, and the attention weights (B, L) or None.
        """
        embedded = self.dropout(self.embedding(tokens))
        hidden = state[0]
        if self.use_attention:
            context, alpha = self.attention(memory.keys, memory.values, hidden)
            context = torch.sigmoid(self.gate(hidden)) * context  # Xu et al.'s gating scalar beta
        else:
            context, alpha = memory.pooled, None
        rnn_input = torch.cat([embedded, context], dim=1)
        if self.cell_type == "lstm":
            new_state: State = self.rnn(rnn_input, (state[0], state[1]))
        else:
            new_state = (self.rnn(rnn_input, hidden),)
        deep = embedded + self.out_hidden(new_state[0]) + self.out_context(context)
        return self.out(self.dropout(deep)), new_state, alpha

    def forward(self, memory: DecoderMemory, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) for input ids (B, T) (``<bos>`` followed by the target)."""
        state = self.init_state(memory)
        logits = []
        for t in range(inputs.shape[1]):
            step_logits, state, _ = self.step(inputs[:, t], state, memory)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)


class Captioner(nn.Module):
    """A CheXNet encoder and a :class:`CaptionDecoder` (Shin et al. 2016; Xu et al. 2015).

    Args:
        encoder: The classifier whose :meth:`~CheXNet.forward_features` feeds the decoder; its head stays
            available, so the same model tells which findings are positive and describes them.
        decoder: The decoder; its ``feature_dim`` must equal the encoder's ``num_features`` (plus the
            head's outputs with ``evidence_maps``).
        freeze_encoder: Keep the encoder's weights fixed (and in eval mode: its batch-norm statistics too).
        evidence_maps: Append the head's per-location logits (class activation maps) to every location.
    """

    def __init__(
        self,
        encoder: CheXNet,
        decoder: CaptionDecoder,
        *,
        freeze_encoder: bool = True,
        evidence_maps: bool = True,
    ):
        super().__init__()
        expected = decoder_feature_dim(encoder, evidence_maps)
        if decoder.feature_dim != expected:
            raise ConfigError(
                f"the decoder expects {decoder.feature_dim} feature channels, the encoder gives {expected}"
                + (" (its features and its class activation maps)" if evidence_maps else "")
            )
        self.encoder = encoder
        self.decoder = decoder
        self.freeze_encoder = bool(freeze_encoder)
        self.evidence_maps = bool(evidence_maps)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> Captioner:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps its batch-norm statistics
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features (B, C, h, w) of normalised images (B, 3, S, S)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            return self.encoder.forward_features(images)

    def decoder_features(self, features: torch.Tensor) -> torch.Tensor:
        """What the decoder reads at each location: the features, and with ``evidence_maps`` the head's
        per-location logits (B, C + 14, h, w); their spatial mean is exactly the classifier's logit."""
        features = features.float()
        if not self.evidence_maps:
            return features
        head = self.encoder.classifier
        cams = torch.einsum("bchw,kc->bkhw", features, head.weight) + head.bias[None, :, None, None]
        return torch.cat([features, cams], dim=1)

    def memory(self, features: torch.Tensor) -> DecoderMemory:
        """The decoder memory of encoder features (B, C, h, w)."""
        return self.decoder.memory(self.decoder_features(features))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Finding probabilities (B, 14) from encoder features, with the encoder's own head."""
        return torch.sigmoid(self.encoder.forward_head(features.float()).float())

    def forward(self, images: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, vocab) for images (B, 3, S, S) and input ids (B, T)."""
        return self.decoder(self.memory(self.encode(images)), inputs)


def decoder_feature_dim(encoder: CheXNet, evidence_maps: bool) -> int:
    """The ``feature_dim`` of a decoder reading ``encoder`` (its channels, plus its head's outputs)."""
    return encoder.num_features + (encoder.classifier.out_features if evidence_maps else 0)


def build_captioner(
    *,
    vocab_size: int,
    cell: str = "lstm",
    encoder: str | CheXNet = "densenet_small",
    encoder_kwargs: Mapping[str, Any] | None = None,
    freeze_encoder: bool = True,
    evidence_maps: bool = True,
    **decoder_kwargs: Any,
) -> Captioner:
    """CheXNet encoder + attention LSTM or GRU decoder (Shin et al. 2016; Xu et al. 2015).

    Args:
        cell: ``"lstm"`` or ``"gru"`` (Shin et al. compare both).
        encoder: A CheXNet model, or the registered name of one (built with random weights: load a trained
            encoder's weights afterwards, as :mod:`cxreader.captioning.checkpoint` does).
        freeze_encoder: Keep the encoder fixed (the default; its features can then be precomputed).
        evidence_maps: Give the decoder the encoder head's class activation maps too.
        **decoder_kwargs: :class:`CaptionDecoder` options (embed_dim, hidden_dim, attention_dim, attention,
            dropout).
    """
    if isinstance(encoder, str):
        encoder = create_model(encoder, **{"init": "none", **dict(encoder_kwargs or {})})
    if not isinstance(encoder, CheXNet):
        raise ConfigError(f"the caption encoder must be a CheXNet model, got {type(encoder).__name__}")
    decoder = CaptionDecoder(
        vocab_size, decoder_feature_dim(encoder, evidence_maps), cell=cell, **decoder_kwargs
    )
    return Captioner(encoder, decoder, freeze_encoder=freeze_encoder, evidence_maps=evidence_maps)


@register_model
def captioner_lstm(**kwargs: Any) -> Captioner:
    """CheXNet encoder + attention LSTM decoder; arguments as :func:`build_captioner`."""
    return build_captioner(cell="lstm", **kwargs)


@register_model
def captioner_gru(**kwargs: Any) -> Captioner:
    """CheXNet encoder + attention GRU decoder; arguments as :func:`build_captioner`."""
    return build_captioner(cell="gru", **kwargs)


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Mean token cross-entropy of teacher-forced logits (B, T, V) against targets (B, T), padding ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=pad_id)
