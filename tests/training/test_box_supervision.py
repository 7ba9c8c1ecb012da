"""Box supervision (Li et al. 2018): masks of the training split's boxes, the loss, and the training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.training.tiny_run import TINY_TRAIN_ARGS

from cxreader.cli.__main__ import main
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS
from cxreader.models.checkpoint import load_checkpoint
from cxreader.training.box_supervision import MASK_SIZE, BoxTargets, box_loss

HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
EFFUSION = FINDINGS.index("Effusion")


def _box_file(path, rows):
    path.write_text(
        HEADER + "".join(f"{name},{finding},{x},{y},{w},{h}\n" for name, finding, x, y, w, h in rows)
    )
    return path


def test_only_training_images_get_masks_in_the_frame_of_their_pixels(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((100, 200), dtype=np.uint8)).save(tmp_path / name)  # 200 wide, 100 high
    boxes = _box_file(
        tmp_path / "boxes.csv", [("a.png", "Effusion", 100, 50, 100, 50), ("b.png", "Mass", 0, 0, 10, 10)]
    )
    targets = BoxTargets.from_file(boxes, ["a.png"], lambda name: tmp_path / name)
    assert list(targets.masks) == ["a.png"] and targets.boxes == 1  # b.png is not a training image
    mask = targets.masks["a.png"][EFFUSION]
    half = MASK_SIZE // 2
    assert mask[half:, half:].all() and not mask[:half].any() and not mask[:, :half].any()
    masks, known = targets.batch(["x.png", "a.png"], torch.device("cpu"))
    assert masks.shape == (2, len(FINDINGS), MASK_SIZE, MASK_SIZE)
    assert known.tolist()[0] == [False] * 14 and known[1, EFFUSION] and known[1].sum() == 1
    assert targets.batch(["x.png"], torch.device("cpu")) is None
    spaced = BoxTargets.from_file(boxes, ["a.png"], None, box_space=400)  # boxes in a 400 x 400 space
    quarter = spaced.masks["a.png"][EFFUSION]  # x 100-200 of 400 -> 16-32 of 64; y 50-100 -> 8-16
    assert quarter[8:16, 16:32].all() and quarter.sum() == 8 * 16


def test_boxes_of_no_training_image_or_an_unreadable_image_are_clear_errors(tmp_path):
    boxes = _box_file(tmp_path / "boxes.csv", [("a.png", "Effusion", 1, 1, 5, 5)])
    with pytest.raises(ConfigError, match="none of its boxes"):
        BoxTargets.from_file(boxes, ["other.png"], lambda name: tmp_path / name)
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a.png"):
        BoxTargets.from_file(boxes, ["a.png"], lambda name: tmp_path / name)


def test_the_box_loss_rewards_maps_inside_their_box_and_ignores_unboxed_pairs():
    masks = torch.zeros(1, 14, 8, 8)
    masks[0, EFFUSION, 4:, :4] = 1.0
    known = torch.zeros(1, 14, dtype=torch.bool)
    known[0, EFFUSION] = True
    inside = torch.full((1, 14, 4, 4), -5.0)
    inside[0, EFFUSION, 2:, :2] = 5.0
    assert box_loss(inside, masks, known) < 0.05 < box_loss(-inside, masks, known)
    unknown = torch.zeros(1, 14, 4, 4, requires_grad=True)
    loss = box_loss(unknown, masks, torch.zeros_like(known))
    loss.backward()
    assert loss.item() == 0.0 and unknown.grad is not None


def _effusion_boxes(data, path):
    """Boxes of the tiny dataset's Effusion square (lower third of the image's left side)."""
    lines = (data / "Data_Entry_2017_v2020.csv").read_text().splitlines()[1:]
    rows = [(line.split(",")[0], "Effusion", 0, 24, 16, 24) for line in lines if ",Effusion," in line]
    return _box_file(path, rows)


def test_training_with_boxes_uses_the_training_split_and_records_them(tiny_nih, tmp_path, caplog):
    boxes = _effusion_boxes(tiny_nih, tiny_nih / "BBox_List_2017.csv")
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_nih), "--out", str(run), "--epochs", "2", "--augment", "batch"]
    with caplog.at_level("INFO"):
        assert main([*argv, "--boxes", "BBox_List_2017.csv", "--box-weight", "2", *TINY_TRAIN_ARGS]) == 0
    message = next(
        record.getMessage() for record in caplog.records if "box supervision" in record.getMessage()
    )
    used = int(message.split()[2])
    total = len(boxes.read_text().splitlines()) - 1
    assert 0 < used < total  # validation and test boxes stay unseen
    config = load_checkpoint(run / "best.pt").contract.config
    assert config["boxes"] == "BBox_List_2017.csv" and config["box_weight"] == 2.0


def test_box_supervision_needs_batched_augmentation_and_an_existing_file(tiny_nih, tmp_path, capsys):
    argv = ["train", "--data", str(tiny_nih), "--out", str(tmp_path / "r"), *TINY_TRAIN_ARGS]
    assert main([*argv, "--boxes", "missing.csv", "--augment", "batch"]) == 2
    assert "missing.csv: box file not found" in capsys.readouterr().err
    _effusion_boxes(tiny_nih, tmp_path / "boxes.csv")
    assert main([*argv, "--boxes", str(tmp_path / "boxes.csv"), "--augment", "sample"]) == 2
    assert "needs augment: batch" in capsys.readouterr().err
