"""``/api/studies``: upload a study, read one, search them, and draw their images and heatmaps."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from cxreader import DISCLAIMER
from cxreader.data.io import sniff_format
from cxreader.errors import ConfigError, ImageReadError
from cxreader.labels import NO_FINDING, UnknownFindingError, canonical_finding, display_name
from cxreader.screening.triage import urgency_rank
from cxreader.service import analysis
from cxreader.service.deps import ApiKeyDep, ServiceState, SessionDep, StateDep
from cxreader.service.schemas import (
    ErrorOut,
    FindingOut,
    PageLinks,
    StudyLinks,
    StudyOut,
    StudyPage,
    StudySummary,
)
from cxreader.service.uploads import FILE_FIELD, UploadError, read_upload
from cxreader.storage.crud import MAX_SEARCH_LIMIT, SearchRow, get_image, search_records
from cxreader.storage.tables import Image

#: Largest page the API serves (the storage layer allows more; a browser needs no more).
MAX_PAGE = min(100, MAX_SEARCH_LIMIT)

router = APIRouter(
    prefix="/api/studies",
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
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _study_url(image_id: int) -> str:
    return f"/api/studies/{image_id}"


def _heatmap_url(image_id: int, finding: str) -> str:
    return f"/api/studies/{image_id}/heatmap/{finding}.png"


def _finding(
    image_id: int,
    *,
    finding: str,
    probability: float,
    threshold: float,
    above_threshold: bool,
    description: str | None,
    description_data: dict | None,
    caption: str | None,
    box: list[int] | None,
    heatmaps: bool,
) -> FindingOut:
    return FindingOut(
        finding=finding,
        display_name=display_name(finding),
        probability=probability,
        threshold=threshold,
        above_threshold=above_threshold,
        description=description,
        description_data=description_data,
        caption=caption,
        box=box,
        heatmap_url=_heatmap_url(image_id, finding) if heatmaps else None,
    )


def study_out(state: ServiceState, image: Image, *, created: bool | None = None) -> StudyOut:
    """The API view of a stored image and its findings."""
    heatmaps = analysis.heatmap_available(state, image)
    rows = sorted(image.findings, key=lambda item: -item.probability)
    findings = [
        _finding(
            image.id,
            finding=row.finding,
            probability=row.probability,
            threshold=row.threshold,
            above_threshold=row.above_threshold,
            description=row.description,
            description_data=row.description_data,
            caption=row.caption,
            box=[row.box_x, row.box_y, row.box_width, row.box_height] if row.box_x is not None else None,
            heatmaps=heatmaps,
        )
        for row in rows
    ]
    positives = sorted((row.finding for row in rows if row.above_threshold), key=urgency_rank)
    study = image.study
    spacing = None
    if image.pixel_spacing_x is not None and image.pixel_spacing_y is not None:
        spacing = [image.pixel_spacing_x, image.pixel_spacing_y]
    return StudyOut(
        id=image.id,
        status=image.status,
        failure_reason=image.failure_reason,
        created=created,
        synthetic=bool(image.synthetic),
        checkpoint_id=image.checkpoint_id,
        content_sha256=image.content_sha256,
        patient_id=study.patient_id if study else None,
        study_instance_uid=study.study_instance_uid if study else None,
        study_date=study.study_date if study else None,
        accession_number=study.accession_number if study else None,
        view_position=image.view_position,
        modality=image.modality,
        width=image.width,
        height=image.height,
        pixel_spacing_mm=spacing,
        created_at=image.created_at,
        positive_findings=positives,
        findings=findings,
        links=StudyLinks(
            self=_study_url(image.id),
            image=f"{_study_url(image.id)}/image.png" if image.status == "ok" else None,
        ),
        disclaimer=DISCLAIMER,
    )


def _summary(state: ServiceState, row: SearchRow) -> StudySummary:
    heatmaps = row.status == "ok" and (
        any(hit.heatmap_path for hit in row.findings)
        or (row.checkpoint_id == state.checkpoint_id and state.backend.model is not None)
    )
    return StudySummary(
        id=row.image_id,
        status=row.status,
        failure_reason=row.failure_reason,
        synthetic=row.synthetic,
        checkpoint_id=row.checkpoint_id,
        patient_id=row.patient_id,
        study_date=row.study_date,
        view_position=row.view_position,
        modality=row.modality,
        created_at=row.created_at,
        score=row.score,
        findings=[
            _finding(
                row.image_id,
                finding=hit.finding,
                probability=hit.probability,
                threshold=hit.threshold,
                above_threshold=hit.above_threshold,
                description=hit.description,
                description_data=None,
                caption=hit.caption,
                box=list(hit.box) if hit.box is not None else None,
                heatmaps=heatmaps,
            )
            for hit in row.findings
        ],
        links=StudyLinks(
            self=_study_url(row.image_id),
            image=f"{_study_url(row.image_id)}/image.png" if row.status == "ok" else None,
        ),
    )


def _load(state: ServiceState, image_id: int) -> Image:
    with state.database.session() as session:
        image = get_image(session=session, image_id=image_id)
    if image is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study with id {image_id}")
    return image


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload one image (PNG, JPEG or DICOM) and get its findings",
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": StudyOut, "description": "the same image was already stored: its stored result"},
        400: {"model": ErrorOut, "description": "malformed upload"},
        413: {"model": ErrorOut, "description": "larger than the upload limit"},
        415: {"model": ErrorOut, "description": "not an image"},
        422: {"model": ErrorOut, "description": "an image that cannot be read, or not a radiograph"},
    },
)
async def upload_study(request: Request, response: Response, state: StateDep) -> StudyOut:
    """Read one radiograph, classify it, draw its heatmaps, describe its positive findings and store it.

    Send the file as ``multipart/form-data`` in the field ``file``, or as the raw request body. The upload
    limit is enforced while the body streams in; the format is decided by the file's content.
    """
    try:
        data = await read_upload(request, max_bytes=state.settings.max_upload_bytes)
    except UploadError as exc:
        raise HTTPException(exc.status, exc.message) from None
    if sniff_format(data) is None:
        first = data[:8].hex(" ")
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"not an image: the file's first bytes ({first}) are not those of a PNG, JPEG or DICOM file "
            "(TIFF, BMP, JPEG 2000 and WebP are read too)",
        )
    try:
        outcome = await run_in_threadpool(analysis.analyse_upload, state, data)
    except ImageReadError as exc:
        raise HTTPException(422, f"the file cannot be read as a radiograph: {exc.reason}") from None
    image = await run_in_threadpool(_load, state, outcome.image_id)
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = _study_url(outcome.image_id)
    return study_out(state, image, created=outcome.created)


@router.get(
    "",
    summary="Search the stored studies",
    responses={422: {"model": ErrorOut, "description": "an invalid filter"}},
)
def search_studies(
    state: StateDep,
    session: SessionDep,
    finding: Annotated[str | None, Query(description="one of the 14 findings")] = None,
    min_prob: Annotated[float | None, Query(ge=0, le=1, description="smallest probability")] = None,
    since: Annotated[date | None, Query(description="first study date (YYYY-MM-DD)")] = None,
    until: Annotated[date | None, Query(description="last study date (YYYY-MM-DD)")] = None,
    patient: Annotated[str | None, Query(max_length=64, description="patient ID, exact")] = None,
    text: Annotated[str | None, Query(max_length=200, description="words of the description")] = None,
    above_threshold: Annotated[bool | None, Query(description="only findings above threshold")] = None,
    status_filter: Annotated[Literal["ok", "failed", "any"], Query(alias="status")] = "ok",
    order: Annotated[Literal["probability_desc", "date_desc"], Query()] = "probability_desc",
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StudyPage:
    """Every study with a finding at or above a probability, in a date range, of a patient, ...

    The finding filters hold for one and the same finding of a study; the study's matching findings are
    returned, most probable first (all 14 when there is no finding filter).
    """
    try:
        page = search_records(
            session=session,
            finding=finding,
            min_prob=min_prob,
            since=since,
            until=until,
            patient=patient,
            text=text,
            above_threshold=above_threshold,
            status=None if status_filter == "any" else status_filter,
            limit=limit,
            offset=offset,
            order=order,
        )
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    query = {
        key: value
        for key, value in (
            ("finding", finding),
            ("min_prob", min_prob),
            ("since", since.isoformat() if since else None),
            ("until", until.isoformat() if until else None),
            ("patient", patient),
            ("text", text),
            ("above_threshold", None if above_threshold is None else str(above_threshold).lower()),
            ("status", status_filter),
            ("order", order),
            ("limit", limit),
        )
        if value is not None
    }

    def link(start: int) -> str:
        return "/api/studies?" + urlencode({**query, "offset": start})

    links = PageLinks(
        next=link(offset + limit) if limit and offset + limit < page.total else None,
        previous=link(max(0, offset - limit)) if limit and offset > 0 else None,
    )
    return StudyPage(
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        items=[_summary(state, row) for row in page.rows],
        links=links,
        disclaimer=DISCLAIMER,
    )


@router.get("/{study_id}", summary="One study with all its findings", responses={404: {"model": ErrorOut}})
def get_study(study_id: int, state: StateDep) -> StudyOut:
    """The stored study: metadata, the 14 findings with thresholds and descriptions, and links."""
    return study_out(state, _load(state, study_id))


_PNG = {200: {"content": {"image/png": {}}, "description": "a PNG image"}, 404: {"model": ErrorOut}}


@router.get(
    "/{study_id}/image.png", summary="The radiograph as a PNG", response_class=Response, responses=_PNG
)
def get_image_png(study_id: int, state: StateDep) -> Response:
    """The display rendition of the radiograph (8-bit, longer side at most 1,024 pixels)."""
    image = _load(state, study_id)
    try:
        data = analysis.display_png(state, image)
    except analysis.AssetUnavailableError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(content=data, media_type="image/png")


@router.get(
    "/{study_id}/heatmap/{finding}.png",
    summary="The heatmap of one finding as a PNG",
    response_class=Response,
    responses=_PNG,
)
def get_heatmap_png(
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
    image = _load(state, study_id)
    if image.status != "ok":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this record is a file that could not be read")
    try:
        data = (
            analysis.heatmap_layer_png(state, image, name)
            if layer
            else analysis.overlay_png(state, image, name)
        )
    except analysis.AssetUnavailableError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(content=data, media_type="image/png")
