"""Training, saving, loading and running the learned captioner, through the API and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cxreader.captioning.checkpoint import load_caption_checkpoint
from cxreader.captioning.pairs import read_pairs
from cxreader.captioning.predict import CaptionPredictor
from cxreader.captioning.train import CaptionTrainConfig, train_captioner
from cxreader.cli.__main__ import main
from cxreader.errors import CheckpointError, ConfigError
from cxreader.labels import FINDINGS
from cxreader.vocabulary import to_token

TINY = CaptionTrainConfig(
    epochs=2, batch_size=16, embed_dim=16, hidden_dim=32, attention_dim=16, device="cpu", seed=1
)


@pytest.fixture(scope="module")
def caption_run(pairs_file: Path, encoder_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("caption-run")
    result = train_captioner(read_pairs(pairs_file), encoder_checkpoint, out, config=TINY)
    return result


def test_training_writes_a_checkpoint_with_its_contract(caption_run, pairs_file: Path):
    assert caption_run.checkpoint.exists()
    assert len(caption_run.history) == TINY.epochs
    assert caption_run.train_pairs > 0 and caption_run.val_pairs > 0
    assert not list(caption_run.checkpoint.parent.glob("*.tmp")), "no half-written file is left behind"
    loaded = load_caption_checkpoint(caption_run.checkpoint)
    assert tuple(loaded.contract.encoder.labels) == FINDINGS
    assert len(loaded.contract.vocab) == caption_run.vocab_size
    # every finding of the training pairs can be asked for
    trained = {pair.finding for pair in read_pairs(pairs_file) if pair.split == "train"}
    assert all(to_token(name) in loaded.contract.vocab for name in trained if name)


def test_predictor_captions_the_asked_findings_and_refuses_unknown_ones(caption_run, synthetic_dir: Path):
    predictor = CaptionPredictor(caption_run.checkpoint, device="cpu", beam_size=2)
    image = next((synthetic_dir / "images").glob("*.png"))
    known = next(name for name in FINDINGS if to_token(name) in predictor.vocab)
    [result] = predictor.describe_files([image], [known])
    assert result.error is None and len(result.captions) == 1
    caption = result.captions[0]
    assert caption.tokens and caption.text and caption.log_prob <= 0.0
    assert set(result.probabilities) == set(FINDINGS)
    with pytest.raises(ConfigError, match="no token"):
        predictor.query_token("Cardiomegalyy")


def test_unreadable_file_gets_its_error_and_the_others_their_captions(caption_run, synthetic_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = next((synthetic_dir / "images").glob("*.png"))
    predictor = CaptionPredictor(caption_run.checkpoint, device="cpu", beam_size=1)
    results = predictor.describe_files([bad, good], None)
    assert results[0].error and "broken.png" in results[0].error
    assert results[1].error is None


def test_the_encoders_calibration_is_applied_to_its_probabilities(caption_run, synthetic_dir, tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from cxreader.inference.calibration import TEMPERATURE, Calibration, FindingCalibration

    calibration = Calibration(
        FINDINGS, tuple(FindingCalibration(TEMPERATURE, temperature=3.0) for _ in FINDINGS)
    )
    payload = torch.load(caption_run.checkpoint, weights_only=True)
    payload["contract"]["encoder"]["calibration"] = calibration.to_json()
    calibrated_path = tmp_path / "calibrated-caption.pt"
    torch.save(payload, calibrated_path)
    raw = CaptionPredictor(caption_run.checkpoint, device="cpu", beam_size=1)
    calibrated = CaptionPredictor(calibrated_path, device="cpu", beam_size=1)
    assert raw.calibration is None and calibrated.calibration == calibration
    image = next((synthetic_dir / "images").glob("*.png"))
    features = raw.features([np.asarray(Image.open(image).convert("L"))])
    expected = calibration.apply(raw.probabilities(features)).astype(np.float32)
    np.testing.assert_array_equal(calibrated.probabilities(features), expected)


def test_a_classifier_checkpoint_is_not_a_caption_checkpoint(encoder_checkpoint: Path):
    with pytest.raises(CheckpointError):
        load_caption_checkpoint(encoder_checkpoint)


def test_caption_cli_pairs_train_evaluate_predict(
    synthetic_dir: Path, encoder_checkpoint: Path, tmp_path: Path, capsys
):
    pairs = tmp_path / "pairs.csv"
    assert main(["caption", "pairs", "--synthetic", str(synthetic_dir), "--out", str(pairs)]) == 0
    run = tmp_path / "run"
    argv = [
        "caption",
        "train",
        "--pairs",
        str(pairs),
        "--encoder",
        str(encoder_checkpoint),
        "--out",
        str(run),
    ]
    argv += ["--epochs", "1", "--hidden-dim", "32", "--device", "cpu"]
    assert main(argv) == 0
    report = tmp_path / "report.json"
    argv = ["caption", "evaluate", "--checkpoint", str(run / "caption.pt"), "--pairs", str(pairs)]
    assert main([*argv, "--beam", "1", "--json", str(report), "--device", "cpu"]) == 0
    scores = json.loads(report.read_text())
    assert scores["split"] == "test"
    out = capsys.readouterr().out
    assert "BLEU" in out and "SYNTHETIC" in out
    image = next((synthetic_dir / "images").glob("*.png"))
    argv = ["caption", "predict", "--checkpoint", str(run / "caption.pt"), str(image), "--json"]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["checkpoint_synthetic"] is True and printed["results"][0]["path"] == str(image)


def test_predict_caption_adds_a_learned_caption_to_each_positive_finding(
    caption_run, encoder_checkpoint: Path, synthetic_dir: Path, tmp_path: Path, capsys
):
    # A classifier whose thresholds make every finding positive: each one must be listed with a caption
    # (or, for a finding the captioner never saw, with text null).
    from cxreader.models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(encoder_checkpoint)
    contract = dataclasses.replace(loaded.contract, thresholds=[0.0] * len(FINDINGS))
    classifier = tmp_path / "all-positive.pt"
    save_checkpoint(classifier, model=loaded.model, contract=contract)
    image = next((synthetic_dir / "images").glob("*.png"))
    argv = ["predict", "--checkpoint", str(classifier), str(image), "--caption", str(caption_run.checkpoint)]
    assert main([*argv, "--json", "--device", "cpu", "--beam", "1"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert [item["finding"] for item in result["captions"]] == list(FINDINGS)
    vocab = load_caption_checkpoint(caption_run.checkpoint).contract.vocab
    for item in result["captions"]:
        assert (item["text"] is not None) == (to_token(item["finding"]) in vocab)
    assert main([*argv, "--device", "cpu", "--beam", "1"]) == 0
    assert "learned caption:" in capsys.readouterr().out
