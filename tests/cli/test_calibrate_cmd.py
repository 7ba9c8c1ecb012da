"""`cxreader calibrate` through the real CLI: an uncalibrated checkpoint gets calibration, thresholds and a
detector, with the same weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.training.tiny_run import TINY_TRAIN_ARGS

from cxreader.cli.__main__ import main
from cxreader.inference.backends import load_backend
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def old_checkpoint(tmp_path_factory):
    """A tiny trained model's best.pt as a checkpoint from before calibration existed (no new fields)."""
    from tests.conftest import make_tiny_nih

    root = tmp_path_factory.mktemp("calibrate")
    data = make_tiny_nih(root / "nih")
    assert (
        main(["train", "--data", str(data), "--out", str(root / "run"), *TINY_TRAIN_ARGS, "--epochs", "2"])
        == 0
    )
    loaded = load_checkpoint(root / "run" / "best.pt")
    contract = dataclasses.replace(loaded.contract, calibration=None, operating_point=None, ood=None)
    save_checkpoint(root / "old.pt", model=loaded.model, contract=contract)
    return data, root / "old.pt"


def test_calibrate_writes_a_loadable_checkpoint_whose_gate_has_a_detector(old_checkpoint, tmp_path, capsys):
    data, old = old_checkpoint
    assert load_backend(old, device="cpu").gate.detector is None
    new = tmp_path / "new.pt"
    argv = ["calibrate", "--checkpoint", str(old), "--data", str(data), "--out", str(new), "--workers", "0"]
    assert main([*argv, "--operating-point", "f1", "--train-images", "20"]) == 0
    out = capsys.readouterr().out
    assert "operating point: f1" in out and "ECE raw" in out and f"wrote {new}" in out
    assert all(name in out for name in FINDINGS)
    methods = {entry["method"] for entry in load_checkpoint(new).contract.calibration["findings"]}
    assert methods and all(method in out for method in methods)  # each finding's method is printed

    backend = load_backend(new, device="cpu")
    contract = backend.contract
    assert backend.gate.detector is not None and backend.calibration is not None
    assert contract.ood["fitted_on"]["train"] == 20
    assert (
        contract.operating_point["rule"] == "f1"
        and contract.metrics["trust"]["fitted_by"] == "cxreader calibrate"
    )
    assert contract.thresholds == tuple(
        contract.operating_point["findings"][name]["threshold"] for name in FINDINGS
    )
    before, after = load_checkpoint(old).model.state_dict(), backend.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)

    # Calibrating the calibrated checkpoint again fits on the raw outputs: the same calibration, not a compound.
    again = tmp_path / "again.pt"
    argv = ["calibrate", "--checkpoint", str(new), "--data", str(data), "--out", str(again), "--workers", "0"]
    assert main([*argv, "--operating-point", "f1", "--train-images", "20"]) == 0
    assert load_checkpoint(again).contract.calibration == contract.calibration


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--operating-point", "sensitivity"], "needs a value"),
        (["--false-alarm-rate", "1.5"], "--false-alarm-rate must be in (0, 1)"),
        (["--split-from", "lists", "--list", "val=v.txt"], "needs --list train=FILE --list val=FILE"),
    ],
)
def test_bad_arguments_are_one_line_and_write_nothing(old_checkpoint, tmp_path, capsys, extra, message):
    data, old = old_checkpoint
    new = tmp_path / "new.pt"
    argv = ["calibrate", "--checkpoint", str(old), "--data", str(data), "--out", str(new), *extra]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1 and not new.exists()
