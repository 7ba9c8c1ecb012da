"""Pydantic models of the REST API's responses (what the OpenAPI document describes).

A *study* in the API is one stored image and its findings, one per label of the model that read it (one upload,
or one file of a screening run);
the DICOM study it belongs to, when the file says, is given by ``study_instance_uid``. The study schemas are
read from :class:`cxreader.storage.records.ImageRecord` (``model_validate(record)``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, computed_field, model_validator

from cxreader import DISCLAIMER
from cxreader.labels import display_name as readable_name
from cxreader.screening.triage import urgency_rank

#: Where the studies live in the API.
STUDIES_PATH = "/api/studies"


def study_url(image_id: int) -> str:
    """The URL of one study."""
    return f"{STUDIES_PATH}/{image_id}"


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
    labels: list[str] = Field(description="the model's findings, in the order of its outputs")
    thresholds: dict[str, float] = Field(description="operating threshold per finding")
    label_space: list[str] = Field(
        default_factory=list,
        description="every finding a stored result may name (the harmonised label space): searchable across "
        "models",
    )
    synthetic: bool = Field(description="trained on SYNTHETIC data: its outputs mean nothing for patients")
    heatmaps: bool = Field(description="whether the model can draw heatmaps")
    cxreader_version: str
    operating_point: dict[str, Any] | None = Field(
        None,
        description="how the thresholds were chosen: the rule, and per finding the threshold, sensitivity and "
        "specificity it achieved on validation (null for checkpoints that do not record it)",
    )
    calibrated: bool = Field(False, description="probabilities are calibrated on validation data")
    gate: dict[str, Any] = Field(
        default_factory=dict,
        description="the input gate: rules only, or with an out-of-distribution detector",
    )
    disclaimer: str


class FindingOut(BaseModel):
    """The model's result for one finding."""

    model_config = ConfigDict(from_attributes=True)

    finding: str = Field(examples=["Effusion"])
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

    @computed_field(examples=["Effusion"])
    @property
    def display_name(self) -> str:
        """The finding's name for people."""
        return readable_name(self.finding)


class StudyLinks(BaseModel):
    """Where to get more of a study."""

    self: str
    image: str | None = Field(None, description="display rendition of the radiograph (PNG)")


class GateOut(BaseModel):
    """The input gate's verdict on an image: a refused image was not read and has no findings."""

    accepted: bool
    reasons: list[str] = Field(description="why it was refused (empty when accepted)")
    score: float | None = Field(
        None, description="out-of-distribution score, where the model has the detector"
    )
    threshold: float | None = Field(None, description="scores above it are refused")


class ResultModelOut(BaseModel):
    """The checkpoint a stored result came from."""

    sha256: str = Field(description="SHA-256 of the checkpoint file")
    name: str | None = Field(None, description="architecture, e.g. chexnet_densenet121")
    synthetic: bool | None = Field(None, description="trained on SYNTHETIC data (null: not recorded)")


class StoredModelOut(ResultModelOut):
    """A model with stored results, for filtering a search by model."""

    model_config = ConfigDict(from_attributes=True)

    checkpoint_id: int
    version: str | None = None
    created_at: datetime
    images: int = Field(description="images it has results for")
    name: str | None = Field(None, validation_alias="model_name")


class StudyBase(BaseModel):
    """What a study's full view and its search result share, read from a stored image's record.

    Validate with ``context={"heatmaps": True}`` when the service can draw the record's heatmaps: each finding
    then links to its own.
    """

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(validation_alias="image_id")
    status: str = Field(
        description="ok; refused (the input gate did not let the model read it: gate.reasons, no findings); or "
        "failed (the file could not be decoded: failure_reason)"
    )
    failure_reason: str | None = None
    synthetic: bool = Field(description="SYNTHETIC image or model: not a result for a real patient")
    checkpoint_id: int | None
    # Read from the record, shown as ``model`` below.
    checkpoint_sha256: str | None = Field(None, exclude=True)
    model_name: str | None = Field(None, exclude=True)
    model_synthetic: bool | None = Field(None, exclude=True)
    gate_reasons: list[str] | None = Field(None, exclude=True)
    gate_score: float | None = Field(None, exclude=True)
    gate_threshold: float | None = Field(None, exclude=True)
    patient_id: str | None = None
    study_date: date | None = None
    view_position: str | None = None
    modality: str | None = None
    created_at: datetime
    findings: list[FindingOut]

    @computed_field(description="the model that produced the result (null for a file no model read)")
    @property
    def model(self) -> ResultModelOut | None:
        """The stored record's three model columns, as one object."""
        if self.checkpoint_sha256 is None:
            return None
        return ResultModelOut(
            sha256=self.checkpoint_sha256, name=self.model_name, synthetic=self.model_synthetic
        )

    @computed_field(description="the input gate's verdict (null for a file that could not be decoded)")
    @property
    def gate(self) -> GateOut | None:
        """Whether the model read the image, and if not why ("not read: REASON")."""
        if self.status == "failed":
            return None
        return GateOut(
            accepted=self.status == "ok",
            reasons=list(self.gate_reasons or []),
            score=self.gate_score,
            threshold=self.gate_threshold,
        )

    @computed_field
    @property
    def links(self) -> StudyLinks:
        """The study's own URL and its image's."""
        url = study_url(self.id)
        return StudyLinks(self=url, image=f"{url}/image.png" if self.status != "failed" else None)

    @model_validator(mode="after")
    def _link_heatmaps(self, info: ValidationInfo) -> StudyBase:
        if info.context and info.context.get("heatmaps"):
            for finding in self.findings:
                finding.heatmap_url = f"{study_url(self.id)}/heatmap/{finding.finding}.png"
        return self


class DicomObjectOut(BaseModel):
    """A DICOM object cxreader wrote for the study's result (in the source study, a series of its own)."""

    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(
        description="sr: the TID 1500 report; overlay: the heatmap Secondary Capture; kos: the triage Key "
        "Object Selection"
    )
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    url: str | None = Field(None, description="download (application/dicom) where the file was kept")


class StudyOut(StudyBase):
    """One stored study (image) with all the findings of the model that read it, most probable first."""

    created: bool | None = Field(None, description="on upload: false when the same image was already stored")
    content_sha256: str
    study_instance_uid: str | None = None
    accession_number: str | None = None
    width: int | None = None
    height: int | None = None
    pixel_spacing_mm: list[float] | None = Field(
        None, validation_alias="pixel_spacing", description="[x, y] mm per pixel"
    )
    dicom_objects: list[DicomObjectOut] = Field(
        default_factory=list,
        description="the results as DICOM, where they were written (screen --dicom-out, "
        "dicom listen, dicom pull)",
    )
    disclaimer: str = DISCLAIMER

    @computed_field(description="findings above threshold, most urgent first")
    @property
    def positive_findings(self) -> list[str]:
        """The findings above threshold in triage order."""
        return sorted((item.finding for item in self.findings if item.above_threshold), key=urgency_rank)


class StudySummary(StudyBase):
    """One search result: the study and its findings that matched the filters."""

    score: float | None = Field(None, description="largest probability among the matched findings")


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
