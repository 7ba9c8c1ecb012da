"""Caption checkpoints that carry their contract: vocabulary, decoder configuration, and the encoder's own contract.

One file (``RUN/caption.pt``) holds everything a captioner needs: the token vocabulary, the decoder's
constructor arguments and weights, the encoder's weights (its classification head included, so the captioner
can tell which findings are positive) and the encoder checkpoint's contract (model, input size, normalisation,
label order, operating thresholds) with the SHA-256 of the file it came from. Evaluation transforms are built
from the encoder's contract, never re-typed. Files are written atomically by
:func:`cxreader.files.atomic_write`.

The encoder is a CheXNet classifier of the 14 ChestX-ray14 findings (:data:`~cxreader.labels.FINDINGS`, in that
order): the captioner's finding tokens, its reading of the encoder's head and the MeSH grammar know those 14
only, so an encoder of another label space is refused (:func:`check_encoder_labels`). A screening model of any
label space still gets learned captions from such a captioner, for the findings it knows.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from cxreader import __version__
from cxreader.captioning.vocab import Vocabulary
from cxreader.errors import CheckpointError, ConfigError
from cxreader.files import atomic_write
from cxreader.labels import FINDINGS
from cxreader.models.captioner import Captioner, build_captioner
from cxreader.models.checkpoint import CheckpointContract, check_labels, cpu_state_dict, read_payload

CAPTION_FORMAT = "cxreader-caption-checkpoint"
CAPTION_FORMAT_VERSION = 1


@dataclass
class CaptionContract:
    """What a captioner needs to be used correctly, stored inside its checkpoint.

    Attributes:
        decoder_config: :meth:`CaptionDecoder.config` (vocabulary size, feature channels, sizes, cell, ...).
        encoder: The contract of the encoder's classifier checkpoint (model, input size, normalisation,
            labels, thresholds, whether it was trained on synthetic data).
        encoder_sha256: SHA-256 of the encoder checkpoint file the captioner was built from.
        encoder_source: That file's path when training started.
        encoder_frozen: Whether the encoder kept its weights (then its head is the classifier's, unchanged).
        evidence_maps: Whether the decoder reads the encoder head's class activation maps too.
        max_len: Longest sequence (tokens after ``<bos>``) used for training and decoding.
        synthetic: Trained on synthetic images.
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
        return f"captioner_{self.decoder_config.get('cell', 'lstm')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **{item.name: getattr(self, item.name) for item in fields(self)},
            "model_name": self.model_name,
            "vocab": self.vocab.to_dict(),
            "encoder": self.encoder.to_dict(),
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
            parts = {
                "decoder_config": dict(values["decoder_config"]),
                "encoder": CheckpointContract.from_dict(values["encoder"]),
                "vocab": Vocabulary.from_dict(values["vocab"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"caption contract: missing or malformed field ({exc})") from None
        # An unknown cell is refused where the decoder is built (load_caption_checkpoint names the file).
        decoder_config = parts["decoder_config"]
        if int(decoder_config.get("vocab_size", -1)) != len(parts["vocab"]):
            raise CheckpointError(
                f"caption contract: decoder vocab_size {decoder_config.get('vocab_size')} differs from the "
                f"vocabulary's {len(parts['vocab'])} tokens"
            )
        known = {item.name for item in fields(cls)}
        # A contract without ``evidence_maps`` was written before the decoder could read them.
        defaults = {"evidence_maps": False, "cxreader_version": ""}
        return cls(**{**defaults, **{k: v for k, v in values.items() if k in known}, **parts})


@dataclass
class LoadedCaptioner:
    """A captioner ready for inference (eval mode) and its contract."""

    model: Captioner
    contract: CaptionContract


def save_caption_checkpoint(path: str | Path, *, model: Captioner, contract: CaptionContract) -> None:
    """Write a caption checkpoint atomically (temporary file, fsync, rename)."""
    payload = {
        "format": CAPTION_FORMAT,
        "format_version": CAPTION_FORMAT_VERSION,
        "contract": contract.to_dict(),
        "encoder_state_dict": cpu_state_dict(model.encoder),
        "decoder_state_dict": cpu_state_dict(model.decoder),
    }
    with atomic_write(path) as handle:
        torch.save(payload, handle)


def check_encoder_labels(path: str | Path, labels: Sequence[str]) -> None:
    """Refuse an encoder whose labels are not the 14 CheXNet findings in their order (module docstring).

    Raises:
        CheckpointError: naming the file and its labels.
    """
    check_labels(Path(path), labels)
    if tuple(labels) != FINDINGS:
        raise CheckpointError(
            f"{path}: the learned captioner needs a classifier of the 14 CheXNet findings as its encoder; this "
            f"one predicts {', '.join(labels)}. Train the captioner on a CheXNet checkpoint (its captions "
            "still serve a screening model of any label space)"
        )


def load_caption_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedCaptioner:
    """Rebuild a captioner from its checkpoint (eval mode).

    Raises:
        CheckpointError: missing or corrupt file, a classifier checkpoint given instead, a newer format,
            an encoder of other labels than :data:`FINDINGS` (:func:`check_encoder_labels`), or weights that
            don't fit the described model.
    """
    path = Path(path)
    payload = read_payload(
        path,
        format_name=CAPTION_FORMAT,
        format_version=CAPTION_FORMAT_VERSION,
        what="caption checkpoint",
        hint=" (pass the caption.pt written by `cxreader caption train`, not a classifier's)",
    )
    try:
        contract = CaptionContract.from_dict(payload["contract"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except KeyError:
        raise CheckpointError(f"{path}: the checkpoint has no contract") from None
    check_encoder_labels(path, contract.encoder.labels)
    decoder_config = {key: value for key, value in contract.decoder_config.items() if key != "feature_dim"}
    try:
        model = build_captioner(
            encoder=contract.encoder.model_name,
            encoder_kwargs={**contract.encoder.model_kwargs, "init": "none", "weights": None},
            freeze_encoder=contract.encoder_frozen,
            evidence_maps=contract.evidence_maps,
            **decoder_config,
        )
        model.encoder.load_state_dict(payload["encoder_state_dict"], strict=True)
        model.decoder.load_state_dict(payload["decoder_state_dict"], strict=True)
    except (KeyError, RuntimeError, ConfigError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights don't fit {contract.model_name} ({first})") from None
    model.eval().to(device)
    return LoadedCaptioner(model=model, contract=contract)
