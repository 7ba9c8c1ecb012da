"""The end-of-training fit: calibration, operating point and out-of-distribution detector in best.pt."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.special import expit
from tests.training.tiny_run import TINY_TRAIN_ARGS

from cxreader.cli.__main__ import main
from cxreader.data.chestxray14 import load_splits
from cxreader.evaluation.calibration_metrics import expected_calibration_error
from cxreader.evaluation.checkpoint_eval import evaluate_checkpoint, predict_split
from cxreader.evaluation.thresholds import choose_thresholds, operating_point_metrics
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import CheckpointContract, load_checkpoint
from cxreader.training.calibrate import fit_trust


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(-1.0, 2.0, size=(n, len(FINDINGS)))
    labels = (rng.random(logits.shape) < expit(logits)).astype(float)
    return labels, expit(3.0 * logits)


def test_fit_trust_calibrates_then_chooses_thresholds_on_the_calibrated_scale():
    labels, probs = _overconfident(2000, seed=0)
    rng = np.random.default_rng(1)
    fit = fit_trust(
        probs,
        labels,
        val_features=rng.standard_normal((2000, 6)),
        train_features=rng.standard_normal((500, 6)),
        rule="specificity=0.9",
        false_alarm_rate=0.05,
    )
    calibrated = fit.calibration.apply(probs)
    np.testing.assert_array_equal(fit.thresholds, choose_thresholds(labels, calibrated, "specificity=0.9"))
    np.testing.assert_allclose(fit.ece_calibrated, expected_calibration_error(labels, calibrated))
    assert fit.ece_calibrated.mean() < 0.5 * fit.ece_raw.mean()
    reached = operating_point_metrics(labels, calibrated, np.asarray(fit.thresholds))
    for name in FINDINGS:
        point = fit.operating_point["findings"][name]
        assert (
            point["specificity"] == reached[name]["specificity"] >= 0.9 and point["rule"] == "specificity=0.9"
        )
    assert fit.ood is not None and fit.ood.fitted_on == {"train": 500, "validation": 2000}
    assert fit.counts == {"validation": 2000, "train": 500}
    assert set(fit.seconds) == {"calibration", "operating_point", "ood"}

    contract = fit.apply_to(
        CheckpointContract(model_name="densenet_small", metrics={"epoch": 3}), fitted_by="test"
    )
    assert contract.thresholds == fit.thresholds and contract.ood["threshold"] == fit.ood.threshold
    assert contract.metrics["epoch"] == 3 and contract.metrics["trust"]["fitted_by"] == "test"
    assert CheckpointContract.from_dict(contract.to_dict()).calibration == fit.calibration.to_json()
    assert "Atelectasis" in fit.table() and "specificity=0.9" in fit.table()


def test_a_detector_that_cannot_be_fitted_is_left_out_with_a_warning(caplog):
    labels, probs = _overconfident(50, seed=2)
    with caplog.at_level(logging.WARNING):
        fit = fit_trust(probs, labels, val_features=np.zeros((50, 4)), train_features=np.zeros((1, 4)))
    assert fit.ood is None and "not fitted" in caplog.text
    assert fit.apply_to(CheckpointContract(model_name="m"), fitted_by="test").ood is None


def test_training_ends_with_calibration_operating_point_and_detector_in_best(tiny_nih, tmp_path, caplog):
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_nih), "--out", str(run), *TINY_TRAIN_ARGS, "--epochs", "2"]
    with caplog.at_level(logging.INFO):
        assert main([*argv, "--operating-point", "sensitivity=0.9"]) == 0
    assert "end of training" in caplog.text
    best = load_checkpoint(run / "best.pt")
    contract = best.contract
    assert contract.calibration is not None and contract.config["operating_point"] == "sensitivity=0.9"
    point = contract.operating_point
    assert point["rule"] == "sensitivity=0.9" and point["scale"] == "calibrated"
    assert contract.thresholds == tuple(point["findings"][name]["threshold"] for name in FINDINGS)
    splits = load_splits(tiny_nih, split="random", seed=0)
    assert contract.ood["fitted_on"] == {"train": len(splits["train"]), "validation": len(splits["val"])}
    assert contract.metrics["trust"]["fitted_by"] == "training"
    last = load_checkpoint(run / "last.pt", with_training_state=True)
    assert last.contract.calibration is None  # the resumable state keeps the raw scale

    # The thresholds are those the rule picks on the calibrated validation probabilities.
    val = predict_split(best, data=str(tiny_nih), split="val", workers=0)
    np.testing.assert_allclose(
        contract.thresholds, choose_thresholds(val.labels, val.probs, "sensitivity=0.9"), atol=1e-5
    )
    effusion = point["findings"]["Effusion"]
    assert effusion["sensitivity"] >= 0.9 and effusion["specificity"] is not None

    # Evaluation says how many test images the gate's detector would refuse.
    report, evaluated = evaluate_checkpoint(best, data=str(tiny_nih), split="test", workers=0, n_bootstrap=0)
    assert report.metadata["gate_out_of_distribution"] is True
    assert 0 <= report.metadata["gate_refused"] <= len(evaluated.images)
    assert "Input gate:" in report.to_markdown()

    # Resuming the finished run neither trains nor refits.
    digest = best.sha256
    assert main([*argv, "--resume"]) == 0
    assert load_checkpoint(run / "best.pt").sha256 == digest


def test_a_malformed_operating_point_stops_before_training(tiny_nih, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_nih), "--out", str(run), *TINY_TRAIN_ARGS]
    assert main([*argv, "--operating-point", "sensitivity=1.5"]) == 2
    error = capsys.readouterr().err
    assert "operating point 'sensitivity=1.5'" in error and "youden | f1" in error
    assert len(error.strip().splitlines()) == 1 and not run.exists()


@pytest.mark.parametrize("value", ["0", "1", "-0.1"])
def test_false_alarm_rates_outside_zero_one_are_refused(tiny_nih, tmp_path, capsys, value):
    argv = ["train", "--data", str(tiny_nih), "--out", str(tmp_path / "run"), *TINY_TRAIN_ARGS]
    assert main([*argv, "--set", f"ood_false_alarm_rate={value}"]) == 2
    assert "ood_false_alarm_rate" in capsys.readouterr().err


def test_fit_trust_on_another_label_space_leaves_one_sided_findings_at_the_default(caplog):
    """A merged run's 19 findings: one never positive in validation (Fracture), one partly unknown."""
    from cxreader.labels import HARMONISED_LABELS

    rng = np.random.default_rng(4)
    logits = rng.normal(-1.0, 2.0, size=(400, len(HARMONISED_LABELS)))
    labels = (rng.random(logits.shape) < expit(logits)).astype(float)
    fracture, opacity = HARMONISED_LABELS.index("Fracture"), HARMONISED_LABELS.index("Lung_Opacity")
    labels[:, fracture] = 0.0
    labels[:150, opacity] = np.nan
    with caplog.at_level(logging.WARNING):
        fit = fit_trust(
            expit(2.0 * logits),
            labels,
            val_features=rng.standard_normal((400, 4)),
            train_features=rng.standard_normal((100, 4)),
            findings=HARMONISED_LABELS,
        )
    assert "Fracture (no positives among 400 known labels)" in caplog.text
    assert fit.findings == HARMONISED_LABELS and len(fit.thresholds) == 19
    assert fit.thresholds[fracture] == 0.5 and fit.calibration.methods["Fracture"] == "identity"
    assert fit.calibration.per_finding[opacity].n == 250
    assert "Enlarged_Cardiomediastinum" in fit.table()
