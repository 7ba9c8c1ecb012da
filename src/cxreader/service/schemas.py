"""Pydantic models of the REST API's responses (what the OpenAPI document describes).

A *study* in the API is one stored image and its 14 findings (one upload, or one file of a screening run);
the DICOM study it belongs to, when the file says, is given by ``study_instance_uid``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """An error, in one readable sentence."""

    detail: str = Field(examples=["upload too large: the limit is 25 MB"])


class HealthOut(BaseModel):
    """Liveness: the service runs and its model is loaded."""

    status: str = Field(examples=["ok"])
    version: str


class ModelOut(BaseModel):
    """The model that reads uploads."""

    backend: str = Field(description="pytorch or onnx")
    model_name: str
    file: str = Field(description="file name of the checkpoint")
    sha256: str
    input_size: int
    labels: list[str]
    thresholds: dict[str, float] = Field(description="operating threshold per finding")
    synthetic: bool = Field(description="trained on SYNTHETIC data: its outputs mean nothing for patients")
    heatmaps: bool = Field(description="whether the model can draw heatmaps")
    cxreader_version: str
    disclaimer: str


class FindingOut(BaseModel):
    """The model's result for one finding."""

    finding: str = Field(examples=["Effusion"])
    display_name: str = Field(examples=["Effusion"])
    probability: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1, description="the checkpoint's operating threshold")
    above_threshold: bool
    description: str | None = Field(None, description="grounded description (positive findings)")
    description_data: dict[str, Any] | None = Field(None, description="its parts: side, zone, size, ...")
    caption: str | None = Field(None, description="learned caption, where one was written")
    box: list[int] | None = Field(None, description="[x, y, width, height] in pixels of the original image")
    heatmap_url: str | None = Field(
        None, description="overlay figure; add ?layer=true for the bare colour layer"
    )


class StudyLinks(BaseModel):
    """Where to get more of a study."""

    self: str
    image: str | None = Field(None, description="display rendition of the radiograph (PNG)")


class StudyOut(BaseModel):
    """One stored study (image) with all 14 findings, most probable first."""

    id: int
    status: str = Field(description="ok, or failed (then failure_reason says why)")
    failure_reason: str | None = None
    created: bool | None = Field(None, description="on upload: false when the same image was already stored")
    synthetic: bool = Field(description="SYNTHETIC image or model: not a result for a real patient")
    checkpoint_id: int | None
    content_sha256: str
    patient_id: str | None = None
    study_instance_uid: str | None = None
    study_date: date | None = None
    accession_number: str | None = None
    view_position: str | None = None
    modality: str | None = None
    width: int | None = None
    height: int | None = None
    pixel_spacing_mm: list[float] | None = Field(None, description="[x, y] mm per pixel")
    created_at: datetime
    positive_findings: list[str] = Field(description="findings above threshold, most urgent first")
    findings: list[FindingOut]
    links: StudyLinks
    disclaimer: str


class StudySummary(BaseModel):
    """One search result: the study and its findings that matched the filters."""

    id: int
    status: str
    failure_reason: str | None = None
    synthetic: bool
    checkpoint_id: int | None
    patient_id: str | None = None
    study_date: date | None = None
    view_position: str | None = None
    modality: str | None = None
    created_at: datetime
    score: float | None = Field(None, description="largest probability among the matched findings")
    findings: list[FindingOut]
    links: StudyLinks


class PageLinks(BaseModel):
    """Neighbouring pages of a search."""

    next: str | None = None
    previous: str | None = None


class StudyPage(BaseModel):
    """One page of search results."""

    total: int = Field(description="matches over all pages")
    limit: int
    offset: int
    items: list[StudySummary]
    links: PageLinks
    disclaimer: str
