"""ChestX-ray14 dataset layer: image locations, list files, patient splits and split statistics."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxreader.data.chestxray14 import (
    ChestXray14,
    ImageLocator,
    Split,
    find_data_entry,
    load_splits,
    official_split,
    read_list_file,
    split_from_list_files,
    split_statistics,
)
from cxreader.data.nih_tables import read_data_entry
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS, parse_finding_labels

HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
PATTERNS = (
    "No Finding",
    "Effusion",
    "Cardiomegaly|Effusion",
    "Pleural_Thickening",
    "Hernia|Mass",
    "Infiltration",
)


def nih_rows(num_patients: int = 20) -> list[tuple]:
    """Rows of a fake Data_Entry table: patient p has 1 + p % 4 images (50 images for 20 patients)."""
    rows = []
    for patient in range(1, num_patients + 1):
        for follow_up in range(1 + patient % 4):
            rows.append(
                (
                    f"{patient:08d}_{follow_up:03d}.png",
                    PATTERNS[(patient + follow_up) % len(PATTERNS)],
                    follow_up,
                    patient,
                    30 + patient,
                    "M" if patient % 2 else "F",
                    "PA" if follow_up % 2 == 0 else "AP",
                    2000 + patient,
                    2500 + follow_up,
                    0.143,
                    0.139 if patient % 3 else 0.143,
                )
            )
    return rows


def write_data_entry(path: Path, rows: list[tuple]) -> Path:
    text = "\n".join([HEADER, *(",".join(str(cell) for cell in row) for row in rows)]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(path)


@pytest.fixture
def nih_root(tmp_path: Path) -> Path:
    """A tiny NIH tree: Data_Entry_2017_v2020.csv, PNGs split over images_001/images and images_002/images."""
    root = tmp_path / "nih"
    root.mkdir()
    rows = nih_rows()
    write_data_entry(root / "Data_Entry_2017_v2020.csv", rows)
    for row in rows:
        part = "images_001" if row[3] <= 10 else "images_002"
        write_png(root / part / "images" / row[0])
    return root


# --- find_data_entry -------------------------------------------------------------------------------------


def test_find_data_entry_prefers_v2020_and_accepts_gz(tmp_path: Path) -> None:
    write_data_entry(tmp_path / "Data_Entry_2017.csv", nih_rows(2))
    assert find_data_entry(tmp_path) == tmp_path / "Data_Entry_2017.csv"
    write_data_entry(tmp_path / "Data_Entry_2017_v2020.csv.gz", nih_rows(2))
    assert find_data_entry(tmp_path) == tmp_path / "Data_Entry_2017_v2020.csv.gz"


def test_find_data_entry_lists_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        find_data_entry(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for name in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv.gz"):
        assert name in message


# --- ImageLocator ----------------------------------------------------------------------------------------


def test_locator_finds_images_in_the_twelve_archive_layout(nih_root: Path) -> None:
    locator = ImageLocator(nih_root)
    assert len(locator.files) == 50
    assert locator.locate("00000003_002.png") == nih_root / "images_001" / "images" / "00000003_002.png"
    assert locator.locate("00000015_000.png") == nih_root / "images_002" / "images" / "00000015_000.png"
    # A directory prefix, as in CheXNet list files, is ignored.
    assert locator.locate("images_009/images/00000015_000.png").name == "00000015_000.png"
    assert "00000015_000.png" in locator.files


def test_locator_single_folder_and_flat_archive_layouts(tmp_path: Path) -> None:
    write_png(tmp_path / "single" / "images" / "00000001_000.png")
    assert ImageLocator(tmp_path / "single").locate("00000001_000.png").parent.name == "images"
    write_png(tmp_path / "flat" / "images_001" / "00000001_000.png")
    write_png(tmp_path / "flat" / "images_012" / "00000002_000.png")
    flat = ImageLocator(tmp_path / "flat")
    assert flat.locate("00000002_000.png") == tmp_path / "flat" / "images_012" / "00000002_000.png"
    assert len(flat.files) == 2


def test_locator_reports_missing_image_named_in_the_csv(nih_root: Path) -> None:
    rows = nih_rows()
    rows.append(("00000099_000.png", "Mass", 0, 99, 50, "F", "PA", 2048, 2048, 0.143, 0.143))
    write_data_entry(nih_root / "Data_Entry_2017_v2020.csv", rows)
    locator = ImageLocator(nih_root)
    assert locator.missing(["00000001_000.png", "00000099_000.png"]) == ["00000099_000.png"]
    with pytest.raises(DataError) as info:
        locator.locate("00000099_000.png")
    assert "00000099_000.png" in str(info.value) and str(nih_root) in str(info.value)


def test_locator_on_a_root_without_images_is_empty_and_says_so(tmp_path: Path) -> None:
    locator = ImageLocator(tmp_path)
    assert len(locator.files) == 0
    with pytest.raises(DataError, match="no images/ or images_NNN/ folder"):
        locator.locate("00000001_000.png")
    with pytest.raises(DataError, match="not a directory"):
        ImageLocator(tmp_path / "absent")


# --- read_list_file --------------------------------------------------------------------------------------


def test_official_list_without_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "test_list.txt"
    path.write_text("00000003_000.png\n00000003_001.png\n\n00000004_000.png")
    images, labels = read_list_file(path)
    assert images == ["00000003_000.png", "00000003_001.png", "00000004_000.png"]
    assert labels is None


def test_chexnet_list_keeps_base_name_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "train_list.txt"
    path.write_text(
        "images_001/images/00000001_000.png 0 1 0 0 0 0 0 0 0 0 0 0 0 0\n"
        "00000002_000.png 1 0 1 0 0 0 0 0 0 0 0 0 0 1\n"
    )
    images, labels = read_list_file(path)
    assert images == ["00000001_000.png", "00000002_000.png"]
    assert labels is not None and labels.dtype == np.int8 and labels.shape == (2, 14)
    assert labels[0].tolist() == parse_finding_labels("Cardiomegaly")
    assert labels[1].tolist() == parse_finding_labels("Atelectasis|Effusion|Hernia")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a_000.png 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nb.png 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nc.png 0 1\n", "line 3"),
        ("a.png\nb.png\nc.png 1\n", "line 3"),
        ("\na.png 0 0 1\n", "line 2"),
        (
            "a.png 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nb.png 0 0 0 0 0 0 0 2 0 0 0 0 0 0\n",
            "line 2: labels must be 0 or 1",
        ),
        ("a.png\nb.png\na.png\n", "line 3: image 'a.png' already listed on line 1"),
        ("\n\n", "no image names"),
    ],
)
def test_bad_list_file_names_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_list_file(path)
    assert str(path) in str(info.value)


# --- splits ----------------------------------------------------------------------------------------------


def test_random_split_is_patient_disjoint_complete_and_close_to_fractions(nih_root: Path) -> None:
    dataset = ChestXray14.from_root(nih_root)
    splits = dataset.patient_split(fractions=(0.6, 0.2, 0.2), seed=3)
    assert list(splits) == ["train", "val", "test"]
    all_images = [image for split in splits.values() for image in split.images]
    assert sorted(all_images) == sorted(dataset.frame["image"])
    assert split_statistics(splits)["patient_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}
    # Patients have at most 4 images: a cut can miss its target by at most 2 images, two cuts by 4.
    for split, share in zip(splits.values(), (0.6, 0.2, 0.2), strict=True):
        assert abs(len(split) - share * 50) <= 4


def test_random_split_is_deterministic_and_seeded(nih_root: Path) -> None:
    dataset = ChestXray14.from_root(nih_root)
    first = dataset.patient_split(seed=7)
    again = ChestXray14.from_root(nih_root).patient_split(seed=7)
    other = dataset.patient_split(seed=8)
    assert {name: split.images for name, split in first.items()} == {
        name: s.images for name, s in again.items()
    }
    assert {name: split.images for name, split in first.items()} != {
        name: s.images for name, s in other.items()
    }


def test_split_carries_labels_and_metadata_from_the_table(nih_root: Path) -> None:
    splits = load_splits(nih_root, split="random", seed=1)
    rows = {row[0]: row for row in nih_rows()}
    for split in splits.values():
        assert split.labels.dtype == np.float32 and split.labels.shape == (len(split), len(FINDINGS))
        for index, image in enumerate(split.images):
            row = rows[image]
            assert split.labels[index].tolist() == parse_finding_labels(row[1])
            assert split.patient_ids[index] == row[3]
            assert split.view_position[index] == row[6]
            assert split.original_size[index].tolist() == [row[7], row[8]]
            assert split.pixel_spacing[index].tolist() == [row[9], row[10]]


def test_bad_fractions_and_too_few_patients(nih_root: Path) -> None:
    frame = read_data_entry(nih_root / "Data_Entry_2017_v2020.csv")
    with pytest.raises(ConfigError, match="sum to 1"):
        ChestXray14(frame).patient_split(fractions=(0.7, 0.2, 0.2))
    with pytest.raises(ConfigError, match="one per split"):
        ChestXray14(frame).patient_split(fractions=(0.5, 0.5))
    with pytest.raises(DataError, match="2 patient"):
        ChestXray14(frame[frame["patient_id"] <= 2]).patient_split(fractions=(0.7, 0.1, 0.2))


def test_every_split_with_a_share_gets_a_patient_even_when_one_patient_dominates(tmp_path: Path) -> None:
    rows = [
        (f"00000001_{k:03d}.png", "No Finding", k, 1, 50, "M", "PA", 2048, 2048, 0.143, 0.143)
        for k in range(40)
    ]
    rows += [(f"0000000{p}_000.png", "Mass", 0, p, 50, "M", "PA", 2048, 2048, 0.143, 0.143) for p in (2, 3)]
    frame = read_data_entry(write_data_entry(tmp_path / "Data_Entry_2017.csv", rows))
    for seed in range(5):
        splits = ChestXray14(frame).patient_split(seed=seed)
        assert all(len(split) > 0 for split in splits.values())


def test_official_split_uses_test_list_and_carves_val_by_patient(nih_root: Path) -> None:
    frame = read_data_entry(nih_root / "Data_Entry_2017_v2020.csv")
    test_images = frame.loc[frame["patient_id"] > 16, "image"].tolist()
    train_val_images = frame.loc[frame["patient_id"] <= 16, "image"].tolist()
    (nih_root / "test_list.txt").write_text("\n".join(test_images))
    (nih_root / "train_val_list.txt").write_text("\n".join(train_val_images))
    splits = official_split(nih_root, val_fraction=0.25, seed=0)
    assert splits["test"].images == test_images
    assert sorted(splits["train"].images + splits["val"].images) == sorted(train_val_images)
    assert not splits["train"].patients & splits["val"].patients
    assert abs(len(splits["val"]) - 0.25 * len(train_val_images)) <= 2
    assert load_splits(nih_root, split="official", val_fraction=0.25)["val"].images == splits["val"].images


def test_official_split_rejects_images_absent_from_the_table(nih_root: Path) -> None:
    (nih_root / "test_list.txt").write_text("00000001_000.png\n00000077_000.png\n")
    (nih_root / "train_val_list.txt").write_text("00000002_000.png\n")
    with pytest.raises(DataError, match="00000077_000.png") as info:
        official_split(nih_root)
    assert "test_list.txt" in str(info.value)


def test_split_from_list_files_labels_from_list_or_table(nih_root: Path) -> None:
    chexnet = nih_root / "train_list.txt"
    chexnet.write_text("images_001/images/00000001_000.png 0 0 0 0 0 0 0 0 0 0 0 0 0 1\n")
    official = nih_root / "test_list.txt"
    official.write_text("00000002_000.png\n00000007_001.png")
    dataset = ChestXray14.from_root(nih_root)
    splits = split_from_list_files({"train": chexnet, "test": official}, dataset)
    # The list's labels win over the table's ("Effusion" for patient 1 follow-up 0).
    assert splits["train"].labels[0].tolist() == parse_finding_labels("Hernia")
    assert splits["test"].labels.tolist() == [parse_finding_labels("Cardiomegaly|Effusion")] * 2
    assert splits["test"].patient_ids.tolist() == [2, 7]
    assert splits["test"].view_position.tolist() == ["PA", "AP"]

    without_table = split_from_list_files({"train": chexnet})
    assert without_table["train"].patient_ids.tolist() == [1]
    assert np.isnan(without_table["train"].pixel_spacing).all()
    with pytest.raises(DataError, match="no labels") as info:
        split_from_list_files({"test": official})
    assert str(official) in str(info.value)


def test_list_without_table_needs_nih_names(tmp_path: Path) -> None:
    path = tmp_path / "train_list.txt"
    path.write_text("scan.png 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
    with pytest.raises(DataError, match="'scan.png' is not an NIH name"):
        split_from_list_files({"train": path})


def test_load_splits_arguments(nih_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown split method"):
        load_splits(nih_root, split="stratified")
    with pytest.raises(ConfigError, match="needs the dataset root"):
        load_splits(split="random")
    with pytest.raises(ConfigError, match="not 'official'"):
        load_splits(nih_root, split="official", lists={"train": tmp_path / "x.txt"})
    with pytest.raises(DataError, match="no Data_Entry table"):
        load_splits(tmp_path / "nih" / "images_001")
    explicit = load_splits(data_entry=nih_root / "Data_Entry_2017_v2020.csv", seed=2)
    assert {k: v.images for k, v in explicit.items()} == {
        k: v.images for k, v in load_splits(nih_root, seed=2).items()
    }


# --- statistics ------------------------------------------------------------------------------------------


def test_statistics_are_nan_safe_and_count_overlap() -> None:
    labels = np.zeros((4, 14), dtype=np.float32)
    labels[0, 0] = 1.0
    labels[1, 0] = np.nan  # unknown: neither positive nor labelled
    labels[:, 13] = np.nan
    train = Split(
        "train",
        ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"],
        labels,
        [1, 1, 2, 3],
    )
    test = Split("test", ["00000003_001.png"], np.ones((1, 14)), [3])
    stats = split_statistics({"train": train, "test": test})
    train_stats = stats["splits"]["train"]
    assert (train_stats.images, train_stats.patients) == (4, 3)
    assert train_stats.percent["Atelectasis"] == pytest.approx(100 / 3)
    assert train_stats.labelled["Atelectasis"] == 3 and train_stats.positives["Atelectasis"] == 1
    assert math.isnan(train_stats.percent["Hernia"])
    assert stats["splits"]["test"].percent["Hernia"] == 100.0
    assert stats["patient_overlap"] == {"train/test": 1}


# --- real data (skipped without ../shared/data) ----------------------------------------------------------


@pytest.fixture(scope="module")
def real_dataset(shared_data: Path) -> ChestXray14:
    """The full 112,120-row Data_Entry table, read once for this module."""
    return ChestXray14.from_root(shared_data / "meta")


@pytest.mark.shared_data
def test_real_chexnet_lists(shared_data: Path) -> None:
    folder = shared_data / "meta" / "chexnet_split"
    splits = split_from_list_files({name: folder / f"{name}_list.txt" for name in ("train", "val", "test")})
    stats = split_statistics(splits)
    assert {name: s.images for name, s in stats["splits"].items()} == {
        "train": 78468,
        "val": 11219,
        "test": 22433,
    }
    assert stats["patient_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}
    train = stats["splits"]["train"]
    # Full precision is kept in the Python API; rounding is for display only.
    assert train.percent["Atelectasis"] == pytest.approx(train.positives["Atelectasis"] / 78468 * 100)
    assert round(train.percent["Atelectasis"], 1) == 10.2 and train.percent["Atelectasis"] != 10.2


@pytest.mark.shared_data
def test_real_chexnet_lists_agree_with_the_table(shared_data: Path, real_dataset: ChestXray14) -> None:
    folder = shared_data / "meta" / "chexnet_split"
    listed = split_from_list_files({"val": folder / "val_list.txt"}, real_dataset)["val"]
    images, labels = read_list_file(folder / "val_list.txt")
    from_table = real_dataset.split("val", images)
    assert listed.patient_ids.tolist() == [int(name.split("_")[0]) for name in images]
    assert np.array_equal(listed.labels, labels)  # the list's own labels are used
    # The CheXNet lists predate the v2020 label revision: a few images (18 of 11,219 here) differ.
    differing = (listed.labels != from_table.labels).any(axis=1).sum()
    assert 0 < differing < 0.005 * len(images)


@pytest.mark.shared_data
def test_real_official_split(shared_data: Path, real_dataset: ChestXray14) -> None:
    splits = official_split(shared_data / "meta", dataset=real_dataset)
    assert len(splits["train"]) + len(splits["val"]) == 86524
    assert len(splits["test"]) == 25596
    assert abs(len(splits["val"]) - 8652) <= 10
    assert split_statistics(splits)["patient_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}


@pytest.mark.shared_data
def test_real_random_split(real_dataset: ChestXray14) -> None:
    splits = real_dataset.patient_split(seed=0)
    sizes = [len(split) for split in splits.values()]
    assert sum(sizes) == 112120
    for size, share in zip(sizes, (0.7, 0.1, 0.2), strict=True):
        assert abs(size - share * 112120) <= 100
    stats = split_statistics(splits)
    assert sum(s.patients for s in stats["splits"].values()) == 30805
    assert set(stats["patient_overlap"].values()) == {0}


def test_split_defaults_keep_the_nih_shape() -> None:
    split = Split("train", ["00000001_000.png"], np.zeros((1, 14)), [1])
    assert split.label_names == FINDINGS and split.paths is None
    assert split.datasets.dtype == object and split.datasets.tolist() == ["nih"]


def test_split_in_another_label_space() -> None:
    names = ("Effusion", "Lung_Opacity", "Support_Devices")
    split = Split(
        "val",
        ["a.jpg", "b.jpg"],
        np.array([[1.0, np.nan, 0.0], [0.0, 1.0, np.nan]]),
        [7, 8],
        label_names=list(names),
        paths=[Path("/x/a.jpg"), "/x/b.jpg"],
        datasets=["chexpert", "padchest"],
    )
    assert split.label_names == names and split.paths == ["/x/a.jpg", "/x/b.jpg"]
    stats = split_statistics({"val": split})["splits"]["val"]
    assert list(stats.percent) == list(names)
    assert stats.positives == {"Effusion": 1, "Lung_Opacity": 1, "Support_Devices": 0}
    assert stats.labelled == {"Effusion": 2, "Lung_Opacity": 1, "Support_Devices": 1}
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        Split("val", ["a.jpg", "b.jpg"], np.zeros((2, 14)), [7, 8], label_names=names)
    with pytest.raises(ValueError, match="1 paths for 2 images"):
        Split("val", ["a.jpg", "b.jpg"], np.zeros((2, 3)), [7, 8], label_names=names, paths=["/x/a.jpg"])
    with pytest.raises(ValueError, match="not a finding"):
        Split("val", ["a.jpg"], np.zeros((1, 1)), [7], label_names=("Pleural Effusion",))
