import pytest
import yaml

from cxreader.config import TrainConfig, load_config, save_config
from cxreader.errors import ConfigError


def test_layering_defaults_recipe_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.01\nbatch_size: 8\n")
    config = load_config(recipe, {"batch_size": "4", "crop_scale": "0.5,1"})
    assert config.lr == 0.01 and config.batch_size == 4 and config.crop_scale == (0.5, 1.0)
    assert config.image_size == TrainConfig().image_size


def test_packaged_recipes_load():
    assert load_config("chexnet").model == "chexnet_densenet121"
    demo = load_config("demo")
    assert demo.model == "densenet_small_s8" and demo.synthetic is True and demo.augment == "batch"
    assert demo.pooling == "lse"


@pytest.mark.parametrize(
    "overrides",
    [
        {"nope": 1},
        {"amp": "fp8"},
        {"batch_size": "x"},
        {"epochs": 0},
        {"synthetic": "maybe"},
        {"batch_size": 2.5},
    ],
)
def test_bad_values_are_refused(overrides):
    with pytest.raises(ConfigError):
        load_config(None, overrides)


def test_saved_config_round_trips(tmp_path):
    config = load_config("demo", {"data": "x", "lists": {"train": "a.txt"}, "split": "lists"})
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["lists"] == {"train": "a.txt"}


@pytest.mark.parametrize("seed", [2**60 + 1, str(2**60 + 1)])
def test_large_integers_are_kept_exactly(seed):
    assert load_config(None, {"seed": seed}).seed == 2**60 + 1
