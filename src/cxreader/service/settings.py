"""Settings of the web service, from the environment (the twelve-factor way) or given in code.

=========================== =====================================================================
``CXREADER_CHECKPOINT``     the model: a cxreader checkpoint (``.pt``) or ONNX export (``.onnx``)
``CXREADER_DATABASE_URL``   the records database (default: SQLite in the user data directory)
``CXREADER_API_KEYS``       comma-separated API keys; clients send ``Authorization: Bearer KEY``
``CXREADER_MAX_UPLOAD_MB``  largest upload in MB (default 25)
``CXREADER_DATA_DIR``       where uploads, display images and heatmaps are kept (default: user data dir)
``CXREADER_DEVICE``         ``auto``, ``cpu`` or ``cuda`` (default ``auto``)
``CXREADER_CAPTION_CHECKPOINT``  optional learned captioner (``RUN/caption.pt``): captions for positive findings
=========================== =====================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from cxreader.errors import ConfigError
from cxreader.storage.names import DATABASE_URL_ENV

CHECKPOINT_ENV = "CXREADER_CHECKPOINT"
API_KEYS_ENV = "CXREADER_API_KEYS"
MAX_UPLOAD_MB_ENV = "CXREADER_MAX_UPLOAD_MB"
DATA_DIR_ENV = "CXREADER_DATA_DIR"
DEVICE_ENV = "CXREADER_DEVICE"
CAPTION_CHECKPOINT_ENV = "CXREADER_CAPTION_CHECKPOINT"
DEFAULT_MAX_UPLOAD_MB = 25.0
#: Shortest API key accepted: a guessable key is no key.
MIN_KEY_CHARS = 16
# The Settings field each plain variable sets (the keys and the upload limit need parsing).
_ENV_FIELDS = {
    CHECKPOINT_ENV: "checkpoint",
    DATABASE_URL_ENV: "database_url",
    DATA_DIR_ENV: "data_dir",
    DEVICE_ENV: "device",
    CAPTION_CHECKPOINT_ENV: "caption_checkpoint",
}


def default_data_dir() -> Path:
    """``service`` in the user data directory of ``cxreader``."""
    return platformdirs.user_data_path("cxreader", appauthor=False) / "service"


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with.

    Attributes:
        database_url: Records database URL or SQLite file; ``None`` = the default database.
        api_keys: Accepted API keys (at least one; each at least :data:`MIN_KEY_CHARS` characters).
        data_dir: Folder of the server's own files (uploads under server-generated names, display images,
            heatmaps); never named by a client.
        device: Inference device for PyTorch checkpoints.
        caption_checkpoint: Optional learned captioner; ``None`` = grounded descriptions only.
    """

    checkpoint: Path
    api_keys: frozenset[str] = field(repr=False)
    database_url: str | None = None
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    data_dir: Path = field(default_factory=default_data_dir)
    device: str = "auto"
    caption_checkpoint: Path | None = None

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ConfigError(
                f"no API key configured: set {API_KEYS_ENV} to one or more comma-separated keys, e.g. "
                f"{API_KEYS_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if any(len(key) < MIN_KEY_CHARS for key in self.api_keys):
            raise ConfigError(f"{API_KEYS_ENV}: every API key needs at least {MIN_KEY_CHARS} characters")
        if self.max_upload_bytes <= 0:
            raise ConfigError(f"the upload limit must be positive, got {self.max_upload_bytes} bytes")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from environment variables (see the module docstring); ``overrides`` win over them.

        Raises:
            ConfigError: no checkpoint, no API key, or a malformed value.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {key: env[name] for name, key in _ENV_FIELDS.items() if env.get(name)}
        values["api_keys"] = parse_api_keys(env.get(API_KEYS_ENV, ""))
        if env.get(MAX_UPLOAD_MB_ENV):
            values["max_upload_bytes"] = megabytes(env[MAX_UPLOAD_MB_ENV], MAX_UPLOAD_MB_ENV)
        values.update({key: value for key, value in overrides.items() if value is not None})
        if "checkpoint" not in values:
            raise ConfigError(f"no model configured: set {CHECKPOINT_ENV} or pass --checkpoint")
        values["checkpoint"] = Path(values["checkpoint"])  # type: ignore[arg-type]
        if values.get("caption_checkpoint") is not None:
            values["caption_checkpoint"] = Path(values["caption_checkpoint"])  # type: ignore[arg-type]
        values["data_dir"] = Path(values.get("data_dir", default_data_dir())).expanduser()  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def parse_api_keys(text: str) -> frozenset[str]:
    """Comma-separated keys, blanks around them removed, empty entries dropped."""
    return frozenset(key.strip() for key in text.split(",") if key.strip())


def megabytes(text: str | float, name: str = "upload limit") -> int:
    """A size in MB (decimal fractions allowed) as bytes (1 MB = 1,048,576 bytes).

    Raises:
        ConfigError: not a positive number.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number of megabytes, got {text!r}") from None
    if not 0 < value < float("inf"):  # NaN fails both comparisons
        raise ConfigError(f"{name}: expected a positive number of megabytes, got {text!r}")
    return int(value * 1024 * 1024)
