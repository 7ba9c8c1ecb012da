"""Fixtures of the captioner tests: a tiny synthetic dataset, a tiny encoder checkpoint, its PAIRS file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxreader.captioning.pairs import synthetic_pairs, write_pairs
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint
from cxreader.synthetic.dataset import generate_synthetic_dataset

#: Encoder input size of the tests: densenet_small turns 32 px into a 2 x 2 feature map.
INPUT_SIZE = 32


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 SYNTHETIC 64-px images in the NIH layout with the generator's findings sidecar."""
    out = tmp_path_factory.mktemp("captioning") / "synthetic"
    generate_synthetic_dataset(out, images=24, size=64, seed=3, positive_rate=0.25)
    return out


@pytest.fixture(scope="session")
def encoder_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised densenet_small saved as a cxreader classifier checkpoint (32 px input)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "best.pt"
    contract = CheckpointContract(model_name="densenet_small", input_size=INPUT_SIZE, synthetic=True)
    save_checkpoint(path, model=create_model("densenet_small"), contract=contract)
    return path


@pytest.fixture(scope="session")
def pairs_file(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PAIRS file of :func:`synthetic_dir`."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    write_pairs(synthetic_pairs(synthetic_dir), path)
    return path
