"""The data of a run rebuilt for training and evaluation: `--data` values, label spaces, uncertain labels only in
training targets, and one dataset's splits as a checkpoint's run made them."""

from __future__ import annotations

import numpy as np
import pytest

from cxreader.config import TrainConfig, config_from_dict
from cxreader.data.harmonise import load_dataset_splits
from cxreader.data.label_maps import UncertaintyPolicy
from cxreader.errors import ConfigError
from cxreader.evaluation.datasets import (
    dataset_splits,
    merged_dataset_splits,
    parse_dataset_roots,
    run_datasets,
    run_label_space,
    run_splits,
)
from cxreader.labels import FINDINGS, HARMONISED_LABELS
from cxreader.synthetic.layouts import write_layout


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    return write_layout(
        "chexpert", tmp_path_factory.mktemp("layouts") / "chexpert", images=120, size=64, seed=3
    )


def test_data_values_are_one_root_or_named_datasets(tmp_path):
    assert parse_dataset_roots([str(tmp_path)]) == (str(tmp_path), {})
    assert parse_dataset_roots([]) == ("", {})
    data, datasets = parse_dataset_roots(["nih=/a", "CheXpert=/b"])
    assert data == "" and datasets == {"nih": "/a", "chexpert": "/b"}
    for bad, message in [
        (["nih=/a", "nih=/b"], "twice"),
        (["hospital=/a"], "unknown dataset 'hospital'"),
        (["/a", "/b"], "name each dataset"),
        (["/a", "chexpert=/b"], "nih=/a"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_dataset_roots(bad)


def test_a_folder_whose_name_holds_an_equals_sign_is_still_a_root(tmp_path):
    odd = tmp_path / "run=1"
    odd.mkdir()
    assert parse_dataset_roots([str(odd)]) == (str(odd), {})


def test_label_spaces_and_dataset_names():
    assert run_label_space(TrainConfig(data="/nih")) == FINDINGS
    assert run_label_space(TrainConfig(datasets={"nih": "/a"})) == FINDINGS
    # CheXpert defines the five extra findings: NIH's 14, then those, in the harmonised order.
    assert run_label_space(TrainConfig(datasets={"chexpert": "/b", "nih": "/a"})) == HARMONISED_LABELS
    assert "Infiltration" not in run_label_space(TrainConfig(datasets={"chexpert": "/b"}))
    assert run_datasets(TrainConfig(data="/nih")) == ("nih",)
    assert run_datasets({"datasets": {"padchest": "/p", "nih": "/n"}}) == ("padchest", "nih")


def test_config_refuses_mixed_or_nih_only_settings_with_datasets():
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(data="/a", datasets={"nih": "/b"}).validate()
    with pytest.raises(ConfigError, match="several datasets"):
        TrainConfig(data="/a", sampling="balanced").validate()
    with pytest.raises(ConfigError, match="expected one of"):
        TrainConfig(datasets={"nih": "/a"}, sampling="equal").validate()
    with pytest.raises(ConfigError, match="NIH-only"):
        TrainConfig(datasets={"nih": "/a"}, split="lists", lists={"train": "x"}).validate()
    with pytest.raises(ConfigError, match="cache"):
        TrainConfig(datasets={"nih": "/a"}, cache="/c").validate()


def test_a_checkpoints_recorded_keys_are_left_out_when_its_config_is_rebuilt():
    saved = {**TrainConfig(datasets={"nih": "/a"}).to_dict(), "label_space": list(FINDINGS)}
    saved["uncertainty_policy"] = {"name": "ignore", "soft_value": 0.5}
    assert config_from_dict(saved).datasets == {"nih": "/a"}


def test_uncertain_labels_are_targets_in_training_and_unknown_when_scored(chexpert):
    config = TrainConfig(datasets={"chexpert": str(chexpert)}, uncertainty="ones", seed=1)
    label_space = run_label_space(config)
    splits = merged_dataset_splits(config, "chexpert", str(chexpert), label_space=label_space)
    ignored = load_dataset_splits("chexpert", chexpert, label_space=label_space, seed=1)
    ones = load_dataset_splits(
        "chexpert", chexpert, label_space=label_space, seed=1, uncertainty=UncertaintyPolicy("ones")
    )
    np.testing.assert_array_equal(splits["train"].labels, ones["train"].labels)
    for name in ("val", "test"):
        np.testing.assert_array_equal(splits[name].labels, ignored[name].labels)
    # The synthetic layout writes some uncertain mentions: under "ones" they are targets, scored they are NaN.
    uncertain = np.isnan(ignored["train"].labels) & (ones["train"].labels == 1)
    assert uncertain.any()
    merged = run_splits(config)
    assert merged["train"].label_names == label_space and set(merged["train"].datasets) == {"chexpert"}


def test_one_dataset_split_as_a_checkpoints_run_made_it(chexpert, tmp_path):
    from tests.conftest import make_tiny_nih

    nih = make_tiny_nih(tmp_path / "nih")
    legacy = TrainConfig(data=str(nih), split="random", seed=0).to_dict()
    config, splits = dataset_splits(legacy, "nih", str(nih), label_space=FINDINGS)
    assert config.data == str(nih) and not config.datasets
    assert splits["test"].images == run_splits(TrainConfig(data=str(nih)))["test"].images
    merged = TrainConfig(datasets={"nih": str(nih), "chexpert": str(chexpert)}, seed=2).to_dict()
    label_space = HARMONISED_LABELS
    config, scored = dataset_splits(merged, "chexpert", str(chexpert), label_space=label_space)
    assert set(scored) == {"train", "val", "test"} and config.datasets == {"chexpert": str(chexpert)}
    trained = run_splits(config_from_dict(merged), label_space=label_space)
    chexpert_test = [
        image
        for image, d in zip(trained["test"].images, trained["test"].datasets, strict=True)
        if d == "chexpert"
    ]
    assert scored["test"].images == chexpert_test
    with pytest.raises(ConfigError, match="--cache"):
        dataset_splits(merged, "chexpert", str(chexpert), label_space=label_space, cache="/c")
