"""``GET /api/model``: the model that reads uploads (thresholds, SYNTHETIC flag, ...); ``GET /api/models``: every
model with stored results."""

from __future__ import annotations

from fastapi import APIRouter

from cxreader import DISCLAIMER
from cxreader.inference.backends import model_summary
from cxreader.labels import HARMONISED_LABELS
from cxreader.service.deps import ApiKeyDep, SessionDep, StateDep
from cxreader.service.schemas import ErrorOut, ModelOut, StoredModelOut
from cxreader.storage.read import stored_models

router = APIRouter(
    prefix="/api", tags=["model"], dependencies=[ApiKeyDep], responses={401: {"model": ErrorOut}}
)


@router.get("/model", summary="The model: findings, operating thresholds, synthetic flag")
def get_model(state: StateDep) -> ModelOut:
    """What the page shows about the model, and whether it was trained on SYNTHETIC data."""
    contract = state.backend.contract
    detector = state.backend.gate.detector
    gate = {"rules": True, "out_of_distribution": detector is not None}
    if detector is not None:
        gate |= {"threshold": detector.threshold, "false_alarm_rate": detector.false_alarm_rate}
    return ModelOut(
        **model_summary(state.backend),
        label_space=list(HARMONISED_LABELS),
        operating_point=contract.operating_point,
        calibrated=contract.calibration is not None,
        gate=gate,
        disclaimer=DISCLAIMER,
    )


@router.get("/models", summary="Every model with stored results, newest first")
def list_models(session: SessionDep) -> list[StoredModelOut]:
    """The checkpoints whose results are stored (SHA-256, name, SYNTHETIC flag, images), for ``?model=``."""
    return [StoredModelOut.model_validate(record) for record in stored_models(session=session)]
