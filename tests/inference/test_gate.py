"""The input gate: its rules on crafted files, the Mahalanobis detector, and its verdicts through predict."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.screening.factories import dicom_bytes, png_bytes, refused_inputs, run_cli, write_checkpoint

from cxreader.data.io import load_image
from cxreader.inference.gate import (
    MAX_ASPECT,
    InputGate,
    OutOfDistribution,
    pooled_features,
    rule_reasons,
)


def _reasons(data: bytes, name: str = "x", view: str | None = None) -> list[str]:
    image = load_image(name, data=data)
    return rule_reasons(image, input_size=64, view=view)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_good_radiographs_pass_including_grey_rgba_pngs() -> None:
    assert _reasons(png_bytes(1)) == []
    assert _reasons(dicom_bytes(modality="DX")) == []
    grey = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])  # how NIH stores some of its PNGs
    assert _reasons(_png(rgba, "RGBA")) == []


@pytest.mark.parametrize(
    ("data", "view", "expected"),
    [
        (dicom_bytes(modality="MR"), None, "modality MR is not a projection radiograph"),
        (dicom_bytes(view="RL"), None, "lateral view (RL)"),
        (png_bytes(2), "LATERAL", "lateral view (LATERAL)"),
        (
            _png(np.random.default_rng(4).integers(0, 255, (20, 20), dtype=np.uint8)),
            None,
            "image too small (20 x 20",
        ),
        (
            _png(np.random.default_rng(1).integers(0, 255, (40, 200), dtype=np.uint8)),
            None,
            "aspect ratio 5.0:1",
        ),
        (_png(np.full((64, 64), 7, np.uint8)), None, "nearly constant image"),
    ],
    ids=["mr", "lateral-dicom", "lateral-table", "small", "strip", "constant"],
)
def test_each_rule_names_its_reason(data: bytes, view: str | None, expected: str) -> None:
    reasons = _reasons(data, view=view)
    assert len(reasons) == 1 and reasons[0].startswith(expected), reasons
    assert MAX_ASPECT < 5.0


def test_a_body_part_other_than_the_chest_is_refused(tmp_path) -> None:
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes()))
    dataset.BodyPartExamined = "KNEE"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    assert _reasons(buffer.getvalue()) == ["body part KNEE is not the chest"]
    dataset.BodyPartExamined = "PORTABLE CHEST"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    assert _reasons(buffer.getvalue()) == []


def test_colour_photographs_are_refused_and_grey_jpegs_are_not(tmp_path) -> None:
    expected = refused_inputs(tmp_path)
    assert _reasons((tmp_path / "photo.jpg").read_bytes())[0].startswith(expected["photo.jpg"])
    grey = np.random.default_rng(2).integers(60, 200, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([grey] * 3), mode="RGB").save(buffer, format="JPEG", quality=85)
    assert _reasons(buffer.getvalue()) == []  # an RGB JPEG of a grey film: chroma noise only


def test_mahalanobis_detector_sets_its_threshold_on_validation_and_separates_the_unusual() -> None:
    rng = np.random.default_rng(0)
    scale = np.linspace(0.5, 2.0, 16)
    train, validation = rng.normal(0, 1, (2000, 16)) * scale, rng.normal(0, 1, (4000, 16)) * scale
    detector = OutOfDistribution.fit(train, validation, false_alarm_rate=0.05)
    assert np.mean(detector.score(validation) > detector.threshold) == pytest.approx(0.05, abs=0.005)
    fresh = rng.normal(0, 1, (4000, 16)) * scale
    assert np.mean(detector.score(fresh) > detector.threshold) == pytest.approx(0.05, abs=0.015)
    shifted = rng.normal(3, 1, (200, 16)) * scale
    assert np.mean(detector.score(shifted) > detector.threshold) > 0.99
    restored = OutOfDistribution.from_state(detector.to_state())
    assert restored.threshold == detector.threshold and restored.fitted_on == {
        "train": 2000,
        "validation": 4000,
    }
    np.testing.assert_allclose(restored.score(shifted), detector.score(shifted), rtol=1e-4)
    with pytest.raises(ValueError, match="false-alarm rate"):
        OutOfDistribution.fit(train, validation, false_alarm_rate=0.0)


def test_verdicts_join_rules_and_the_score() -> None:
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.random((300, 8, 2, 2)).astype(np.float32))
    pooled = pooled_features(features)
    detector = OutOfDistribution.fit(pooled[:200], pooled[200:])
    gate = InputGate(input_size=64, detector=detector)
    odd = features[:3].clone()
    odd[2] += 50.0
    verdicts = gate.verdicts([(), ("lateral view (LL): ...",), ()], odd)
    assert (
        verdicts[0].accepted and verdicts[0].score is not None and verdicts[0].threshold == detector.threshold
    )
    assert not verdicts[1].accepted and verdicts[1].reasons == ("lateral view (LL): ...",)
    assert not verdicts[2].accepted and "out-of-distribution score" in verdicts[2].reasons[0]
    assert InputGate(input_size=64, detector=None).verdicts([()], odd[:1])[0].score is None


def test_predict_refuses_what_the_gate_refuses_and_reads_the_rest(tmp_path, capsys) -> None:
    checkpoint = write_checkpoint(tmp_path / "tiny.pt")
    expected = refused_inputs(tmp_path / "bad")
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(5))
    files = [str(tmp_path / "bad" / name) for name in expected] + [str(good)]
    assert run_cli(["predict", "--checkpoint", str(checkpoint), "--json", *files]) == 0
    document = json.loads(capsys.readouterr().out)
    results = {item["path"].rsplit("/", 1)[-1]: item for item in document["results"]}
    for name, reason in expected.items():
        gate = results[name]["gate"]
        assert gate["accepted"] is False and gate["reasons"][0].startswith(reason), (name, gate)
        assert "probabilities" not in results[name]
    assert results["good.png"]["gate"]["accepted"] is True and len(results["good.png"]["probabilities"]) == 14
    assert run_cli(["predict", "--checkpoint", str(checkpoint), *files]) == 0
    table = capsys.readouterr().out
    assert table.count("NOT READ:") == len(expected) and "lateral view (LL)" in table
