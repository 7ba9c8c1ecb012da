"""``GET /api/model``: the model that reads uploads (thresholds, SYNTHETIC flag, ...)."""

from __future__ import annotations

from fastapi import APIRouter

from cxreader import DISCLAIMER
from cxreader.inference.backends import model_summary
from cxreader.service.deps import ApiKeyDep, StateDep
from cxreader.service.schemas import ErrorOut, ModelOut

router = APIRouter(
    prefix="/api", tags=["model"], dependencies=[ApiKeyDep], responses={401: {"model": ErrorOut}}
)


@router.get("/model", summary="The model: findings, operating thresholds, synthetic flag")
def get_model(state: StateDep) -> ModelOut:
    """What the page shows about the model, and whether it was trained on SYNTHETIC data."""
    return ModelOut(**model_summary(state.backend), disclaimer=DISCLAIMER)
