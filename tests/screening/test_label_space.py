"""A model of another label space than the 14 CheXNet findings, end to end: its outputs are read in its
contract's label order by prediction, screening (the records, search and triage), heatmaps, descriptions and
the ONNX export; and what does not fit its labels is refused, never read in the wrong order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select
from tests.screening.factories import run_cli, synthetic_images, write_checkpoint
from tests.storage.conftest import BACKENDS, backend_url

from cxreader.errors import CheckpointError, ConfigError
from cxreader.inference.backends import OnnxBackend, load_backend, model_summary
from cxreader.inference.calibration import TEMPERATURE, Calibration, FindingCalibration
from cxreader.inference.predict import Predictor, format_predictions
from cxreader.labels import FINDINGS, HARMONISED_LABELS
from cxreader.localization.cam import heatmaps, resolve_findings
from cxreader.models.checkpoint import load_checkpoint, save_checkpoint
from cxreader.screening.engine import screen
from cxreader.screening.triage import (
    NOT_TRIAGED_TIER,
    URGENCY_ORDER,
    build_triage,
    make_entry,
    priority,
    urgency_rank,
    urgency_tier,
)
from cxreader.storage.db import open_database
from cxreader.storage.read import get_image
from cxreader.storage.records import FindingResult
from cxreader.storage.search import search_records
from cxreader.storage.tables import Checkpoint, Finding, Image

#: A model of six findings in an order of its own (neither FINDINGS' nor HARMONISED_LABELS').
SUBSET = ("Support_Devices", "Effusion", "Fracture", "Lung_Opacity", "Pneumothorax", "Cardiomegaly")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("label-space")
    return {
        "all": write_checkpoint(root / "h19.pt", labels=HARMONISED_LABELS, always_positive="Lung_Opacity"),
        "subset": write_checkpoint(root / "subset.pt", labels=SUBSET, always_positive="Fracture", seed=1),
        "devices": write_checkpoint(
            root / "devices.pt", labels=SUBSET, always_positive="Support_Devices", seed=2
        ),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return synthetic_images(tmp_path_factory.mktemp("images"), 3, seed=3)


@pytest.mark.parametrize(
    ("model", "labels", "positive"),
    [("all", HARMONISED_LABELS, "Lung_Opacity"), ("subset", SUBSET, "Fracture")],
)
def test_predict_reads_the_outputs_in_the_contracts_order(models, images, model, labels, positive):
    predictor = Predictor(models[model], device="cpu")
    assert predictor.labels == labels and predictor.backend.labels == labels
    results = predictor.predict_files(images)
    for result in results:
        assert result.read and tuple(result.probabilities) == labels
        assert result.positive == [positive]
    # The columns are the model's outputs in label order: the same numbers as the model's own forward pass.
    batch = torch.stack([predictor.backend.transform(np.zeros((64, 64), np.float32))])
    with torch.no_grad():
        expected = torch.sigmoid(predictor.backend.model(batch)).numpy()[0]
    np.testing.assert_allclose(
        predictor.predict_arrays([np.zeros((64, 64), np.float32)])[0], expected, atol=1e-6
    )
    assert predictor.predict_arrays([]).shape == (0, len(labels))
    text = format_predictions(results, predictor.thresholds, labels=predictor.labels)
    marked = [line for line in text.splitlines() if line.lstrip().startswith("*")]
    assert len(marked) == len(results) and all(positive.replace("_", " ") in line for line in marked)
    assert model_summary(predictor.backend)["labels"] == list(labels)
    assert list(model_summary(predictor.backend)["thresholds"]) == list(labels)


def test_the_predict_command_prints_the_models_findings(models, images, capsys):
    assert run_cli(["predict", str(images[0]), "--checkpoint", str(models["subset"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "* Fracture" in out and "Support Devices" in out and "Atelectasis" not in out


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_screening_stores_each_finding_of_the_contract_in_its_order_and_search_and_triage_read_them(
    models, images, tmp_path, backend_name
):
    with backend_url(backend_name, tmp_path) as url:
        database = open_database(url)
        try:
            reports = {}
            for model in ("all", "subset"):
                backend = load_backend(models[model], device="cpu")
                reports[model] = screen(images, backend=backend, database=database, progress=False, workers=0)
                assert reports[model].screened == len(images) and reports[model].failed == 0
            with database.session() as session:
                for model, labels in (("all", HARMONISED_LABELS), ("subset", SUBSET)):
                    checkpoint_id = reports[model].checkpoint_id
                    stored = session.scalar(select(Checkpoint.labels).where(Checkpoint.id == checkpoint_id))
                    assert tuple(stored) == labels
                    image_ids = session.scalars(select(Image.id).where(Image.checkpoint_id == checkpoint_id))
                    for image_id in image_ids:
                        rows = session.scalars(
                            select(Finding.finding).where(Finding.image_id == image_id).order_by(Finding.id)
                        ).all()
                        assert tuple(rows) == labels  # one row per label, written in the label order
                        record = get_image(session=session, image_id=image_id)
                        assert sorted(item.finding for item in record.findings) == sorted(labels)
                        probabilities = [item.probability for item in record.findings]
                        assert probabilities == sorted(probabilities, reverse=True)

                opacity = search_records(
                    session=session, finding="lung opacity", above_threshold=True, latest_only=False
                )
                assert opacity.total == len(images)
                assert {row.checkpoint_id for row in opacity.rows} == {reports["all"].checkpoint_id}
                assert all(
                    [item.finding for item in row.findings] == ["Lung_Opacity"] for row in opacity.rows
                )
                assert all(item.description for row in opacity.rows for item in row.findings)
                fracture = search_records(
                    session=session, finding="Fracture", above_threshold=True, latest_only=False
                )
                assert {row.checkpoint_id for row in fracture.rows} == {reports["subset"].checkpoint_id}
                # Results of both models (each image's newest is the subset model's), each with its findings.
                everything = search_records(session=session, latest_only=False)
                assert sorted(len(row.findings) for row in everything.rows) == [6] * 3 + [19] * 3
        finally:
            database.close()
    for model, leading in (("all", "Lung_Opacity"), ("subset", "Fracture")):
        triage = reports[model].triage
        assert len(triage) == len(images)
        assert {entry.leading.finding for entry in triage} == {leading}


def test_support_devices_never_put_an_image_on_the_triage_list(models, images, tmp_path):
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        backend = load_backend(models["devices"], device="cpu")
        report = screen(images, backend=backend, database=database, progress=False, workers=0)
        assert report.screened == len(images) and report.triage == []
        with database.session() as session:
            devices = search_records(session=session, finding="Support_Devices", above_threshold=True)
        assert devices.total == len(images)  # stored like any finding, only not triaged
    finally:
        database.close()


def test_the_extra_findings_have_their_urgency():
    assert urgency_tier("Fracture") == urgency_tier("Lung_Opacity") == "urgent"
    assert urgency_tier("Lung_Lesion") == urgency_tier("Enlarged_Cardiomediastinum") == "non-urgent"
    assert urgency_tier("Support_Devices") == NOT_TRIAGED_TIER and "Support_Devices" not in URGENCY_ORDER
    assert urgency_rank("Infiltration") < urgency_rank("Lung_Opacity") < urgency_rank("Edema")
    assert urgency_rank("Mass") < urgency_rank("Lung_Lesion") < urgency_rank("Nodule")
    assert urgency_rank("Support_Devices") == len(URGENCY_ORDER)
    assert priority(FindingResult("Support_Devices", 0.99, 0.5)) == 0.0
    devices_only = make_entry(source_path="a.png", positives=[FindingResult("Support_Devices", 0.99, 0.5)])
    assert devices_only is None
    both = make_entry(
        source_path="b.png",
        positives=[FindingResult("Support_Devices", 0.99, 0.5), FindingResult("Nodule", 0.6, 0.5)],
    )
    fracture = make_entry(source_path="c.png", positives=[FindingResult("Fracture", 0.6, 0.5)])
    assert [item.finding for item in both.positives] == ["Nodule"]
    assert [entry.source_path for entry in build_triage([both, devices_only, fracture])] == ["c.png", "b.png"]


def test_heatmaps_read_the_head_rows_of_the_models_labels(models):
    backend = load_backend(models["subset"], device="cpu")
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    every = heatmaps(backend.model, image, None, "cam", labels=backend.labels)
    assert every.shape == (len(SUBSET), 64, 64)
    fracture = heatmaps(backend.model, image, "Fracture", "cam", labels=backend.labels)
    np.testing.assert_allclose(fracture[0], every[SUBSET.index("Fracture")], atol=1e-5)
    with pytest.raises(ConfigError, match="6 outputs but 14 labels"):
        heatmaps(
            backend.model, image, None, "cam"
        )  # the 14 CheXNet findings by default: refused, not misread
    with pytest.raises(ConfigError, match="not a finding with a heatmap for this model"):
        resolve_findings("Atelectasis", SUBSET)
    with pytest.raises(ConfigError, match="not a finding with a heatmap for this model"):
        resolve_findings("Lung_Opacity")


def test_a_contract_that_does_not_fit_its_labels_is_refused(models, tmp_path):
    loaded = load_checkpoint(models["subset"])
    loaded.contract.thresholds = (0.5,) * len(FINDINGS)
    save_checkpoint(tmp_path / "thresholds.pt", model=loaded.model, contract=loaded.contract)
    with pytest.raises(CheckpointError, match="14 thresholds for 6 labels"):
        load_backend(tmp_path / "thresholds.pt", device="cpu")

    loaded = load_checkpoint(models["subset"])
    per_finding = tuple(FindingCalibration(TEMPERATURE) for _ in SUBSET)
    loaded.contract.calibration = Calibration(tuple(reversed(SUBSET)), per_finding).to_json()
    save_checkpoint(tmp_path / "calibration.pt", model=loaded.model, contract=loaded.contract)
    with pytest.raises(CheckpointError, match="its calibration names"):
        load_backend(tmp_path / "calibration.pt", device="cpu")
    loaded.contract.calibration = Calibration(SUBSET, per_finding).to_json()
    save_checkpoint(tmp_path / "calibrated.pt", model=loaded.model, contract=loaded.contract)
    assert load_backend(tmp_path / "calibrated.pt", device="cpu").calibration is not None


@pytest.mark.parametrize(("model", "labels"), [("all", HARMONISED_LABELS), ("subset", SUBSET)])
def test_an_onnx_export_carries_the_labels_and_reads_its_outputs_in_their_order(
    models, tmp_path, model, labels
):
    from cxreader.export.onnx import export_onnx

    summary = export_onnx(models[model], tmp_path / "model.onnx", check_images=2)
    assert summary.max_abs_prob_diff < 1e-4
    exported = OnnxBackend(tmp_path / "model.onnx")
    assert exported.labels == labels and model_summary(exported)["labels"] == list(labels)
    original = load_backend(models[model], device="cpu")
    batch = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(exported.predict(batch), original.predict(batch), atol=1e-4)
    predictor = Predictor(tmp_path / "model.onnx")
    assert predictor.labels == labels


def test_the_learned_captioner_refuses_an_encoder_of_another_label_space(models, images, tmp_path):
    from cxreader.captioning.pairs import CaptionPair
    from cxreader.captioning.train import CaptionTrainConfig, train_captioner

    pairs = [CaptionPair(images[0], "Effusion", ("effusion", "pleura"), "train", "synthetic")]
    with pytest.raises(CheckpointError, match="14 CheXNet findings"):
        train_captioner(pairs, models["all"], tmp_path / "caption", config=CaptionTrainConfig(device="cpu"))
