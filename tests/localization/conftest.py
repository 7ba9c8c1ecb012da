"""Fixtures of the localization tests: a transparent toy model and a tiny saved checkpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from cxreader.labels import FINDINGS
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint
from cxreader.models.chexnet import CheXNet


def brightness_model(downsample: int = 8) -> CheXNet:
    """A CheXNet whose features are the block-averaged input: every finding's CAM is the image brightness.

    Its maps are known in advance (bright = salient), so orientation and scaling can be checked exactly.
    """
    backbone = SimpleNamespace(features=nn.AvgPool2d(downsample), classifier=SimpleNamespace(in_features=3))
    model = CheXNet(backbone)  # type: ignore[arg-type]
    with torch.no_grad():
        model.classifier.weight.fill_(1.0)
        model.classifier.bias.zero_()
    return model.eval()


@pytest.fixture
def toy_model() -> CheXNet:
    return brightness_model()


#: The tiny checkpoint calls exactly these findings positive (threshold 0), and nothing else (threshold 1).
TINY_POSITIVES = ("Effusion", "Nodule")


def save_tiny_checkpoint(path: Path, *, input_size: int = 64, synthetic: bool = True, seed: int = 0) -> Path:
    """An untrained densenet_small checkpoint with a full contract; positive for :data:`TINY_POSITIVES` only."""
    torch.manual_seed(seed)
    model = create_model("densenet_small", init="none")
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=input_size,
        thresholds=tuple(0.0 if name in TINY_POSITIVES else 1.0 for name in FINDINGS),
        synthetic=synthetic,
        config={"split": "official", "seed": 0},
    )
    save_checkpoint(path, model=model, contract=contract)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return save_tiny_checkpoint(tmp_path / "tiny.pt")
