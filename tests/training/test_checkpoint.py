import numpy as np
import pytest
import torch

from cxreader.errors import CheckpointError
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, load_checkpoint, read_checkpoint, save_checkpoint


def _save(tmp_path, **contract_kwargs):
    model = create_model("densenet_small")
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=96,
        thresholds=tuple(np.linspace(0.1, 0.9, 14)),
        **contract_kwargs,
    )
    path = tmp_path / "model.pt"
    save_checkpoint(path, model=model, contract=contract)
    return model, path


def test_round_trip_carries_the_contract(tmp_path):
    model, path = _save(tmp_path, synthetic=True)
    loaded = load_checkpoint(path)
    assert loaded.contract.input_size == 96 and loaded.contract.synthetic
    assert loaded.contract.thresholds[0] == pytest.approx(0.1)
    assert loaded.contract.eval_preset().image_size == 96
    images = torch.randn(1, 3, 96, 96)
    model.eval()
    assert torch.allclose(loaded.model(images), model(images), atol=1e-6)
    assert len(loaded.sha256) == 64


def test_other_labels_are_refused(tmp_path):
    _, path = _save(tmp_path, labels=("Atelectasis", "Cardiomegaly"))
    with pytest.raises(CheckpointError, match="labels"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    _, path = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.pt"):
        read_checkpoint(path)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    model, path = _save(tmp_path)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError):
        save_checkpoint(path, model=model, contract=CheckpointContract(model_name="densenet_small"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_checkpoint_with_a_retired_location_reader_still_loads_with_one_notice(tmp_path, caplog):
    model, path = _save(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["location_reader"] = {"format": "cxreader-location-reader", "zone": {"Effusion": [[0.1, 0.2]]}}
    torch.save(payload, path)
    with caplog.at_level("INFO", logger="cxreader.models.checkpoint"):
        loaded = load_checkpoint(path)
    notices = [record.getMessage() for record in caplog.records if "location reader" in record.getMessage()]
    assert len(notices) == 1 and "ignoring" in notices[0]
    assert not hasattr(loaded.model, "location_reader")
    images = torch.randn(1, 3, 96, 96)
    model.eval()
    assert torch.allclose(loaded.model(images), model(images), atol=1e-6)


def test_a_model_of_the_harmonised_label_space_round_trips(tmp_path):
    from cxreader.labels import HARMONISED_LABELS

    model = create_model("densenet_small", num_classes=len(HARMONISED_LABELS))
    assert model.classifier.out_features == len(HARMONISED_LABELS) == 19
    contract = CheckpointContract(
        model_name="densenet_small",
        model_kwargs={"num_classes": 19},
        labels=HARMONISED_LABELS,
        input_size=32,
        thresholds=(0.5,) * 19,
    )
    save_checkpoint(tmp_path / "merged.pt", model=model, contract=contract)
    loaded = load_checkpoint(tmp_path / "merged.pt")
    assert loaded.contract.labels == HARMONISED_LABELS
    images = torch.randn(2, 3, 32, 32)
    model.eval()
    assert loaded.model(images).shape == (2, 19)
    assert torch.allclose(loaded.model(images), model(images), atol=1e-6)


def test_the_head_follows_the_contract_labels_when_its_kwargs_do_not_say(tmp_path):
    labels = ("Cardiomegaly", "Effusion", "Lung_Opacity")
    model = create_model("densenet_small", num_classes=3)
    contract = CheckpointContract(model_name="densenet_small", labels=labels, thresholds=(0.5,) * 3)
    save_checkpoint(tmp_path / "three.pt", model=model, contract=contract)
    assert load_checkpoint(tmp_path / "three.pt").model.num_classes == 3


def test_pretrained_weights_of_another_head_load_the_backbone_only(tmp_path):
    from cxreader.models.chexnet import load_pretrained_weights

    source = create_model("densenet_small")  # 14 outputs
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = create_model("densenet_small", num_classes=19)
    load_pretrained_weights(target, tmp_path / "w.pt")
    assert torch.equal(target.features.conv0.weight, source.features.conv0.weight)
    assert target.classifier.out_features == 19
