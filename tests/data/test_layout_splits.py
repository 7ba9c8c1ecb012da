"""load_dataset_splits and merge_splits on SYNTHETIC CheXpert, MIMIC-CXR-JPG, PadChest and NIH layouts:
patient-level official splits, the frontal filter, labels against the drawn truth, paths, the stats command."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import cxreader.cli.__main__ as cli
from cxreader.data.chestxray14 import load_splits, split_stats
from cxreader.data.harmonise import load_dataset_splits, merge_splits
from cxreader.data.label_maps import DEFINED_LABELS, UncertaintyPolicy
from cxreader.data.mimic import read_mimic_root
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS, HARMONISED_LABELS
from cxreader.synthetic.layouts import drawn_findings, write_layout

IMAGES = 160
LAYOUTS = ("nih", "chexpert", "mimic", "padchest")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {layout: write_layout(layout, base / layout, images=IMAGES, size=64, seed=5) for layout in LAYOUTS}


def truth(root: Path, images: list[str], finding_sets: dict[str, tuple[str, ...]]) -> dict[str, np.ndarray]:
    drawn = drawn_findings(root)
    return {
        name: np.array([bool(drawn.get(image, set()) & set(findings)) for image in images], dtype=np.float32)
        for name, findings in finding_sets.items()
    }


def column(split, label: str) -> np.ndarray:
    return split.labels[:, split.label_names.index(label)]


def check_sound(splits: dict, dataset: str, label_space: tuple[str, ...] = HARMONISED_LABELS) -> None:
    assert list(splits) == ["train", "val", "test"]
    patients = [split.patients for split in splits.values()]
    for index, split in enumerate(splits.values()):
        assert len(split) > 0
        assert split.label_names == label_space and split.labels.shape == (len(split), len(label_space))
        assert set(split.datasets) == {dataset}
        assert split.paths is not None and all(os.path.isabs(path) for path in split.paths)
        assert all(Path(path).is_file() for path in split.paths)
        assert len(set(split.images)) == len(split)
        for other in patients[index + 1 :]:
            assert not patients[index] & other  # no patient in two splits
        undefined = [
            label_space.index(label) for label in label_space if label not in DEFINED_LABELS[dataset]
        ]
        assert np.isnan(split.labels[:, undefined]).all()


@pytest.mark.parametrize("dataset", ["chexpert", "mimic", "padchest"])
def test_round_trip_frontal(roots: dict[str, Path], dataset: str) -> None:
    splits = load_dataset_splits(dataset, roots[dataset], uncertainty=UncertaintyPolicy("ones"))
    check_sound(splits, dataset)
    for split in splits.values():
        assert set(split.view_position) <= {"PA", "AP", "AP_horizontal"}
    everything = load_dataset_splits(dataset, roots[dataset], frontal_only=False)
    check_sound(everything, dataset)
    laterals = sum(
        int((~np.isin(split.view_position, ["PA", "AP", "AP_horizontal"])).sum())
        for split in everything.values()
    )
    assert laterals == round(IMAGES * 0.15)
    assert sum(len(split) for split in everything.values()) == IMAGES
    assert sum(len(split) for split in splits.values()) == IMAGES - laterals


def test_chexpert_official_test_is_valid_csv(roots: dict[str, Path]) -> None:
    splits = load_dataset_splits("chexpert", roots["chexpert"], val_fraction=0.2)
    assert all("/valid/" in image for image in splits["test"].images)
    assert all("/train/" in image for name in ("train", "val") for image in splits[name].images)
    train_images = len(splits["train"]) + len(splits["val"])
    assert abs(len(splits["val"]) / train_images - 0.2) < 0.1
    with_other_test = load_dataset_splits("chexpert", roots["chexpert"], test_fraction=0.5, seed=1)
    assert (
        with_other_test["test"].images == splits["test"].images
    )  # the official split, whatever the fraction


def test_chexpert_labels_match_the_drawn_findings(roots: dict[str, Path]) -> None:
    root = roots["chexpert"]
    sets = {
        "Effusion": ("Effusion",),
        "Cardiomegaly": ("Cardiomegaly",),
        "Enlarged_Cardiomediastinum": ("Cardiomegaly",),
        "Lung_Lesion": ("Mass", "Nodule"),
        "Lung_Opacity": ("Consolidation", "Infiltration", "Pneumonia", "Atelectasis", "Edema"),
        "Pneumothorax": ("Pneumothorax",),
    }
    ones = load_dataset_splits("chexpert", root, uncertainty=UncertaintyPolicy("ones"))
    zeros = load_dataset_splits("chexpert", root, uncertainty=UncertaintyPolicy("zeros"))
    ignore = load_dataset_splits("chexpert", root)
    uncertain = 0
    for name in ("train", "val", "test"):
        expected = truth(root, ones[name].images, sets)
        for label, values in expected.items():
            np.testing.assert_array_equal(column(ones[name], label), values, err_msg=label)
            assert (column(zeros[name], label) <= values).all()
            masked = np.isnan(column(ignore[name], label))
            assert (values[masked] == 1).all()  # only positives are written uncertain
            uncertain += int(masked.sum())
        assert (column(ones[name], "Fracture") == 0).all() and (
            column(ones[name], "Support_Devices") == 0
        ).all()
    assert uncertain > 0
    assert not np.isnan(ignore["test"].labels[:, [HARMONISED_LABELS.index(x) for x in sets]]).any()
    # Training targets by one policy, scored labels by another, from one reading of the table.
    mixed = load_dataset_splits(
        "chexpert", root, uncertainty=UncertaintyPolicy("ones"), scored_uncertainty=UncertaintyPolicy()
    )
    np.testing.assert_array_equal(mixed["train"].labels, ones["train"].labels)
    for name in ("val", "test"):
        np.testing.assert_array_equal(mixed[name].labels, ignore[name].labels)


def test_mimic_uses_the_split_table(roots: dict[str, Path]) -> None:
    root = roots["mimic"]
    table = read_mimic_root(root)
    official = dict(zip(table["path"], table["split"], strict=True))
    splits = load_dataset_splits("mimic", root, frontal_only=False, seed=9, val_fraction=0.4)
    renamed = {"train": "train", "val": "validate", "test": "test"}
    for name, split in splits.items():
        assert {official[image] for image in split.images} == {renamed[name]}
        assert all(path.endswith(image) for path, image in zip(split.paths, split.images, strict=True))
    sets = {"Effusion": ("Effusion",), "Lung_Lesion": ("Mass", "Nodule")}
    ones = load_dataset_splits("mimic", root, uncertainty=UncertaintyPolicy("ones"))
    for split in ones.values():
        for label, values in truth(root, split.images, sets).items():
            np.testing.assert_array_equal(column(split, label), values)


def test_padchest_labels_match_the_drawn_findings(roots: dict[str, Path]) -> None:
    root = roots["padchest"]
    splits = load_dataset_splits("padchest", root, seed=2)
    for split in splits.values():
        expected = truth(root, split.images, {finding: (finding,) for finding in FINDINGS})
        for finding, values in expected.items():
            np.testing.assert_array_equal(column(split, finding), values, err_msg=finding)
        assert split.patient_ids.min() >= 0


def test_padchest_images_folder_layout_and_table_only(roots: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "padchest"
    shutil.copytree(roots["padchest"], copy)
    (copy / "images").mkdir()
    for folder in [path for path in copy.iterdir() if path.name.isdigit()]:
        folder.rename(copy / "images" / folder.name)
    splits = load_dataset_splits("padchest", copy)
    assert all(f"{os.sep}images{os.sep}" in path and Path(path).is_file() for path in splits["train"].paths)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next(copy.glob("PADCHEST_*")), flat)
    (flat / "images").mkdir()
    for image in (copy / "images").glob("*/*.png"):
        image.rename(flat / "images" / image.name)
    assert all(Path(path).is_file() for path in load_dataset_splits("padchest", flat)["test"].paths)


def test_chexpert_root_may_be_the_release_folder(roots: dict[str, Path], tmp_path: Path) -> None:
    release = tmp_path / "CheXpert-v1.0-small"
    shutil.copytree(roots["chexpert"] / "CheXpert-v1.0-small", release)
    for name in ("train.csv", "valid.csv"):
        shutil.copy(roots["chexpert"] / name, release / name)
    splits = load_dataset_splits("chexpert", release)
    assert all(Path(path).is_file() for split in splits.values() for path in split.paths)


def test_nih_splits_in_the_harmonised_space(roots: dict[str, Path]) -> None:
    splits = load_dataset_splits("nih", roots["nih"], seed=4)
    check_sound(splits, "nih")
    reference = load_splits(roots["nih"], split="random", seed=4)
    for name, split in splits.items():
        assert split.images == reference[name].images
        np.testing.assert_array_equal(split.labels[:, :14], reference[name].labels)
    only_findings = load_dataset_splits("nih", roots["nih"], label_space=FINDINGS)
    assert only_findings["train"].label_names == FINDINGS
    assert not np.isnan(only_findings["train"].labels).any()


def test_merge_nih_chexpert_padchest(roots: dict[str, Path]) -> None:
    parts = {
        dataset: load_dataset_splits(dataset, roots[dataset]) for dataset in ("nih", "chexpert", "padchest")
    }
    merged = merge_splits(parts)
    assert list(merged) == ["train", "val", "test"]
    for name, split in merged.items():
        assert split.label_names == HARMONISED_LABELS  # the union of NIH, CheXpert and PadChest
        assert len(split) == sum(len(part[name]) for part in parts.values())
        assert all(Path(path).is_file() for path in split.paths)
        for dataset in parts:
            rows = split.datasets == dataset
            assert rows.sum() == len(parts[dataset][name])
            for index, label in enumerate(HARMONISED_LABELS):
                if label not in DEFINED_LABELS[dataset]:
                    assert np.isnan(split.labels[rows, index]).all(), (dataset, label)
                else:
                    assert not np.isnan(split.labels[rows, index]).all(), (dataset, label)
        by_dataset = [set(split.patient_ids[split.datasets == dataset].tolist()) for dataset in parts]
        assert not by_dataset[0] & by_dataset[1] and not by_dataset[1] & by_dataset[2]
    patients = [split.patients for split in merged.values()]
    assert not patients[0] & patients[1] and not patients[0] & patients[2] and not patients[1] & patients[2]
    stats = split_stats(merged["train"])
    assert set(stats.percent) == set(HARMONISED_LABELS)
    assert stats.labelled["Mass"] == int((merged["train"].datasets != "chexpert").sum())


def test_merge_with_a_chosen_label_space(roots: dict[str, Path]) -> None:
    zeros = UncertaintyPolicy("zeros")
    parts = {
        dataset: load_dataset_splits(dataset, roots[dataset], uncertainty=zeros)
        for dataset in ("chexpert", "mimic")
    }
    merged = merge_splits(parts, ("Effusion", "Mass"))
    assert merged["test"].label_names == ("Effusion", "Mass")
    assert np.isnan(merged["test"].labels[:, 1]).all() and not np.isnan(merged["test"].labels[:, 0]).any()
    assert merge_splits(parts)["val"].label_names == DEFINED_LABELS["chexpert"]


def test_merge_locates_nih_splits_without_paths(roots: dict[str, Path]) -> None:
    nih = load_splits(roots["nih"], split="random")
    assert nih["train"].paths is None
    alone = merge_splits({"nih": nih})
    assert alone["train"].paths is None and alone["train"].label_names == FINDINGS
    chexpert = load_dataset_splits("chexpert", roots["chexpert"])
    with pytest.raises(ConfigError, match="roots"):
        merge_splits({"nih": nih, "chexpert": chexpert})
    merged = merge_splits({"nih": nih, "chexpert": chexpert}, roots={"nih": roots["nih"]})
    assert all(Path(path).is_file() for path in merged["train"].paths)
    assert merged["train"].images[: len(nih["train"])] == nih["train"].images


@pytest.mark.parametrize("dataset", ["chexpert", "mimic", "padchest"])
def test_stats_command_reads_the_layout(
    roots: dict[str, Path], dataset: str, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["data", "stats", "--dataset", dataset, "--data", str(roots[dataset]), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["dataset"] == dataset
    assert sum(split["images"] for split in stats["splits"].values()) == IMAGES
    expected = {"chexpert": ["train", "valid"], "mimic": ["train", "validate", "test"], "padchest": ["all"]}
    assert sorted(stats["splits"]) == sorted(expected[dataset])
    splits = load_dataset_splits(dataset, roots[dataset], frontal_only=False)
    if dataset == "chexpert":
        assert stats["splits"]["valid"]["images"] == len(splits["test"])
        assert stats["splits"]["valid"]["labels"]["Cardiomegaly"]["uncertain"] == 0
    if dataset == "mimic":
        assert stats["splits"]["validate"]["images"] == len(splits["val"])


def test_missing_tables_and_columns_are_named(roots: dict[str, Path], tmp_path: Path) -> None:
    chexpert = tmp_path / "chexpert"
    chexpert.mkdir()
    shutil.copy(roots["chexpert"] / "train.csv", chexpert)
    with pytest.raises(DataError) as info:
        load_dataset_splits("chexpert", chexpert)
    assert str(info.value).startswith(str(chexpert / "valid.csv")) and "\n" not in str(info.value)
    text = (roots["chexpert"] / "valid.csv").read_text().replace("Frontal/Lateral", "View", 1)
    (chexpert / "valid.csv").write_text(text)
    with pytest.raises(DataError, match="'Frontal/Lateral'"):
        load_dataset_splits("chexpert", chexpert)
    with pytest.raises(DataError, match="mimic-cxr-2.0.0-chexpert.csv"):
        load_dataset_splits("mimic", chexpert)
    with pytest.raises(DataError, match="no PadChest table"):
        load_dataset_splits("padchest", chexpert)
    with pytest.raises(DataError, match="not a directory"):
        load_dataset_splits("padchest", tmp_path / "absent")


def test_bad_arguments(roots: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset_splits("openi", roots["chexpert"])
    with pytest.raises(ConfigError, match="sum to less than 1"):
        load_dataset_splits("padchest", roots["padchest"], val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="not a finding"):
        load_dataset_splits("padchest", roots["padchest"], label_space=("Pleural Effusion",))
    with pytest.raises(ConfigError, match="no splits"):
        merge_splits({})


def test_image_source_reads_split_paths(roots: dict[str, Path], tmp_path: Path) -> None:
    from cxreader.config import TrainConfig
    from cxreader.data.dataset import image_source

    split = load_dataset_splits("chexpert", roots["chexpert"])["test"]
    config = TrainConfig(image_size=56)
    source = image_source(config, split)
    assert len(source) == len(split) and source.name(0) == split.images[0]
    assert source.load(0).shape == (64, 64)
    split.paths[1] = str(tmp_path / "gone.jpg")
    with pytest.raises(
        DataError, match=r"1 image file\(s\) of split 'test' are missing \(first: .*gone.jpg\)"
    ):
        image_source(config, split)
