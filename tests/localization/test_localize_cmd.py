"""``cxreader heatmap`` and ``cxreader localize eval`` through the real CLI entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import cxreader.cli.__main__ as cli
from cxreader.localization.boxes import IOBB_THRESHOLDS
from cxreader.synthetic.dataset import generate_synthetic_dataset


@pytest.fixture(autouse=True)
def _localize_commands(monkeypatch):
    """Make sure the CLI lists this module's commands (whether or not COMMAND_MODULES names it yet)."""
    if "cxreader.cli.localize_cmd" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "cxreader.cli.localize_cmd"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root / "data", images=10, size=64, seed=3)
    return root / "data"


def test_localize_eval_prints_the_table_and_writes_json(synthetic, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "loc.json"
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(synthetic)]
    args += ["--boxes", str(synthetic / "BBox_List_2017.csv"), "--json", str(out)]
    code = cli.main(["localize", "eval", *args])
    printed = capsys.readouterr().out
    assert code == 0
    assert "SYNTHETIC-trained checkpoint" in printed and "| finding | boxes | Acc@0.1" in printed
    payload = json.loads(out.read_text())
    assert payload["iobb_thresholds"] == list(IOBB_THRESHOLDS) and payload["checkpoint_synthetic"] is True
    total = sum(row["boxes"] for row in payload["findings"].values())
    assert total == len((synthetic / "BBox_List_2017.csv").read_text().strip().splitlines()) - 1
    for row in payload["findings"].values():
        accuracy = [row["accuracy"][str(t)] for t in IOBB_THRESHOLDS]
        assert all(0.0 <= a <= 1.0 for a in accuracy)
        assert accuracy == sorted(accuracy, reverse=True)  # a stricter T never localizes more boxes


def test_localize_eval_on_a_split_uses_only_its_images(synthetic, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "test.json"
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(synthetic), "--split", "test"]
    args += ["--boxes", str(synthetic / "BBox_List_2017.csv"), "--json", str(out)]
    assert cli.main(["localize", "eval", *args]) == 0
    test_images = set((synthetic / "test_list.txt").read_text().split())
    boxes = [line.split(",") for line in (synthetic / "BBox_List_2017.csv").read_text().splitlines()[1:]]
    expected = sum(1 for row in boxes if row[0] in test_images)
    payload = json.loads(out.read_text())
    assert sum(row["boxes"] for row in payload["findings"].values()) == expected


def test_a_box_file_with_an_unknown_finding_is_a_clear_data_error(
    synthetic, tiny_checkpoint, tmp_path, capsys
):
    bad = tmp_path / "BBox_bad.csv"
    lines = (synthetic / "BBox_List_2017.csv").read_text().splitlines()
    first = lines[1].split(",")
    first[1] = "Tumour"
    bad.write_text("\n".join([lines[0], ",".join(first)]) + "\n")
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(synthetic), "--boxes", str(bad)]
    assert cli.main(["localize", "eval", *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cxreader: error: ") and "BBox_bad.csv" in error
    assert "line 2" in error and "unknown finding 'Tumour'" in error


def test_boxes_in_another_pixel_space_are_refused_with_a_hint(synthetic, tiny_checkpoint, tmp_path, capsys):
    # Boxes in 1024-px space against 64-px images: the error says so and names --box-space.
    big = tmp_path / "BBox_1024.csv"
    lines = (synthetic / "BBox_List_2017.csv").read_text().splitlines()
    scaled = [lines[0]]
    for line in lines[1:]:
        name, finding, *numbers = line.split(",")
        scaled.append(",".join([name, finding, *(str(float(v) * 16) for v in numbers)]))
    big.write_text("\n".join(scaled) + "\n")
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(synthetic), "--boxes", str(big)]
    assert cli.main(["localize", "eval", *args]) == 2
    assert "--box-space 1024" in capsys.readouterr().err
    assert cli.main(["localize", "eval", *args, "--box-space", "1024"]) == 0


def test_heatmap_writes_readable_overlays_and_refuses_unknown_findings(
    synthetic, tiny_checkpoint, tmp_path, capsys
):
    image = sorted((synthetic / "images").glob("*.png"))[0]
    out = tmp_path / "overlays"
    args = ["--checkpoint", str(tiny_checkpoint), str(image), "--out", str(out)]
    assert cli.main(["heatmap", *args, "--finding", "Effusion", "--finding", "infiltrate", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    written = sorted(out.glob("*.png"))
    assert [p.name for p in written] == [
        f"{image.stem}_Effusion_cam.png",
        f"{image.stem}_Infiltration_cam.png",
    ]
    assert payload["results"][0]["overlays"] and payload["checkpoint_synthetic"] is True
    with Image.open(written[0]) as overlay:
        assert overlay.mode == "RGBA" and overlay.size[0] >= 500
        pixels = np.asarray(overlay.convert("RGB"))
    # The SYNTHETIC banner is drawn in red at the top of a synthetic checkpoint's overlay.
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red[: pixels.shape[0] // 8].sum() > 50

    assert cli.main(["heatmap", *args, "--finding", "Tumour"]) == 2
    assert "unknown finding 'Tumour'" in capsys.readouterr().err


def test_heatmap_gradcam_on_positive_findings_prints_sentences(synthetic, tiny_checkpoint, tmp_path, capsys):
    image = sorted((synthetic / "images").glob("*.png"))[1]
    args = ["--checkpoint", str(tiny_checkpoint), str(image), "--out", str(tmp_path), "--method", "gradcam"]
    assert cli.main(["heatmap", *args, "--positive"]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "not a certified medical device" in printed
    overlays = sorted(path.name for path in tmp_path.glob("*_gradcam.png"))
    assert overlays == [f"{image.stem}_Effusion_gradcam.png", f"{image.stem}_Nodule_gradcam.png"]
    lines = [line for line in printed.splitlines() if "(p = " in line]
    assert len(lines) == 2 and any("pleural effusion" in line for line in lines)
    assert any("nodule" in line for line in lines)


def test_localize_eval_runs_on_the_real_boxed_images(shared_data, tiny_checkpoint, tmp_path, capsys):
    folder = shared_data / "nih" / "images_1024"
    out = tmp_path / "real.json"
    args = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--data",
        str(folder),
        "--boxes",
        str(folder / "BBox_List.csv"),
    ]
    assert cli.main(["localize", "eval", *args, "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert sum(row["boxes"] for row in payload["findings"].values()) == 8
    assert set(payload["findings"]) == {"Atelectasis", "Cardiomegaly", "Mass", "Nodule", "Pneumonia"}


def test_predict_describe_prints_sentences_and_adds_descriptions_to_json(synthetic, tiny_checkpoint, capsys):
    image = str(sorted((synthetic / "images").glob("*.png"))[2])
    assert cli.main(["predict", "--checkpoint", str(tiny_checkpoint), image, "--describe", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert [item["finding"] for item in result["descriptions"]] == sorted(
        ["Effusion", "Nodule"], key=lambda name: -result["probabilities"][name]
    )
    assert set(result["descriptions"][0]) == {
        "finding",
        "probability",
        "side",
        "zone",
        "organ",
        "extent",
        "size_cm",
        "severity",
        "box",
        "sentence",
    }
    # The synthetic Data_Entry gives no spacing to a bare PNG: no size in cm.
    assert all(item["size_cm"] is None for item in result["descriptions"])
    assert cli.main(["predict", "--checkpoint", str(tiny_checkpoint), image, "--describe"]) == 0
    printed = capsys.readouterr().out
    assert "  description:" in printed and "pleural effusion" in printed
    assert cli.main(["predict", "--checkpoint", str(tiny_checkpoint), image, "--json"]) == 0
    assert "descriptions" not in json.loads(capsys.readouterr().out)["results"][0]
