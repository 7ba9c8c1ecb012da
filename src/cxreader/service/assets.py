"""The service's own files under its data directory: uploads, display images, heatmaps and overlays.

Every name is made by the server from a content hash, a checkpoint id and a finding name out of
:data:`~cxreader.labels.HARMONISED_LABELS`; nothing a client sends (file name, path, header) ever becomes part of a
path. Paths stored in the database are relative to the data directory and are resolved back inside it only.

Layout::

    uploads/<sha256>                               the uploaded bytes, as received
    display/<sha256>.png                           8-bit rendition for the page (longer side <= 1024)
    heatmaps/<checkpoint id>/<sha256>/<finding>.png  class activation map, 8-bit, at the model's input size
    overlays/<checkpoint id>/<sha256>/<finding>.png  the rendered overlay figure (a cache)
"""

from __future__ import annotations

import re
from pathlib import Path

from cxreader.files import write_bytes_atomic
from cxreader.labels import HARMONISED_LABELS

_SHA256 = re.compile(r"[0-9a-f]{64}")


class AssetStore:
    """Server-named files under one data directory.

    Args:
        root: The data directory (created when missing).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _check(sha256: str, finding: str | None = None, checkpoint_id: int | None = None) -> None:
        # Defence in depth: callers pass database values, but a name is only ever built from these shapes.
        if not _SHA256.fullmatch(sha256):
            raise ValueError("content hash must be 64 lower-case hex digits")
        if finding is not None and finding not in HARMONISED_LABELS:
            raise ValueError(f"unknown finding {finding!r}")
        if checkpoint_id is not None and (not isinstance(checkpoint_id, int) or checkpoint_id < 0):
            raise ValueError("checkpoint id must be a non-negative integer")

    def upload_path(self, sha256: str) -> Path:
        """Where an upload with this content is kept."""
        self._check(sha256)
        return self.root / "uploads" / sha256

    def display_path(self, sha256: str) -> Path:
        """The display rendition of an image."""
        self._check(sha256)
        return self.root / "display" / f"{sha256}.png"

    def heatmap_relpath(self, checkpoint_id: int, sha256: str, finding: str) -> str:
        """The heatmap's path relative to the data directory (what the database stores)."""
        self._check(sha256, finding, checkpoint_id)
        return f"heatmaps/{checkpoint_id}/{sha256}/{finding}.png"

    def overlay_path(self, checkpoint_id: int, sha256: str, finding: str) -> Path:
        """The cached overlay figure of one finding."""
        self._check(sha256, finding, checkpoint_id)
        return self.root / "overlays" / str(checkpoint_id) / sha256 / f"{finding}.png"

    def resolve(self, relative: str) -> Path | None:
        """A stored relative path as a file inside the data directory; ``None`` when it points elsewhere."""
        candidate = (self.root / relative).resolve()
        return candidate if candidate.is_relative_to(self.root) else None

    def write(self, path: Path, data: bytes) -> Path:
        """Write a file of the store atomically."""
        if not path.resolve().is_relative_to(self.root):
            raise ValueError("refusing to write outside the data directory")
        return write_bytes_atomic(path, data)
