"""Training the captioner with teacher forcing (Shin et al., CVPR 2016; Xu et al., ICML 2015).

The recipe:

* The encoder is a trained CheXNet checkpoint; frozen by default, its features are computed once for every
  training and validation image (:mod:`cxreader.captioning.features`) and the epochs train the decoder
  alone, which takes seconds on a CPU. With ``finetune_encoder`` the images go through the encoder at every
  step, with its own (smaller) learning rate.
* The vocabulary is built from the training pairs plus, when given, the real OpenI MeSH sequences, so every
  real annotation word has an id. Those real sequences are also decoded as text-only sequences against the
  decoder's learned "no image" feature, with weight ``text_weight``: the decoder learns the grammar and the
  co-occurrences of real annotations (its language statistics), while the image-conditioned loss teaches it to
  read the image.
* Each step minimises the token cross-entropy of ``<bos> finding context... <eos>`` (the finding token is
  predicted too, so decoding from ``<bos>`` alone names a finding); Adam, cosine learning-rate decay, gradient
  clipping. The epoch with the lowest validation loss is saved (``RUN/caption.pt``, atomically, with its
  contract) and the per-epoch figures go to ``RUN/caption_history.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from cxreader.captioning.checkpoint import CaptionContract, check_encoder_labels, save_caption_checkpoint
from cxreader.captioning.features import encoder_features, read_images
from cxreader.captioning.pairs import CaptionPair, select_split
from cxreader.captioning.vocab import Vocabulary
from cxreader.errors import ConfigError, DataError
from cxreader.inference.runtime import resolve_device
from cxreader.models.captioner import (
    CaptionDecoder,
    Captioner,
    DecoderMemory,
    build_captioner,
    sequence_loss,
)
from cxreader.models.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "caption.pt"
HISTORY_NAME = "caption_history.json"


@dataclass
class CaptionTrainConfig:
    """Training options (defaults: a few minutes on two CPU cores with a frozen ``densenet_small``).

    Attributes:
        batch_size: Pairs per step (and text-only sequences per step, when given).
        lr: Adam learning rate of the decoder (cosine-decayed to 5% over the epochs).
        embed_dim, hidden_dim, attention_dim, cell, attention, dropout: :class:`CaptionDecoder` options.
        evidence_maps: Give the decoder the encoder head's class activation maps (:class:`Captioner`).
        text_weight: Weight of the text-only (real MeSH) loss; 0 uses the sequences for the vocabulary only.
        finetune_encoder: Train the encoder too (slow on a CPU: every step runs it).
        encoder_lr: The encoder's learning rate when fine-tuned.
        max_len: Longest token sequence kept (longer ones are cut; ``<eos>`` is added after).
        min_count: Tokens seen fewer times are left out of the vocabulary (``<unk>``).
        seed: Seed of the weights and the batch order.
        device: ``auto``, ``cpu`` or ``cuda``.
        feature_batch_size: Images per encoder pass when computing features.
    """

    epochs: int = 25
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-6
    embed_dim: int = 128
    hidden_dim: int = 256
    attention_dim: int = 128
    cell: str = "lstm"
    attention: bool = True
    evidence_maps: bool = True
    dropout: float = 0.2
    text_weight: float = 0.25
    finetune_encoder: bool = False
    encoder_lr: float = 1e-4
    max_len: int = 16
    min_count: int = 1
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    feature_batch_size: int = 32

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an impossible value."""
        if self.epochs < 1 or self.batch_size < 1 or self.max_len < 1 or self.min_count < 1:
            raise ConfigError("epochs, batch_size, max_len and min_count must be at least 1")
        if self.lr <= 0 or self.encoder_lr <= 0:
            raise ConfigError("learning rates must be positive")
        if self.text_weight < 0:
            raise ConfigError(f"text_weight must be non-negative, got {self.text_weight}")


@dataclass
class CaptionTrainResult:
    """What a training run produced."""

    checkpoint: Path
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, Any]]
    vocab_size: int
    train_pairs: int
    val_pairs: int
    feature_seconds: float
    train_seconds: float


def encode_sequences(sequences: Sequence[Sequence[str]], vocab: Vocabulary, max_len: int) -> torch.Tensor:
    """Padded id tensor (N, T): ``<bos>``, at most ``max_len - 1`` tokens, ``<eos>``, then ``<pad>`` (0)."""
    encoded = [torch.tensor(vocab.encode(list(sequence)[: max_len - 1])) for sequence in sequences]
    return pad_sequence(encoded, batch_first=True, padding_value=vocab.pad_id)


def _teacher_forced_loss(
    decoder: CaptionDecoder, memory: DecoderMemory, ids: torch.Tensor, pad_id: int
) -> torch.Tensor:
    """The loss of padded id rows (B, T) read against ``memory``, the all-padding end columns dropped."""
    ids = ids[:, : int((ids != pad_id).sum(dim=1).max())].to(memory.values.device)
    return sequence_loss(decoder(memory, ids[:, :-1]), ids[:, 1:], pad_id)


class _ImageBank:
    """Per-image encoder inputs: cached features (frozen encoder) or uint8 images (fine-tuning)."""

    def __init__(
        self,
        model: Captioner,
        images: list[np.ndarray],
        transform: Callable,
        *,
        device: torch.device,
        batch_size: int,
    ):
        self.model = model
        self.transform = transform
        self.device = device
        self.images = images
        self.features = (
            encoder_features(model.encoder, images, transform, device=device, batch_size=batch_size)
            if model.freeze_encoder
            else None
        )

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Encoder features (B, C, h, w) of the images at ``indices``, on the device."""
        if self.features is not None:
            return self.features[indices].to(self.device, torch.float32)
        inputs = torch.stack([self.transform(self.images[int(i)]) for i in indices])
        return self.model.encode(inputs.to(self.device))


def _loss_on(
    model: Captioner, bank: _ImageBank, image_index: torch.Tensor, ids: torch.Tensor, vocab: Vocabulary
) -> torch.Tensor:
    memory = model.memory(bank.batch(image_index))
    return _teacher_forced_loss(model.decoder, memory, ids, vocab.pad_id)


@torch.no_grad()
def _validation_loss(
    model: Captioner,
    bank: _ImageBank,
    image_index: torch.Tensor,
    ids: torch.Tensor,
    vocab: Vocabulary,
    batch_size: int,
) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        tokens = int((chunk[:, 1:] != vocab.pad_id).sum())
        total += float(_loss_on(model, bank, image_index[start : start + batch_size], chunk, vocab)) * tokens
        count += tokens
    return total / max(count, 1)


def train_captioner(
    pairs: Sequence[CaptionPair],
    encoder_checkpoint: str | Path,
    out_dir: str | Path,
    *,
    config: CaptionTrainConfig | None = None,
    text_sequences: Sequence[Sequence[str]] = (),
    progress: Callable[[str], None] | None = None,
) -> CaptionTrainResult:
    """Train a captioner on the ``train`` pairs, select the epoch on the ``val`` pairs, save ``caption.pt``.

    Args:
        pairs: Pairs of every split (:func:`cxreader.captioning.pairs.read_pairs`); test pairs are ignored.
        encoder_checkpoint: A cxreader classifier checkpoint (``RUN/best.pt``) whose backbone is the encoder.
        out_dir: Run folder; receives ``caption.pt`` and ``caption_history.json``.
        text_sequences: Real annotation token sequences without images (OpenI MeSH terms).
        progress: Called with one line per stage and epoch.

    Raises:
        DataError: no training pairs, or none of their images readable.
        CheckpointError: the encoder checkpoint cannot be loaded, or is not a classifier of the 14 CheXNet
            findings (:func:`~cxreader.captioning.checkpoint.check_encoder_labels`).
    """
    config = config or CaptionTrainConfig()
    config.validate()
    say = progress or (lambda line: logger.info("%s", line))
    out_dir = Path(out_dir)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)

    train_pairs, val_pairs = select_split(pairs, "train"), select_split(pairs, "val")
    if not train_pairs:
        raise DataError("pairs", "no pairs in the train split")
    encoder = load_checkpoint(encoder_checkpoint)
    check_encoder_labels(encoder_checkpoint, encoder.contract.labels)
    vocab = Vocabulary.build([*(pair.tokens for pair in train_pairs), *text_sequences], config.min_count)
    model = build_captioner(
        vocab_size=len(vocab),
        cell=config.cell,
        encoder=encoder.model,
        freeze_encoder=not config.finetune_encoder,
        evidence_maps=config.evidence_maps,
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
        attention_dim=config.attention_dim,
        attention=config.attention,
        dropout=config.dropout,
    ).to(device)

    started = time.perf_counter()
    paths = sorted({pair.image for pair in [*train_pairs, *val_pairs]}, key=str)
    images, position, errors = read_images(paths, encoder.contract.input_size)
    for error in errors[:5]:
        logger.warning("skipped unreadable image: %s", error)
    bank = _ImageBank(
        model, images, encoder.contract.eval_preset(), device=device, batch_size=config.feature_batch_size
    )
    feature_seconds = time.perf_counter() - started
    say(
        f"{len(images)} images read ({len(errors)} unreadable)"
        + (f", encoder features cached in {feature_seconds:.1f} s" if bank.features is not None else "")
    )

    def usable(split_pairs: Sequence[CaptionPair]) -> tuple[torch.Tensor, torch.Tensor]:
        kept_pairs = [pair for pair in split_pairs if pair.image in position]
        if not kept_pairs:
            return torch.zeros(0, dtype=torch.long), torch.zeros((0, 2), dtype=torch.long)
        index = torch.tensor([position[pair.image] for pair in kept_pairs], dtype=torch.long)
        return index, encode_sequences([pair.tokens for pair in kept_pairs], vocab, config.max_len)

    train_index, train_ids = usable(train_pairs)
    val_index, val_ids = usable(val_pairs)
    if len(train_ids) == 0:
        raise DataError("pairs", "no training pair has a readable image")
    text_ids = encode_sequences(text_sequences, vocab, config.max_len) if text_sequences else None
    say(
        f"vocabulary {len(vocab)} tokens; {len(train_ids)} train / {len(val_ids)} val pairs; "
        f"{0 if text_ids is None else len(text_ids)} text-only sequences (weight {config.text_weight})"
    )

    groups = [{"params": list(model.decoder.parameters()), "lr": config.lr}]
    if config.finetune_encoder:
        groups.append({"params": list(model.encoder.parameters()), "lr": config.encoder_lr})
    optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch, eta_min=0.05 * config.lr
    )
    generator = torch.Generator().manual_seed(config.seed)
    text_order = torch.randperm(len(text_ids), generator=generator) if text_ids is not None else None
    text_cursor = 0

    checkpoint_path = out_dir / CHECKPOINT_NAME
    history: list[dict[str, Any]] = []
    best_loss, best_epoch = math.inf, 0
    synthetic = encoder.contract.synthetic or all(pair.source == "synthetic" for pair in train_pairs)
    train_started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train_ids), generator=generator)
        epoch_loss, epoch_text_loss, steps = 0.0, 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = _loss_on(model, bank, train_index[batch], train_ids[batch], vocab)
            total = loss
            if text_ids is not None and text_order is not None and config.text_weight > 0:
                if text_cursor + len(batch) > len(text_order):
                    text_order = torch.randperm(len(text_ids), generator=generator)
                    text_cursor = 0
                text_batch = text_ids[text_order[text_cursor : text_cursor + len(batch)]]
                text_cursor += len(batch)
                memory = model.decoder.memory(None, batch_size=len(text_batch))
                text_loss = _teacher_forced_loss(model.decoder, memory, text_batch, vocab.pad_id)
                total = loss + config.text_weight * text_loss
                epoch_text_loss += float(text_loss.detach())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            epoch_loss += float(loss.detach())
            steps += 1
        val_loss = (
            _validation_loss(model, bank, val_index, val_ids, vocab, config.batch_size)
            if len(val_ids)
            else epoch_loss / steps
        )
        record = {
            "epoch": epoch,
            "train_loss": round(epoch_loss / steps, 5),
            "text_loss": round(epoch_text_loss / steps, 5) if text_ids is not None else None,
            "val_loss": round(val_loss, 5),
            "seconds": round(time.perf_counter() - train_started, 2),
        }
        history.append(record)
        improved = val_loss < best_loss
        say(
            f"epoch {epoch}/{config.epochs}: train loss {record['train_loss']:.4f}, "
            f"{'val' if len(val_ids) else 'train'} loss {val_loss:.4f}{'  (best, saved)' if improved else ''}"
        )
        if improved:
            best_loss, best_epoch = val_loss, epoch
            contract = CaptionContract(
                decoder_config=model.decoder.config(),
                vocab=vocab,
                encoder=encoder.contract,
                encoder_sha256=encoder.sha256,
                encoder_source=str(encoder.path),
                encoder_frozen=not config.finetune_encoder,
                evidence_maps=config.evidence_maps,
                max_len=config.max_len,
                synthetic=synthetic,
                config=asdict(config),
                metrics={"val_loss": round(val_loss, 5), "selected_on": "val" if len(val_ids) else "train"},
                epoch=epoch,
            )
            save_caption_checkpoint(checkpoint_path, model=model, contract=contract)
    train_seconds = time.perf_counter() - train_started
    (out_dir / HISTORY_NAME).write_text(
        json.dumps(
            {
                "history": history,
                "best_epoch": best_epoch,
                "feature_seconds": round(feature_seconds, 2),
                "train_seconds": round(train_seconds, 2),
            },
            indent=2,
        )
        + "\n"
    )
    return CaptionTrainResult(
        checkpoint=checkpoint_path,
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        history=history,
        vocab_size=len(vocab),
        train_pairs=len(train_ids),
        val_pairs=len(val_ids),
        feature_seconds=feature_seconds,
        train_seconds=train_seconds,
    )
