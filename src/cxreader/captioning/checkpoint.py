"""Caption checkpoints that carry their contract: vocabulary, decoder configuration, and the encoder's own contract.

One file (``RUN/caption.pt``) holds everything a captioner needs: the token vocabulary, the decoder's
constructor arguments and weights, the encoder's weights (its classification head included, so the captioner
can tell which findings are positive) and the encoder checkpoint's contract (model, input size, normalisation,
label order, operating thresholds) with the SHA-256 of the file it came from. Evaluation transforms are built
from that contract, never re-typed. Files are written atomically by
:func:`cxreader.training.checkpoint.save_atomic`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cxreader import __version__
from cxreader.captioning.vocab import Vocabulary
from cxreader.data.transforms import EvalPreset
from cxreader.errors import CheckpointError, ConfigError
from cxreader.labels import FINDINGS
from cxreader.models import create_model
from cxreader.models.captioner import CaptionDecoder, Captioner
from cxreader.training.checkpoint import FORMAT as CLASSIFIER_FORMAT
from cxreader.training.checkpoint import CheckpointContract, file_sha256, save_atomic

CAPTION_FORMAT = "cxreader-caption-checkpoint"
CAPTION_FORMAT_VERSION = 1
#: Decoder cell → registered captioner model.
MODEL_OF_CELL = {"lstm": "captioner_lstm", "gru": "captioner_gru"}


@dataclass
class CaptionContract:
    """What a captioner needs to be used correctly, stored inside its checkpoint.

    Attributes:
        decoder_config: :meth:`CaptionDecoder.config` (vocabulary size, feature channels, sizes, cell, ...).
        vocab: The token vocabulary.
        encoder: The contract of the encoder's classifier checkpoint (model, input size, normalisation,
            labels, thresholds, whether it was trained on synthetic data).
        encoder_sha256: SHA-256 of the encoder checkpoint file the captioner was built from.
        encoder_source: That file's path when training started.
        encoder_frozen: Whether the encoder kept its weights (then its head is the classifier's, unchanged).
        evidence_maps: Whether the decoder reads the encoder head's class activation maps too.
        max_len: Longest sequence (tokens after ``<bos>``) used for training and decoding.
        synthetic: Trained on synthetic images.
        config: The training configuration.
        metrics: Validation figures of the saved epoch.
        epoch: The saved epoch (1-based).
    """

    decoder_config: dict[str, Any]
    vocab: Vocabulary
    encoder: CheckpointContract
    encoder_sha256: str = ""
    encoder_source: str = ""
    encoder_frozen: bool = True
    evidence_maps: bool = True
    max_len: int = 16
    synthetic: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    cxreader_version: str = __version__
    created: str = ""

    @property
    def model_name(self) -> str:
        """The registered captioner model (``captioner_lstm`` or ``captioner_gru``)."""
        return MODEL_OF_CELL[self.decoder_config.get("cell", "lstm")]

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    def eval_preset(self) -> EvalPreset:
        """The encoder's evaluation transform (its input size and normalisation)."""
        return self.encoder.eval_preset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "decoder_config": dict(self.decoder_config),
            "vocab": self.vocab.to_dict(),
            "encoder": self.encoder.to_dict(),
            "encoder_sha256": self.encoder_sha256,
            "encoder_source": self.encoder_source,
            "encoder_frozen": bool(self.encoder_frozen),
            "evidence_maps": bool(self.evidence_maps),
            "max_len": int(self.max_len),
            "synthetic": bool(self.synthetic),
            "config": dict(self.config),
            "metrics": dict(self.metrics),
            "epoch": int(self.epoch),
            "cxreader_version": self.cxreader_version,
            "created": self.created
            or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CaptionContract:
        """Read :meth:`to_dict`'s layout.

        Raises:
            CheckpointError: a missing field, an unknown cell, or a vocabulary of another layout.
        """
        try:
            decoder_config = dict(values["decoder_config"])
            encoder = CheckpointContract.from_dict(values["encoder"])
            vocab = Vocabulary.from_dict(values["vocab"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"caption contract: missing or malformed field ({exc})") from None
        if decoder_config.get("cell", "lstm") not in MODEL_OF_CELL:
            raise CheckpointError(f"caption contract: unknown decoder cell {decoder_config.get('cell')!r}")
        if int(decoder_config.get("vocab_size", -1)) != len(vocab):
            raise CheckpointError(
                f"caption contract: decoder vocab_size {decoder_config.get('vocab_size')} differs from the "
                f"vocabulary's {len(vocab)} tokens"
            )
        return cls(
            decoder_config=decoder_config,
            vocab=vocab,
            encoder=encoder,
            encoder_sha256=str(values.get("encoder_sha256", "")),
            encoder_source=str(values.get("encoder_source", "")),
            encoder_frozen=bool(values.get("encoder_frozen", True)),
            evidence_maps=bool(values.get("evidence_maps", False)),
            max_len=int(values.get("max_len", 16)),
            synthetic=bool(values.get("synthetic", False)),
            config=dict(values.get("config", {})),
            metrics=dict(values.get("metrics", {})),
            epoch=int(values.get("epoch", 0)),
            cxreader_version=str(values.get("cxreader_version", "")),
            created=str(values.get("created", "")),
        )


@dataclass
class LoadedCaptioner:
    """A captioner ready for inference (eval mode) and its contract."""

    model: Captioner
    contract: CaptionContract
    path: Path
    sha256: str


def build_captioner(contract: CaptionContract) -> Captioner:
    """The captioner a contract describes, with random weights (the encoder frozen as recorded)."""
    encoder = create_model(
        contract.encoder.model_name, **{**contract.encoder.model_kwargs, "init": "none", "weights": None}
    )
    config = dict(contract.decoder_config)
    decoder = CaptionDecoder(config.pop("vocab_size"), config.pop("feature_dim"), **config)
    try:
        return Captioner(
            encoder, decoder, freeze_encoder=contract.encoder_frozen, evidence_maps=contract.evidence_maps
        )
    except ConfigError as exc:
        raise CheckpointError(f"caption contract: {exc}") from None


def save_caption_checkpoint(path: str | Path, *, model: Captioner, contract: CaptionContract) -> None:
    """Write a caption checkpoint atomically (temporary file, fsync, rename)."""
    payload = {
        "format": CAPTION_FORMAT,
        "format_version": CAPTION_FORMAT_VERSION,
        "contract": contract.to_dict(),
        "encoder_state_dict": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()},
        "decoder_state_dict": {k: v.detach().cpu() for k, v in model.decoder.state_dict().items()},
    }
    save_atomic(payload, path)


def load_caption_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedCaptioner:
    """Rebuild a captioner from its checkpoint (eval mode).

    Raises:
        CheckpointError: missing or corrupt file, a classifier checkpoint given instead, a newer format,
            other labels than :data:`FINDINGS`, or weights that don't fit the described model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: caption checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle error, ...: one line naming the file
        raise CheckpointError(
            f"{path}: cannot read caption checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(payload, dict) and payload.get("format") == CLASSIFIER_FORMAT:
        raise CheckpointError(
            f"{path}: a classifier checkpoint, not a captioner; pass the caption.pt of `cxreader caption train`"
        )
    if not isinstance(payload, dict) or payload.get("format") != CAPTION_FORMAT:
        raise CheckpointError(f"{path}: not a cxreader caption checkpoint")
    if int(payload.get("format_version", 0)) > CAPTION_FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer cxreader (format {payload['format_version']})")
    try:
        contract = CaptionContract.from_dict(payload["contract"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except KeyError:
        raise CheckpointError(f"{path}: the checkpoint has no contract") from None
    if tuple(contract.encoder.labels) != FINDINGS:
        raise CheckpointError(
            f"{path}: the encoder's labels {list(contract.encoder.labels)} differ from cxreader's findings "
            f"{list(FINDINGS)}; refusing to load it"
        )
    model = build_captioner(contract)
    try:
        model.encoder.load_state_dict(payload["encoder_state_dict"], strict=True)
        model.decoder.load_state_dict(payload["decoder_state_dict"], strict=True)
    except (KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights don't fit {contract.model_name} ({first})") from None
    model.eval().to(device)
    return LoadedCaptioner(model=model, contract=contract, path=path, sha256=file_sha256(path))
