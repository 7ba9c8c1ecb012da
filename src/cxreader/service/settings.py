"""Settings of the web service, from the environment (the twelve-factor way) or given in code.

=========================== =====================================================================
``CXREADER_CHECKPOINT``     the model: a cxreader checkpoint (``.pt``) or ONNX export (``.onnx``)
``CXREADER_DATABASE_URL``   the records database (default: SQLite in the user data directory)
``CXREADER_API_KEYS``       comma-separated API keys; clients send ``Authorization: Bearer KEY``
``CXREADER_MAX_UPLOAD_MB``  largest upload in MB (default 25)
``CXREADER_MAX_UPLOAD_MEGAPIXELS``  largest image an upload may declare, in megapixels (default 36)
``CXREADER_MAX_CONCURRENT_DECODES``  uploads decoded and read by the model at once (default: CPU cores)
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
MAX_UPLOAD_MEGAPIXELS_ENV = "CXREADER_MAX_UPLOAD_MEGAPIXELS"
MAX_CONCURRENT_DECODES_ENV = "CXREADER_MAX_CONCURRENT_DECODES"
DEFAULT_MAX_UPLOAD_MB = 25.0
#: The pixel budget of one upload. The largest chest detectors are 43 x 43 cm at 100 to 140 micrometres
#: (4300 x 4300 = 18.5 MP at most); 36 MP is 6000 x 6000, the same plate at 72 micrometres, twice that. The
#: model reads 224 px and the page shows 1024 px, so more pixels add memory, not information: decoding peaks
#: at about 12 to 14 bytes per pixel for PNG/JPEG and 25 for DICOM, so 0.5 and 0.9 GB at this budget
#: (benchmarks/service_upload_memory.py).
DEFAULT_MAX_UPLOAD_MEGAPIXELS = 36.0
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


def default_concurrency() -> int:
    """The CPU cores this process may run on (``os.process_cpu_count`` on Python 3.13+, else the affinity
    mask, else ``os.cpu_count``); at least 1."""
    counter = getattr(os, "process_cpu_count", None)
    if counter is not None:
        return counter() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


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
        max_upload_pixels: Largest pixel count an upload's header may declare; larger ones are refused
            before decoding (see :data:`DEFAULT_MAX_UPLOAD_MEGAPIXELS`).
        max_concurrent_decodes: Uploads decoded and read by the model at the same time; others wait.
    """

    checkpoint: Path
    api_keys: frozenset[str] = field(repr=False)
    database_url: str | None = None
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    data_dir: Path = field(default_factory=default_data_dir)
    device: str = "auto"
    caption_checkpoint: Path | None = None
    max_upload_pixels: int = int(DEFAULT_MAX_UPLOAD_MEGAPIXELS * 1_000_000)
    max_concurrent_decodes: int = field(default_factory=default_concurrency)

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
        if self.max_upload_pixels <= 0:
            raise ConfigError(f"the pixel budget must be positive, got {self.max_upload_pixels} pixels")
        if self.max_concurrent_decodes < 1:
            raise ConfigError(
                f"at least one upload must be decoded at a time, got {self.max_concurrent_decodes}"
            )

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
        if env.get(MAX_UPLOAD_MEGAPIXELS_ENV):
            values["max_upload_pixels"] = megapixels(
                env[MAX_UPLOAD_MEGAPIXELS_ENV], MAX_UPLOAD_MEGAPIXELS_ENV
            )
        if env.get(MAX_CONCURRENT_DECODES_ENV):
            values["max_concurrent_decodes"] = positive_int(
                env[MAX_CONCURRENT_DECODES_ENV], MAX_CONCURRENT_DECODES_ENV
            )
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


def megapixels(text: str | float, name: str = "pixel budget") -> int:
    """A pixel count in megapixels (decimal fractions allowed) as pixels (1 MP = 1,000,000 pixels).

    Raises:
        ConfigError: not a positive number, or less than one pixel.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number of megapixels, got {text!r}") from None
    if not 0 < value < float("inf") or value * 1_000_000 < 1:  # NaN fails the comparisons
        raise ConfigError(f"{name}: expected a positive number of megapixels, got {text!r}")
    return int(value * 1_000_000)


def positive_int(text: str | int, name: str) -> int:
    """A whole number of at least 1.

    Raises:
        ConfigError: not a whole number, or below 1.
    """
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"{name}: expected at least 1, got {text!r}")
    return value
