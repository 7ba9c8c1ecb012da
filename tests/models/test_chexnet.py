import pytest
import torch
import torchvision

from cxreader.errors import CheckpointError, ConfigError
from cxreader.models import create_model, list_models
from cxreader.models.chexnet import CheXNet, normalise_state_dict_keys


def test_registry_lists_and_refuses_unknown():
    assert {"chexnet_densenet121", "densenet_small"} <= set(list_models())
    with pytest.raises(ConfigError, match="registered"):
        create_model("resnet9000")


def test_split_forward_matches_forward():
    model = create_model("densenet_small").eval()
    images = torch.randn(2, 3, 64, 64)
    features = model.forward_features(images)
    assert features.shape[:2] == (2, model.num_features)
    assert torch.allclose(model.forward_head(features), model(images))
    assert model(images).shape == (2, 14)


def test_densenet121_architecture_without_download():
    model = create_model("chexnet_densenet121", init="none")
    assert model.num_features == 1024 and model.classifier.out_features == 14


def test_offline_imagenet_init_gives_a_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models, "densenet121", offline)
    with pytest.raises(CheckpointError, match="--weights FILE"):
        create_model("chexnet_densenet121", init="imagenet")


def _reference_layout_state(model: CheXNet) -> dict:
    """The key layout of the public CheXNet reference model: DataParallel-wrapped, ``densenet121.`` prefix,
    ``classifier.0`` (Linear inside Sequential) and old ``norm.1`` layer names."""
    state = {}
    for key, value in model.state_dict().items():
        old = (
            key.replace("norm1", "norm.1")
            .replace("norm2", "norm.2")
            .replace("conv1", "conv.1")
            .replace("conv2", "conv.2")
        )
        old = old.replace("classifier.", "classifier.0.")
        state["module.densenet121." + old] = value
    return state


def test_public_chexnet_layouts_load(tmp_path):
    source = create_model("densenet_small")
    path = tmp_path / "chexnet_reference.pth.tar"
    torch.save({"state_dict": _reference_layout_state(source), "epoch": 3}, path)
    target = create_model("densenet_small", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_imagenet_classifier_is_dropped_backbone_loaded(tmp_path):
    backbone = torchvision.models.DenseNet(growth_rate=16, block_config=(4, 8, 8), num_init_features=32)
    path = tmp_path / "imagenet.pth"
    torch.save(backbone.state_dict(), path)
    model = create_model("densenet_small", weights=path)
    assert torch.equal(model.features.conv0.weight, backbone.features.conv0.weight)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(create_model("densenet_small").state_dict(), path)
    with pytest.raises(CheckpointError, match="keys don't fit"):
        create_model("chexnet_densenet121", init="none", weights=path)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        create_model("densenet_small", weights=broken)


def test_old_key_normalisation():
    keys = normalise_state_dict_keys(
        {"module.densenet121.features.denseblock1.denselayer1.norm.1.weight": torch.zeros(1)}
    )
    assert list(keys) == ["features.denseblock1.denselayer1.norm1.weight"]


def test_densenet_small_s8_keeps_twice_the_feature_resolution(tmp_path):
    import torch

    from cxreader.models import create_model
    from cxreader.models.checkpoint import CheckpointContract, load_checkpoint, save_checkpoint

    coarse, fine = create_model("densenet_small"), create_model("densenet_small_s8")
    images = torch.zeros(1, 3, 128, 128)
    assert coarse.forward_features(images).shape[-2:] == (8, 8)
    assert fine.forward_features(images).shape[-2:] == (16, 16)
    assert fine(images).shape == (1, 14)
    # same parameters (only a pooling is gone), and its checkpoints rebuild the fine network
    assert sum(p.numel() for p in coarse.parameters()) == sum(p.numel() for p in fine.parameters())
    path = tmp_path / "fine.pt"
    save_checkpoint(
        path, model=fine, contract=CheckpointContract(model_name="densenet_small_s8", input_size=128)
    )
    assert load_checkpoint(path).model.forward_features(images).shape[-2:] == (16, 16)


def test_lse_pooling_lies_between_mean_and_max_of_the_class_map(tmp_path):
    """Log-sum-exp pooling (Wang et al. 2017) of the class activation map: mean <= LSE <= max, and its
    checkpoints rebuild the same head."""
    from cxreader.localization.cam import class_activation_maps
    from cxreader.models.checkpoint import CheckpointContract, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = create_model("densenet_small_s8", pooling="lse", lse_r=5.0).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(images)
        maps = (
            class_activation_maps(model, images, ["Effusion", "Nodule"])
            + model.classifier.bias[[2, 5]][None, :, None, None]
        )
    pooled = logits[:, [2, 5]]
    assert torch.all(pooled >= maps.mean(dim=(-2, -1)) - 1e-5)
    assert torch.all(pooled <= maps.amax(dim=(-2, -1)) + 1e-5)
    assert not torch.allclose(pooled, maps.mean(dim=(-2, -1)), atol=1e-4)  # it is not the average
    path = tmp_path / "lse.pt"
    save_checkpoint(
        path,
        model=model,
        contract=CheckpointContract(
            model_name="densenet_small_s8", input_size=64, model_kwargs={"pooling": "lse", "lse_r": 5.0}
        ),
    )
    loaded = load_checkpoint(path).model
    assert loaded.pooling == "lse" and loaded.lse_r == 5.0
    assert torch.allclose(loaded(images), logits, atol=1e-5)


def test_average_pooling_head_is_the_class_map_mean():
    model = create_model("densenet_small").eval()
    images = torch.randn(1, 3, 64, 64)
    from cxreader.localization.cam import class_activation_maps

    with torch.no_grad():
        maps = class_activation_maps(model, images, ["Mass"]) + model.classifier.bias[4]
        assert torch.allclose(model(images)[:, 4], maps.mean(dim=(-2, -1))[:, 0], atol=1e-5)


def test_unknown_pooling_is_refused():
    with pytest.raises(CheckpointError, match="pooling"):
        create_model("densenet_small", pooling="max")
    with pytest.raises(CheckpointError, match="lse_r"):
        create_model("densenet_small", pooling="lse", lse_r=0.0)
