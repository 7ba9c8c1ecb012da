"""`cxreader predict` and `cxreader evaluate` through the real CLI on a tiny trained model."""

from __future__ import annotations

import json

import pytest
from tests.training.tiny_run import TINY_TRAIN_ARGS

from cxreader.cli.__main__ import main
from cxreader.labels import FINDINGS

TRAIN = [*TINY_TRAIN_ARGS, "--epochs", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import make_tiny_nih

    root = tmp_path_factory.mktemp("cli")
    data = make_tiny_nih(root / "nih")
    assert main(["train", "--data", str(data), "--out", str(root / "run"), *TRAIN]) == 0
    return data, root / "run" / "best.pt"


def test_predict_reports_bad_files_and_still_predicts_the_rest(trained, tmp_path, capsys):
    data, checkpoint = trained
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    good = data / "images" / "00000001_000.png"
    code = main(["predict", "--checkpoint", str(checkpoint), str(good), str(corrupt), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # some file failed
    first, second = out["results"]
    assert set(first["probabilities"]) >= {"Effusion", "Hernia"} and len(first["probabilities"]) == 14
    assert all(0.0 <= p <= 1.0 for p in first["probabilities"].values())
    assert "corrupt.png" in second["error"] and "probabilities" not in second
    assert out["checkpoint_synthetic"] is True  # the demo recipe marks its models synthetic


def test_predict_table_marks_threshold_crossings(trained, capsys):
    data, checkpoint = trained
    assert main(["predict", "--checkpoint", str(checkpoint), str(data / "images" / "00000001_000.png")]) == 0
    out = capsys.readouterr().out
    assert "threshold" in out and "not a certified medical device" in out


def test_evaluate_checkpoint_writes_report_json_and_roc(trained, tmp_path, capsys):
    _, checkpoint = trained
    out_json = tmp_path / "report.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--split",
                "test",
                "--bootstrap",
                "50",
                "--workers",
                "0",
                "--json",
                str(out_json),
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    report = json.loads(out_json.read_text())
    assert {"auroc", "mean_auroc", "ci95", "thresholds"} <= set(report)
    assert report["metadata"]["split"] == "test" and report["metadata"]["synthetic"] is True
    assert (tmp_path / "eval" / "roc.png").stat().st_size > 1000
    assert "| Finding |" in capsys.readouterr().out


def test_evaluate_tencrop_runs(trained, tmp_path):
    _, checkpoint = trained
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--tencrop",
                "--bootstrap",
                "0",
                "--workers",
                "0",
                "--out",
                str(tmp_path / "tc"),
            ]
        )
        == 0
    )


def test_missing_checkpoint_is_one_line(capsys, tmp_path):
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), "x.png"]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err


def test_predict_shows_the_operating_point_its_thresholds_come_from(tmp_path, capsys) -> None:
    import torch
    from tests.screening.factories import png_bytes

    from cxreader.models import create_model
    from cxreader.models.checkpoint import CheckpointContract, save_checkpoint

    points = {name: {"threshold": 0.4, "sensitivity": 0.81, "specificity": 0.77} for name in FINDINGS}
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=64,
        thresholds=(0.4,) * len(FINDINGS),
        synthetic=True,
        operating_point={"rule": "youden", "split": "val", "findings": points},
    )
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", model=create_model("densenet_small", init="none"), contract=contract)
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(3))
    assert main(["predict", "--checkpoint", str(tmp_path / "m.pt"), str(image)]) == 0
    out = capsys.readouterr().out
    assert "operating point: youden" in out and "(threshold 0.400; sens 0.81, spec 0.77)" in out
    assert main(["predict", "--checkpoint", str(tmp_path / "m.pt"), "--json", str(image)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["operating_point"]["rule"] == "youden"
