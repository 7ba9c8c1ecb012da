"""The training loop end to end on a tiny dataset: learning, checkpoints, exact resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.training.tiny_run import TINY_TRAIN_ARGS

from cxreader.cli.__main__ import main
from cxreader.models.checkpoint import load_checkpoint

TRAIN_ARGS = TINY_TRAIN_ARGS
COMPARED = ("epoch", "train_loss", "val_loss", "val_mean_auroc", "val_auroc", "lr", "val_images_scored")


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _comparable(records: list[dict]) -> list[dict]:
    return [{key: record[key] for key in COMPARED} for record in records]


@pytest.mark.parametrize("augment", ["sample", "batch"])
def test_train_writes_checkpoints_metrics_and_learns(tiny_nih, tmp_path, capsys, augment):
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_nih), "--out", str(run), "--epochs", "3", "--augment", augment]
    assert main([*argv, *TRAIN_ARGS]) == 0
    assert {"best.pt", "last.pt", "metrics.jsonl", "config.yaml", "tensorboard"} <= {
        p.name for p in run.iterdir()
    }
    history = _history(run)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(r["val_auroc"]["Effusion"] for r in history) > 0.9
    assert history[0]["val_auroc"]["Hernia"] is None  # no positives: undefined, not 0.5
    loaded = load_checkpoint(run / "best.pt")
    assert loaded.contract.input_size == 32 and loaded.contract.config["split"] == "random"
    # last.pt (with the generators' states) loads as safely as best.pt, for predict and evaluate.
    assert load_checkpoint(run / "last.pt").contract.epoch == 3
    assert loaded.contract.config["augment"] == augment
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    # a second run into the same folder is refused instead of silently overwriting it
    assert main(["train", "--data", str(tiny_nih), "--out", str(run), *TRAIN_ARGS]) == 2
    assert "--resume" in capsys.readouterr().err


def _train_command(data: Path, run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cxreader",
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--epochs",
        "3",
        "--early-stopping-patience",
        "0",
        *TRAIN_ARGS,
        *extra,
    ]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tiny_nih, tmp_path):
    reference = tmp_path / "uninterrupted"
    subprocess.run(_train_command(tiny_nih, reference), check=True, env=_env(), capture_output=True)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        _train_command(tiny_nih, interrupted),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (interrupted / "last.pt").exists():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(interrupted / "last.pt", with_training_state=True).training_state["epoch"]
    assert killed_at < 3, "the run finished before it could be killed; make the test dataset bigger"

    subprocess.run(
        _train_command(tiny_nih, interrupted, "--resume"), check=True, env=_env(), capture_output=True
    )
    assert _comparable(_history(interrupted)) == _comparable(_history(reference))


def test_missing_image_named_in_the_csv_is_one_clear_line(tiny_nih, tmp_path, capsys):
    (tiny_nih / "images" / "00000003_001.png").unlink()
    code = main(["train", "--data", str(tiny_nih), "--out", str(tmp_path / "run"), *TRAIN_ARGS])
    err = capsys.readouterr().err
    assert code == 2 and "00000003_001.png" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_wrong_csv_header_is_one_clear_line(tiny_nih, tmp_path, capsys):
    csv = tiny_nih / "Data_Entry_2017_v2020.csv"
    csv.write_text(csv.read_text().replace("Finding Labels", "Labels", 1))
    code = main(["train", "--data", str(tiny_nih), "--out", str(tmp_path / "run"), *TRAIN_ARGS])
    err = capsys.readouterr().err
    assert code == 2 and "Data_Entry_2017_v2020.csv" in err and "header" in err


def test_corrupt_image_is_skipped_and_named(tiny_nih, tmp_path, caplog):
    (tiny_nih / "images" / "00000002_000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_nih), "--out", str(run), "--epochs", "1", *TRAIN_ARGS]) == 0
    skipped = _history(run)[0]["skipped_images"]
    assert len(skipped) == 1 and "00000002_000.png" in skipped[0]
