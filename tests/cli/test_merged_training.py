"""Merged training through the real CLI: SYNTHETIC NIH, CheXpert and PadChest layouts train one model over the
union of their findings; `evaluate` reports per dataset and prints the cross-dataset table."""

from __future__ import annotations

import json
import logging

import pytest
from tests.training.tiny_run import TINY_TRAIN_ARGS, data_arguments, write_tiny_layouts

from cxreader.cli.__main__ import main
from cxreader.data.label_maps import dataset_label_space
from cxreader.labels import FINDINGS, HARMONISED_LABELS
from cxreader.models.checkpoint import load_checkpoint

ONE_EPOCH = [*TINY_TRAIN_ARGS, "--epochs", "1"]


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """Three tiny layouts, a merged run on all of them (balanced sampling, soft uncertain labels) and a run on
    the NIH one alone (`--data DIR`, today's run)."""
    root = tmp_path_factory.mktemp("merged")
    folders = write_tiny_layouts(root)
    argv = ["train", *data_arguments(folders), "--out", str(root / "merged"), *ONE_EPOCH]
    assert main([*argv, "--sampling", "balanced", "--uncertainty", "soft=0.3"]) == 0
    assert main(["train", "--data", str(folders["nih"]), "--out", str(root / "nih"), *ONE_EPOCH]) == 0
    return folders, root / "merged" / "best.pt", root / "nih" / "best.pt"


def test_merged_checkpoint_has_the_union_label_space_and_records_its_data(merged):
    folders, checkpoint, _ = merged
    contract = load_checkpoint(checkpoint).contract
    union = dataset_label_space(tuple(folders))
    assert contract.labels == union == HARMONISED_LABELS  # NIH's 14 plus the extras CheXpert/PadChest define
    assert len(contract.thresholds) == len(union) and contract.model_kwargs["num_classes"] == len(union)
    config = contract.config
    assert (
        config["datasets"] == {name: str(folder) for name, folder in folders.items()} and not config["data"]
    )
    assert config["uncertainty"] == "soft=0.3"
    assert config["uncertainty_policy"] == {"name": "soft", "soft_value": 0.3}
    assert config["sampling"] == "balanced" and config["label_space"] == list(union)
    assert [entry["finding"] for entry in contract.calibration["findings"]] == list(union)
    history = [json.loads(line) for line in (checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
    assert set(history[0]["val_auroc"]) == set(union)
    assert set(history[0]["val_mean_auroc_by_dataset"]) == set(folders)


def test_data_dir_alone_is_todays_nih_run(merged):
    _, _, checkpoint = merged
    contract = load_checkpoint(checkpoint).contract
    assert contract.labels == FINDINGS and len(contract.thresholds) == len(FINDINGS)
    assert "num_classes" not in contract.model_kwargs
    assert contract.config["datasets"] == {} and "label_space" not in contract.config


def test_the_training_log_states_sampling_and_the_findings_validation_cannot_score(merged, tmp_path, caplog):
    folders, _, _ = merged
    argv = ["train", *data_arguments(folders), "--out", str(tmp_path / "run"), *ONE_EPOCH]
    with caplog.at_level(logging.INFO, logger="cxreader"):
        assert main([*argv, "--max-train-batches", "1", "--sampling", "balanced"]) == 0
    text = caplog.text
    assert "balanced sampling" in text and "about 33% from each of 3 datasets" in text
    # Nothing draws fractures or devices: no positives in validation, a warning and the default threshold.
    assert "Fracture (no positives" in text and "threshold is the default 0.50" in text
    contract = load_checkpoint(tmp_path / "run" / "best.pt").contract
    assert contract.thresholds[HARMONISED_LABELS.index("Fracture")] == 0.5


def test_evaluate_reports_each_dataset_and_all_of_them(merged, tmp_path, capsys):
    folders, checkpoint, _ = merged
    out_json = tmp_path / "report.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), *data_arguments(folders), "--bootstrap", "20"]
    assert main([*argv, "--workers", "0", "--json", str(out_json), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "| Scored on | Images | Findings | Mean AUROC | 95% CI |" in out and "SYNTHETIC" in out
    report = json.loads(out_json.read_text())
    assert list(report["datasets"]) == list(folders) and report["trained_on"] == list(folders)
    chexpert = report["datasets"]["chexpert"]
    # CheXpert is scored on the findings it defines only: no Mass, no Hernia.
    assert set(chexpert["auroc"]) == set(dataset_label_space(["chexpert"]))
    assert chexpert["n_images"] > 0 and chexpert["ci95"]["Cardiomegaly"][0] is not None
    assert set(report["datasets"]["nih"]["auroc"]) == set(FINDINGS)
    assert report["overall"]["n_images"] == sum(part["n_images"] for part in report["datasets"].values())
    assert (tmp_path / "eval" / "padchest" / "roc.png").stat().st_size > 1000


def test_evaluate_without_data_scores_the_datasets_the_checkpoint_trained_on(merged, capsys):
    _, checkpoint, _ = merged
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--bootstrap", "0", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "| padchest |" in out and "| **all** |" in out


def test_cross_table_scores_every_checkpoint_on_every_dataset(merged, tmp_path, capsys):
    folders, merged_checkpoint, nih_checkpoint = merged
    out_json = tmp_path / "cross.json"
    argv = ["evaluate", "--checkpoint", str(merged_checkpoint), "--checkpoint", str(nih_checkpoint)]
    argv += [*data_arguments(folders), "--split", "test", "--cross-table", "--bootstrap", "20"]
    assert main([*argv, "--workers", "0", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "| Trained on \\ scored on | nih | chexpert | padchest |" in out
    assert "| nih+chexpert+padchest |" in out and "| nih |" in out and "SYNTHETIC" in out
    table = json.loads(out_json.read_text())
    # Each column averages the findings the dataset defines that both models predict (the NIH model's 14).
    assert table["shared_findings"]["chexpert"] == [
        name for name in FINDINGS if name in dataset_label_space(["chexpert"])
    ]
    rows = {row["row"]: row for row in table["rows"]}
    assert rows["nih"]["trained_on"] == ["nih"]
    for row in rows.values():
        for cell in row["scored_on"].values():
            assert 0.0 <= cell["mean_auroc"] <= 1.0 and cell["n_images"] > 0


def test_merged_checkpoint_refuses_one_root_and_mixed_data_values(merged, capsys):
    folders, checkpoint, _ = merged
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(folders["nih"])]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    argv = ["train", "--data", str(folders["nih"]), "--data", f"chexpert={folders['chexpert']}"]
    assert main([*argv, "--out", "unused", *ONE_EPOCH]) == 2
    assert "nih=" in capsys.readouterr().err


def test_a_malformed_uncertainty_policy_is_one_line(merged, tmp_path, capsys):
    folders, _, _ = merged
    argv = ["train", *data_arguments(folders), "--out", str(tmp_path / "run"), *ONE_EPOCH]
    assert main([*argv, "--uncertainty", "maybe"]) == 2
    err = capsys.readouterr().err
    assert "maybe" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_options_become_config_overrides(tmp_path):
    from cxreader.cli.__main__ import build_parser
    from cxreader.cli.train_cmd import overrides_from_args

    args = build_parser().parse_args(
        ["train", "--out", "x", "--data", f"nih={tmp_path}", "--data", f"padchest={tmp_path}", "--laterals"]
        + ["--sampling", "balanced", "--uncertainty", "zeros"]
    )
    overrides = overrides_from_args(args)
    assert (
        overrides["datasets"] == {"nih": str(tmp_path), "padchest": str(tmp_path)} and "data" not in overrides
    )
    assert overrides["laterals"] is True and overrides["sampling"] == "balanced"
    assert overrides["uncertainty"] == "zeros"
    plain = overrides_from_args(build_parser().parse_args(["train", "--out", "x", "--data", str(tmp_path)]))
    assert plain["data"] == str(tmp_path) and not {"datasets", "laterals", "sampling"} & set(plain)


def test_a_merged_checkpoint_screens_searches_and_serves_its_larger_label_space(merged, tmp_path, capsys):
    """The merged model's records hold its 19 findings; search finds an extra one; the API answers with them."""
    from fastapi.testclient import TestClient

    from cxreader.service.app import create_app
    from cxreader.service.settings import Settings

    folders, checkpoint, _ = merged
    database = tmp_path / "records.sqlite3"
    images = sorted((folders["chexpert"]).rglob("*.jpg"))[:6]
    assert main(["screen", *map(str, images), "--checkpoint", str(checkpoint), "--db", str(database)]) == 0
    capsys.readouterr()
    assert main(["search", "--db", str(database), "--finding", "Lung_Opacity", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and all(row["findings"][0]["finding"] == "Lung_Opacity" for row in rows)

    settings = Settings(
        checkpoint=checkpoint,
        api_keys=frozenset({"merged-test-key-0123456789"}),
        database_url=str(database),
        data_dir=tmp_path / "data",
        device="cpu",
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = "Bearer merged-test-key-0123456789"
        model = client.get("/api/model").json()
        assert model["labels"] == list(HARMONISED_LABELS)
        study = client.get(f"/api/studies/{rows[0]['image_id']}").json()
        assert sorted(item["finding"] for item in study["findings"]) == sorted(HARMONISED_LABELS)
