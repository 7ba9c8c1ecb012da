"""``/api/studies``: upload a study, read one, search them, and draw their images and heatmaps."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlencode

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.requests import ClientDisconnect

from cxreader import DISCLAIMER
from cxreader.data.io import sniff_format
from cxreader.errors import ConfigError, ImageReadError
from cxreader.labels import NO_FINDING, UnknownFindingError, canonical_finding
from cxreader.service import analysis
from cxreader.service.deps import ApiKeyDep, ServiceState, SessionDep, StateDep
from cxreader.service.schemas import (
    STUDIES_PATH,
    DicomObjectOut,
    ErrorOut,
    PageLinks,
    StudyBase,
    StudyOut,
    StudyPage,
    StudySummary,
    study_url,
)
from cxreader.service.uploads import FILE_FIELD, RAW_TYPES, UploadError, read_upload
from cxreader.storage.dicom_objects import dicom_object, dicom_objects_of
from cxreader.storage.names import MAX_SEARCH_LIMIT
from cxreader.storage.read import get_image
from cxreader.storage.records import ImageRecord
from cxreader.storage.search import search_records

#: Largest page the API serves (the storage layer allows more; a browser needs no more).
MAX_PAGE = min(100, MAX_SEARCH_LIMIT)
#: Largest integer the databases store (a signed 64-bit INTEGER/BIGINT): ids and offsets above it cannot exist
#: and would overflow the query (an HTTP 500) instead of answering 404 or 422.
MAX_INT64 = 2**63 - 1
#: Largest offset: with a page added it still fits the databases' integers.
MAX_OFFSET = MAX_INT64 - MAX_PAGE

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix=STUDIES_PATH,
    tags=["studies"],
    dependencies=[ApiKeyDep],
    responses={401: {"model": ErrorOut, "description": "no valid API key"}},
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
                }
            },
            **{media: {"schema": {"type": "string", "format": "binary"}} for media in sorted(RAW_TYPES)},
        },
    }
}


ViewT = TypeVar("ViewT", bound=StudyBase)


def study_view(state: ServiceState, schema: type[ViewT], record: ImageRecord) -> ViewT:
    """The API view of a stored image, its findings linked to their heatmaps where the service can draw them."""
    return schema.model_validate(record, context={"heatmaps": analysis.heatmap_available(state, record)})


def _load(state: ServiceState, image_id: int) -> ImageRecord:
    """The stored study; 404 when there is none (ids outside the databases' integers cannot exist)."""
    record = None
    if 0 < image_id <= MAX_INT64:
        with state.database.session() as session:
            record = get_image(session=session, image_id=image_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study with id {image_id}")
    return record


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload one image (PNG, JPEG or DICOM) and get its findings",
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": StudyOut, "description": "the same image was already stored: its stored result"},
        400: {"model": ErrorOut, "description": "malformed upload"},
        413: {"model": ErrorOut, "description": "larger than the upload limit or the pixel budget"},
        415: {"model": ErrorOut, "description": "not an image"},
        422: {"model": ErrorOut, "description": "an image that cannot be read, or not a radiograph"},
    },
)
async def upload_study(request: Request, response: Response, state: StateDep) -> StudyOut:
    """Read one radiograph, classify it, draw its heatmaps, describe its positive findings and store it.

    Send the file as ``multipart/form-data`` in the field ``file``, or as the raw request body. The upload
    limit is enforced while the body streams in; the format is decided by the file's content; an image whose
    header declares more pixels than the server's budget is refused before it is decoded. Uploads beyond the
    server's number of concurrent reads wait for their turn.
    """
    data = await _receive(request, state)
    if sniff_format(data) is None:
        first = data[:8].hex(" ")
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"not an image: the file's first bytes ({first}) are not those of a PNG, JPEG or DICOM file "
            "(TIFF, BMP, JPEG 2000 and WebP are read too)",
        )
    try:
        await run_in_threadpool(analysis.check_pixel_budget, state, data)
        # A free decode slot first (waiting holds no thread), then decoding and the model in a thread.
        outcome = await anyio.to_thread.run_sync(
            analysis.analyse_upload, state, data, limiter=state.decode_limiter
        )
    except analysis.ImageTooLargeError as exc:
        raise HTTPException(413, str(exc)) from None
    except ImageReadError as exc:
        raise HTTPException(422, f"the file cannot be read as a radiograph: {exc.reason}") from None
    study = study_view(state, StudyOut, await run_in_threadpool(_load, state, outcome.image_id))
    study.created = outcome.created
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = study_url(outcome.image_id)
    return study


async def _receive(request: Request, state: ServiceState) -> bytes:
    """The uploaded bytes; a refused upload as its HTTP error, a client that went away as one log line."""
    try:
        return await read_upload(request, max_bytes=state.settings.max_upload_bytes)
    except UploadError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except ClientDisconnect:
        # Nobody is left to answer: one line, no traceback, nothing about the upload's content.
        logger.info("upload abandoned: the client disconnected before the body was complete")
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "the client disconnected during the upload"
        ) from None


@router.get(
    "",
    summary="Search the stored studies",
    responses={422: {"model": ErrorOut, "description": "an invalid filter"}},
)
def search_studies(
    state: StateDep,
    session: SessionDep,
    finding: Annotated[str | None, Query(description="a finding of the harmonised label space")] = None,
    min_prob: Annotated[float | None, Query(ge=0, le=1, description="smallest probability")] = None,
    since: Annotated[date | None, Query(description="first study date (YYYY-MM-DD)")] = None,
    until: Annotated[date | None, Query(description="last study date (YYYY-MM-DD)")] = None,
    patient: Annotated[str | None, Query(max_length=64, description="patient ID, exact")] = None,
    text: Annotated[str | None, Query(max_length=200, description="words of the description")] = None,
    above_threshold: Annotated[bool | None, Query(description="only findings above threshold")] = None,
    status_filter: Annotated[Literal["ok", "refused", "failed", "any"], Query(alias="status")] = "ok",
    model: Annotated[
        str | None,
        Query(
            max_length=64, description="a checkpoint's SHA-256 (at least 8 hex digits of it) or model name"
        ),
    ] = None,
    all_results: Annotated[
        bool, Query(description="every model's result for an image (default: each image's newest result)")
    ] = False,
    order: Annotated[Literal["probability_desc", "date_desc"], Query()] = "probability_desc",
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> StudyPage:
    """Every study with a finding at or above a probability, in a date range, of a patient, ...

    The finding filters hold for one and the same finding of a study; the study's matching findings are
    returned, most probable first (all of them when there is no finding filter). Each image appears once, with
    its newest result among the models admitted (``model``), unless ``all_results`` asks for every model's.
    """
    filters = {
        "finding": finding,
        "min_prob": min_prob,
        "since": since,
        "until": until,
        "patient": patient,
        "text": text,
        "above_threshold": above_threshold,
        "status": status_filter,
        "model": model,
        "all_results": all_results or None,
        "order": order,
        "limit": limit,
    }
    try:
        arguments = {key: value for key, value in filters.items() if key != "all_results"}
        page = search_records(session=session, **arguments, latest_only=not all_results, offset=offset)
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    # The neighbouring pages repeat the filters that were given, spelled as query parameters.
    query = {key: _query_value(value) for key, value in filters.items() if value is not None}

    def link(start: int) -> str:
        return f"{STUDIES_PATH}?" + urlencode({**query, "offset": start})

    return StudyPage(
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        items=[study_view(state, StudySummary, record) for record in page.rows],
        links=PageLinks(
            next=link(offset + limit) if limit and offset + limit < page.total else None,
            previous=link(max(0, offset - limit)) if limit and offset > 0 else None,
        ),
        disclaimer=DISCLAIMER,
    )


def _query_value(value: object) -> object:
    if isinstance(value, bool):
        return str(value).lower()
    return value.isoformat() if isinstance(value, date) else value


@router.get("/{study_id}", summary="One study with all its findings", responses={404: {"model": ErrorOut}})
def get_study(study_id: int, state: StateDep) -> StudyOut:
    """The stored study: metadata, the model's findings with thresholds and descriptions, links, and the DICOM
    objects written for it."""
    study = study_view(state, StudyOut, _load(state, study_id))
    with state.database.session() as session:
        objects = dicom_objects_of(session=session, image_ids=[study_id]).get(study_id, [])
    study.dicom_objects = [
        DicomObjectOut.model_validate(item).model_copy(
            update={"url": f"{study_url(study_id)}/dicom/{item.kind}.dcm" if item.path else None}
        )
        for item in objects
    ]
    return study


@router.get(
    "/{study_id}/dicom/{kind}.dcm",
    summary="A DICOM object written for the study's result",
    response_class=FileResponse,
    responses={200: {"content": {"application/dicom": {}}}, 404: {"model": ErrorOut}},
)
def get_dicom_object(study_id: int, kind: Literal["sr", "overlay", "kos"], state: StateDep) -> FileResponse:
    """The report (``sr``), the overlay (``overlay``) or the key object selection (``kos``) as a DICOM file
    (only files cxreader recorded for this study are served)."""
    _load(state, study_id)
    with state.database.session() as session:
        item = dicom_object(session=session, image_id=study_id, kind=kind)
    if item is None or item.path is None or not Path(item.path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} object kept for study {study_id}")
    return FileResponse(item.path, media_type="application/dicom", filename=f"study-{study_id}-{kind}.dcm")


_PNG = {200: {"content": {"image/png": {}}, "description": "a PNG image"}, 404: {"model": ErrorOut}}


async def _png_response(
    state: ServiceState, draw: Callable[..., bytes], study_id: int, *args: object
) -> Response:
    """``draw(state, record, *args)`` as a PNG response; 404 when the service cannot draw it.

    Kept files are read at once; drawing that must decode the original again waits for a decode slot, as
    uploads do.
    """
    record = await run_in_threadpool(_load, state, study_id)
    try:
        try:
            data = await run_in_threadpool(functools.partial(draw, state, record, *args, decode=False))
        except analysis.DecodeNeededError:
            data = await anyio.to_thread.run_sync(
                functools.partial(draw, state, record, *args, decode=True), limiter=state.decode_limiter
            )
    except analysis.AssetUnavailableError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(content=data, media_type="image/png")


@router.get(
    "/{study_id}/image.png", summary="The radiograph as a PNG", response_class=Response, responses=_PNG
)
async def get_image_png(study_id: int, state: StateDep) -> Response:
    """The display rendition of the radiograph (8-bit, longer side at most 1,024 pixels)."""
    return await _png_response(state, analysis.display_png, study_id)


@router.get(
    "/{study_id}/heatmap/{finding}.png",
    summary="The heatmap of one finding as a PNG",
    response_class=Response,
    responses=_PNG,
)
async def get_heatmap_png(
    study_id: int,
    finding: str,
    state: StateDep,
    layer: Annotated[bool, Query(description="the bare colour layer to lay over the image")] = False,
) -> Response:
    """Where the model looked for the finding (class activation map, Zhou et al. 2016).

    By default an overlay figure: the radiograph, the map, the box and the description. With
    ``?layer=true`` the transparent colour layer alone, at the size of ``image.png``.
    """
    try:
        name = canonical_finding(finding)
    except UnknownFindingError:
        name = NO_FINDING
    if name == NO_FINDING:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no finding named {finding!r}")
    draw = analysis.heatmap_layer_png if layer else analysis.overlay_png
    return await _png_response(state, draw, study_id, name)
