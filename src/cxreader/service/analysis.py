"""What the service does with a study: analyse an upload, and draw its images and heatmaps on request.

The same core functions as ``cxreader screen`` (:mod:`cxreader.screening.engine`): content sniffing and
decoding, the modality check, the checkpoint's evaluation preset, batched inference, class activation maps
and grounded descriptions, one atomic record per image. These functions block (decoding, inference,
database); the routes run them in worker threads so that the event loop keeps serving other requests, and
whatever decodes an image only in one of the service's decode slots (``ServiceState.decode_limiter``; the
memory bound is stated in :mod:`cxreader.service`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from cxreader.data.io import declared_pixel_count
from cxreader.errors import ImageReadError
from cxreader.files import sha256_bytes
from cxreader.localization import overlay
from cxreader.localization.cam import heatmaps
from cxreader.localization.overlay import map_from_png, map_to_png, render_overlay
from cxreader.screening.engine import PreparedImage, classify_batch, image_result, prepare_image
from cxreader.service.assets import AssetStore
from cxreader.service.deps import ServiceState
from cxreader.storage.records import ImageRecord
from cxreader.storage.tables import Image
from cxreader.storage.write import add_image_result


class AssetUnavailableError(Exception):
    """A display image or heatmap the service cannot produce for a record (the reason is the message)."""


class ImageTooLargeError(Exception):
    """An upload whose header declares more pixels than the service's budget (the message says both)."""


class DecodeNeededError(Exception):
    """Drawing a stored record's image needs its original decoded again, and the caller did not allow it."""


@dataclass(frozen=True)
class UploadOutcome:
    """The stored image's id, and whether this upload created it (``False``: the same content was stored)."""

    image_id: int
    created: bool


def check_pixel_budget(state: ServiceState, data: bytes) -> None:
    """Refuse an upload whose header declares more pixels than ``settings.max_upload_pixels``.

    Only the header is read (:func:`~cxreader.data.io.declared_pixel_count`): a file that inflates to a huge
    image is refused before a byte of it is decoded. A header that cannot be read passes; the decoder then
    names the problem.

    Raises:
        ImageTooLargeError: naming the declared size and the budget.
    """
    declared = declared_pixel_count(data)
    budget = state.settings.max_upload_pixels
    if declared is not None and declared > budget:
        raise ImageTooLargeError(
            f"image too large: its header declares {declared:,} pixels ({declared / 1e6:.1f} megapixels); "
            f"this server reads at most {budget / 1e6:g} megapixels per upload"
        )


def _stored_id(state: ServiceState, sha256: str) -> int | None:
    """The id of this content's record under the service's checkpoint (read or refused), if stored."""
    with state.database.session() as session:
        return session.scalar(
            select(Image.id).where(
                Image.content_sha256 == sha256,
                Image.checkpoint_id == state.checkpoint_id,
                Image.status.in_(("ok", "refused")),  # a refusal stands as the record, like a result
            )
        )


def analyse_upload(state: ServiceState, data: bytes) -> UploadOutcome:
    """Decode, classify, explain and store one uploaded image (or find it already stored).

    Each content is analysed once per server process: uploads of the same bytes wait on the lock of its hash
    (:class:`~cxreader.service.locks.ContentLocks`) and then find the record the first one stored. The files
    (the upload under its content hash, never a client-given name; its display rendition; the heatmaps of all
    the model's findings) are written together with the record: when storing the record fails, the files this upload
    created are removed again.

    Raises:
        ImageReadError: not an image the reader can decode. An image the input gate refuses (a CT, a lateral
            view, a photograph, ...) is stored as refused, with the reasons and no findings.
    """
    sha256 = sha256_bytes(data)
    existing = _stored_id(state, sha256)
    if existing is not None:
        return UploadOutcome(existing, created=False)
    with state.content_locks.hold(sha256):
        existing = _stored_id(state, sha256)  # stored by the upload this one waited for
        if existing is not None:
            return UploadOutcome(existing, created=False)
        return UploadOutcome(_analyse_and_store(state, sha256, data), created=True)


def _analyse_and_store(state: ServiceState, sha256: str, data: bytes) -> int:
    """Read a new image, write its files, store its record; returns the record's id."""
    backend = state.backend
    prepared = prepare_image(
        "upload", data, transform=backend.transform, keep_display=True, sha256=sha256, gate=backend.gate
    )
    reading = None
    if not prepared.refused:  # an image the gate's rules refuse is stored as "not read", the model never runs
        # The maps of all the model's findings: the page lets a clinician look at any.
        [reading] = classify_batch(
            backend, [prepared], describe=backend.model is not None, captioner=state.captioner, findings="all"
        )
    files = NewFiles(state.assets, sha256)
    try:
        upload_path = files.write(state.assets.upload_path(sha256), data)
        files.write(state.assets.display_path(sha256), _png(prepared.display))
        explanation = reading.explanation if reading is not None else None
        maps = explanation.maps if explanation is not None else {}
        result = image_result(
            prepared,
            reading.probabilities if reading is not None else None,
            backend.contract.thresholds,
            checkpoint_id=state.checkpoint_id,
            source_path=str(upload_path),
            synthetic=bool(backend.contract.synthetic),
            explanation=explanation,
            heatmap_paths=_write_heatmaps(state, sha256, maps, write=files.write),
            captions=reading.captions if reading is not None else None,
            verdict=reading.verdict if reading is not None else None,
            labels=backend.labels,
        )
        with state.database.session() as session:
            return add_image_result(session=session, result=result)
    except BaseException:
        files.remove()
        raise


class NewFiles:
    """The files one upload adds to the store, so that they can be taken back when its record is not stored.

    A file that exists already is left as it is, neither rewritten nor removed: its name is made from the
    content hash (and the checkpoint), so it holds the same thing, and a record of the same content under
    another checkpoint uses the same upload and display files.
    """

    def __init__(self, assets: AssetStore, sha256: str):
        self.assets = assets
        self.sha256 = sha256
        self.created: list[Path] = []

    def write(self, path: Path, data: bytes) -> Path:
        """Write a new file of the store atomically and remember it; an existing one is kept."""
        if path.exists():
            return path
        written = self.assets.write(path, data)
        self.created.append(path)
        return written

    def remove(self) -> None:
        """Remove the files this upload created, and its content's heatmap folder when left empty."""
        for path in reversed(self.created):
            path.unlink(missing_ok=True)
        for folder in {path.parent for path in self.created if path.parent.name == self.sha256}:
            with contextlib.suppress(OSError):  # not empty: files of a stored record are in it
                folder.rmdir()
        self.created.clear()


def _write_heatmaps(
    state: ServiceState,
    sha256: str,
    maps: Mapping[str, np.ndarray],
    *,
    write: Callable[[Path, bytes], Path] | None = None,
) -> dict[str, str]:
    """Store maps of the service's checkpoint (with ``write``, default the store's); returns their paths
    (relative to the asset root) by finding."""
    write = write or state.assets.write
    paths = {}
    for finding, values in maps.items():
        paths[finding] = state.assets.heatmap_relpath(state.checkpoint_id, sha256, finding)
        write(state.assets.root / paths[finding], map_to_png(values))
    return paths


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


# --- images and heatmaps of stored records -------------------------------------------------------------------


def _original_bytes(state: ServiceState, image: ImageRecord) -> bytes:
    """The record's original file, checked against its content hash."""
    candidates = [state.assets.upload_path(image.content_sha256)]
    if image.source_path:
        # A path this server's own screening run stored (clients never set it); read only if unchanged.
        candidates.append(Path(image.source_path))
    for candidate in candidates:
        try:
            data = candidate.read_bytes()
        except (OSError, ValueError):
            continue
        if sha256_bytes(data) == image.content_sha256:
            return data
    raise AssetUnavailableError("the original image file is no longer available to the server")


def _prepare_stored(state: ServiceState, image: ImageRecord, *, decode: bool) -> PreparedImage:
    """The stored record's original, decoded again (``decode=False``: :class:`DecodeNeededError` instead)."""
    if not decode:
        raise DecodeNeededError(f"record {image.id}: the original must be decoded again")
    data = _original_bytes(state, image)
    try:
        return prepare_image(
            image.source_path,
            data,
            transform=state.backend.transform,
            keep_display=True,
            sha256=image.content_sha256,
        )
    except ImageReadError as exc:
        raise AssetUnavailableError(f"the original image cannot be read: {exc.reason}") from None


def display_png(state: ServiceState, image: ImageRecord, *, decode: bool = True) -> bytes:
    """The display rendition of a stored image (made from the original file when not kept yet).

    With ``decode=False`` only what is kept is used: drawing that needs the original decoded again raises
    :class:`DecodeNeededError`, so that the caller can do it where decoding is bounded (the same holds for
    the other drawing functions below).

    Raises:
        AssetUnavailableError: a failed record, or the original file is gone or changed.
    """
    if image.status == "failed":
        raise AssetUnavailableError("this record is a file that could not be read; it has no image")
    path = state.assets.display_path(image.content_sha256)
    if path.is_file():
        return path.read_bytes()
    prepared = _prepare_stored(state, image, decode=decode)
    assert prepared.display is not None
    data = _png(prepared.display)
    state.assets.write(path, data)
    return data


def heatmap_available(state: ServiceState, image: ImageRecord) -> bool:
    """Whether the service can show heatmaps for this record (stored ones, or its own model's)."""
    if image.status != "ok":
        return False
    if any(finding.heatmap_path for finding in image.findings):
        return True
    return image.checkpoint_id == state.checkpoint_id and state.backend.model is not None


def heatmap_values(
    state: ServiceState, image: ImageRecord, finding: str, *, decode: bool = True
) -> np.ndarray:
    """The finding's heatmap in [0, 1] at the model's input size: stored, or computed now for own records.

    Raises:
        AssetUnavailableError: a failed record, or no stored map and the service's model did not produce it.
    """
    if image.status != "ok":
        raise AssetUnavailableError("this record is a file that could not be read; it has no heatmap")
    row = next((item for item in image.findings if item.finding == finding), None)
    if row is None:
        raise AssetUnavailableError(f"the record has no result for {finding}")
    if row.heatmap_path:
        path = state.assets.resolve(row.heatmap_path)
        if path is not None and path.is_file():
            return map_from_png(path)
    if image.checkpoint_id != state.checkpoint_id or state.backend.model is None:
        raise AssetUnavailableError(
            "no heatmap was stored for this record, and it was not made by this server's model "
            "(heatmaps need the PyTorch checkpoint that produced the result)"
        )
    cached = state.assets.root / state.assets.heatmap_relpath(
        state.checkpoint_id, image.content_sha256, finding
    )
    if cached.is_file():
        return map_from_png(cached)
    prepared = _prepare_stored(state, image, decode=decode)
    labels = state.backend.labels
    with state.backend.lock:  # the maps of all the model's findings, as an upload stores them
        maps = heatmaps(state.backend.model, prepared.tensor, None, "cam", labels=labels)
    _write_heatmaps(state, image.content_sha256, dict(zip(labels, maps, strict=True)))
    return maps[labels.index(finding)]


def overlay_png(state: ServiceState, image: ImageRecord, finding: str, *, decode: bool = True) -> bytes:
    """The overlay figure of one finding: the radiograph, the heatmap, the box, the sentence (a cached PNG).

    Raises:
        AssetUnavailableError: see :func:`heatmap_values`.
    """
    path = state.assets.overlay_path(image.checkpoint_id or 0, image.content_sha256, finding)
    if path.is_file():
        return path.read_bytes()
    values = heatmap_values(state, image, finding, decode=decode)
    display = np.asarray(PILImage.open(io.BytesIO(display_png(state, image, decode=decode))).convert("L"))
    row = next(item for item in image.findings if item.finding == finding)
    box = None
    if row.box is not None and image.width and image.height:
        # The stored box is in original pixels; the overlay is drawn on the display rendition.
        sx, sy = display.shape[1] / image.width, display.shape[0] / image.height
        x, y, width, height = row.box
        box = [x * sx, y * sy, width * sx, height * sy]
    data = render_overlay(
        display,
        values,
        finding=finding,
        probability=row.probability,
        threshold=row.threshold,
        box=box,
        sentence=row.description,
        synthetic=bool(image.synthetic),
        view=image.view_position or "PA",
    )
    state.assets.write(path, data)
    return data


def heatmap_layer_png(state: ServiceState, image: ImageRecord, finding: str, *, decode: bool = True) -> bytes:
    """The heatmap alone as a transparent colour layer at the display image's size, for the web page to lay
    over the radiograph. Same colours and transparency rule as the overlay figure (``inferno``; fully
    transparent below the overlay's threshold, opacity growing with the map value).
    """
    values = heatmap_values(state, image, finding, decode=decode)
    with PILImage.open(io.BytesIO(display_png(state, image, decode=decode))) as display:
        return overlay.heatmap_layer_png(values, display.size)
