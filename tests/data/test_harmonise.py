"""Harmonised labels (CheXpert, MIMIC-CXR-JPG, PadChest, NIH): uncertainty policies, label maps, NaN for
labels a dataset does not define, the real PadChest and CheXpert tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxreader.data.chexpert import CHEXPERT_LABELS, read_chexpert
from cxreader.data.harmonise import patient_assignment
from cxreader.data.label_maps import (
    CHEXPERT_UNMAPPED,
    DATASET_LABEL_MAPS,
    DATASETS,
    DEFINED_LABELS,
    PADCHEST_SOURCES,
    UNCERTAINTY_POLICIES,
    UncertaintyPolicy,
    dataset_label_space,
    harmonised_labels,
    unmapped_labels,
)
from cxreader.data.mimic import LABELS_HEADER, MIMIC_LABELS
from cxreader.data.padchest import read_padchest
from cxreader.errors import ConfigError, DataError
from cxreader.labels import FINDINGS, HARMONISED_LABELS, UnknownFindingError

CODED = np.array([1.0, 0.0, -1.0, np.nan])
NAN = math.nan


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (UncertaintyPolicy("ignore"), [1.0, 0.0, NAN, 0.0]),
        (UncertaintyPolicy("ones"), [1.0, 0.0, 1.0, 0.0]),
        (UncertaintyPolicy("zeros"), [1.0, 0.0, 0.0, 0.0]),
        (UncertaintyPolicy("soft"), [1.0, 0.0, 0.5, 0.0]),
        (UncertaintyPolicy("soft", 0.3), [1.0, 0.0, 0.3, 0.0]),
    ],
)
def test_policies_give_the_stated_targets(policy: UncertaintyPolicy, expected: list[float]) -> None:
    targets = policy.apply(CODED)
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, np.asarray(expected, dtype=np.float32))


def test_policy_applies_to_a_matrix() -> None:
    values = np.array([[1.0, -1.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(UncertaintyPolicy("ones").apply(values), [[1, 1], [0, 0]])


@pytest.mark.parametrize(
    ("text", "name", "soft"),
    [("ignore", "ignore", 0.5), ("ones", "ones", 0.5), (" Zeros ", "zeros", 0.5), ("soft", "soft", 0.5)]
    + [("soft=0.3", "soft", 0.3), ("soft = 0.75", "soft", 0.75)],
)
def test_parse(text: str, name: str, soft: float) -> None:
    assert UncertaintyPolicy.parse(text) == UncertaintyPolicy(name, soft)


@pytest.mark.parametrize(
    "text",
    ["", "u-ones", "maybe", "soft=0", "soft=1", "soft=1.5", "soft=-0.2", "soft=x", "soft=nan", "ones=0.3"],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        UncertaintyPolicy.parse(text)


def test_policy_json_round_trip() -> None:
    policy = UncertaintyPolicy.parse("soft=0.25")
    assert policy.to_json() == {"name": "soft", "soft_value": 0.25}
    assert UncertaintyPolicy.from_json(policy.to_json()) == policy
    assert UncertaintyPolicy().to_json() == {"name": "ignore", "soft_value": 0.5}
    assert set(UNCERTAINTY_POLICIES) == {"ignore", "ones", "zeros", "soft"}


def test_policy_rejects_a_value_outside_the_coding() -> None:
    with pytest.raises(ValueError, match="2.0"):
        UncertaintyPolicy().apply(np.array([1.0, 2.0]))


# --- label maps -----------------------------------------------------------------------------------------------


def test_every_chexpert_observation_is_mapped_or_listed_unmapped() -> None:
    mapped = set(DATASET_LABEL_MAPS["chexpert"])
    assert mapped | set(CHEXPERT_UNMAPPED) == set(CHEXPERT_LABELS)
    assert not mapped & set(CHEXPERT_UNMAPPED)
    assert DATASET_LABEL_MAPS["mimic"] == DATASET_LABEL_MAPS["chexpert"]
    assert set(MIMIC_LABELS) == set(LABELS_HEADER[2:])
    assert DATASET_LABEL_MAPS["chexpert"]["Pleural Effusion"] == "Effusion"
    assert len(DEFINED_LABELS["chexpert"]) == 12


def test_targets_are_harmonised_labels() -> None:
    assert set(DATASETS) == set(DATASET_LABEL_MAPS) == set(DEFINED_LABELS)
    for dataset, mapping in DATASET_LABEL_MAPS.items():
        assert set(mapping.values()) <= set(HARMONISED_LABELS)
        assert DEFINED_LABELS[dataset] == tuple(
            label for label in HARMONISED_LABELS if label in mapping.values()
        )
    assert DEFINED_LABELS["nih"] == FINDINGS
    assert set(DEFINED_LABELS["padchest"]) == set(HARMONISED_LABELS) - {"Lung_Opacity", "Lung_Lesion"}
    names = [name for sources in PADCHEST_SOURCES.values() for name in sources]
    assert len(names) == len(set(names))  # one target per PadChest name


def test_dataset_label_space() -> None:
    assert dataset_label_space(["nih"]) == FINDINGS
    assert dataset_label_space(["chexpert"]) == DEFINED_LABELS["chexpert"]
    assert dataset_label_space(["mimic", "nih"]) == HARMONISED_LABELS
    assert dataset_label_space(["padchest", "nih"]) == FINDINGS + (
        "Enlarged_Cardiomediastinum",
        "Fracture",
        "Support_Devices",
    )
    with pytest.raises(ConfigError, match="unknown dataset 'openi'"):
        dataset_label_space(["openi"])
    with pytest.raises(ConfigError):
        dataset_label_space([])


# --- harmonised labels ----------------------------------------------------------------------------------------


def chexpert_frame(tmp_path: Path) -> pd.DataFrame:
    rows = [
        # Cardiomegaly uncertain, Pleural Effusion positive, Edema negative, the rest unmentioned
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,,,-1.0,,,0.0,,,,,1.0,,,",
        "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Male,50,Frontal,PA,1.0,,,,,,,,,,,,,",
    ]
    path = tmp_path / "train.csv"
    path.write_text(
        "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS) + "\n" + "\n".join(rows)
    )
    return read_chexpert(path)


def test_chexpert_labels_and_undefined_nan(tmp_path: Path) -> None:
    frame = chexpert_frame(tmp_path)
    space = ("Cardiomegaly", "Effusion", "Edema", "Mass", "Lung_Opacity", "Infiltration")
    ones = harmonised_labels("chexpert", frame, space, UncertaintyPolicy("ones"))
    np.testing.assert_array_equal(ones, [[1, 1, 0, NAN, 0, NAN], [0, 0, 0, NAN, 0, NAN]])
    ignore = harmonised_labels("chexpert", frame, space)
    np.testing.assert_array_equal(ignore[0], [NAN, 1, 0, NAN, 0, NAN])
    soft = harmonised_labels("mimic", frame, space, UncertaintyPolicy("soft", 0.25))
    assert soft[0, 0] == 0.25 and soft.dtype == np.float32
    assert harmonised_labels("chexpert", frame).shape == (2, len(HARMONISED_LABELS))


def test_a_row_that_mentions_nothing_is_unknown(tmp_path: Path) -> None:
    frame = chexpert_frame(tmp_path)
    frame.loc[1, "No Finding"] = np.nan  # row 2 now mentions nothing at all
    for policy in UNCERTAINTY_POLICIES:
        labels = harmonised_labels("chexpert", frame, policy=UncertaintyPolicy(policy))
        assert np.isnan(labels[1]).all() and not np.isnan(labels[0, :3]).all()


def test_coded_maps_are_one_to_one() -> None:
    for dataset in ("nih", "chexpert", "mimic"):
        targets = list(DATASET_LABEL_MAPS[dataset].values())
        assert len(targets) == len(set(targets))


def padchest_frame(tmp_path: Path) -> pd.DataFrame:
    header = "ImageID,ImageDir,PatientID,Projection,Labels"
    rows = [
        "a.png,0,p1,PA,\"['pleural effusion', 'laminar atelectasis', 'COPD signs']\"",
        "b.png,0,p1,PA,['normal']",
        "c.png,0,p2,L,\"['NSG tube', 'callus rib fracture']\"",
        "d.png,0,p3,PA,['unchanged']",
        "e.png,0,p3,PA,['']",
        "f.png,0,p4,PA,",
        "g.png,1,p4,PA,\"['exclude', 'unchanged']\"",
        "h.png,1,p5,AP,\"['unchanged', 'pneumonia']\"",
    ]
    path = tmp_path / "padchest.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return read_padchest(path)


def test_padchest_absent_defined_label_is_negative_and_undefined_nan(tmp_path: Path) -> None:
    frame = padchest_frame(tmp_path)
    space = ("Effusion", "Atelectasis", "Pneumonia", "Lung_Opacity", "Fracture", "Support_Devices")
    labels = harmonised_labels("padchest", frame, space)
    np.testing.assert_array_equal(labels[0], [1, 1, 0, NAN, 0, 0])
    np.testing.assert_array_equal(labels[1], [0, 0, 0, NAN, 0, 0])  # 'normal': every defined label negative
    np.testing.assert_array_equal(labels[2], [0, 0, 0, NAN, 1, 1])
    assert np.isnan(labels[3:7]).all()  # unchanged only, empty, malformed, exclude + unchanged: unknown
    np.testing.assert_array_equal(labels[7], [0, 0, 1, NAN, 0, 0])
    assert unmapped_labels("padchest", frame) == {"unchanged": 3, "COPD signs": 1, "exclude": 1, "normal": 1}


def test_nih_frame_maps_to_itself() -> None:
    frame = pd.DataFrame(np.eye(14, dtype=np.int64)[:3], columns=list(FINDINGS))
    labels = harmonised_labels("nih", frame, ("Cardiomegaly", "Atelectasis", "Fracture"))
    np.testing.assert_array_equal(labels, [[0, 1, NAN], [1, 0, NAN], [0, 0, NAN]])
    assert unmapped_labels("nih", frame) == {}


def test_bad_label_space_and_dataset(tmp_path: Path) -> None:
    frame = chexpert_frame(tmp_path)
    with pytest.raises(UnknownFindingError):
        harmonised_labels("chexpert", frame, ("Pleural Effusion",))
    with pytest.raises(ConfigError):
        harmonised_labels("openi", frame)
    assert unmapped_labels("chexpert", frame) == {"No Finding": 1, "Pleural Other": 0}


def test_patient_assignment_keeps_patients_together() -> None:
    patients = np.repeat(np.arange(50), 3)[::-1]
    slots = patient_assignment(patients, (0.7, 0.1, 0.2), seed=3, source="x")
    for patient in range(50):
        assert len(set(slots[patients == patient])) == 1
    assert np.bincount(slots).tolist() == [105, 15, 30]
    assert (patient_assignment(patients, (0.7, 0.1, 0.2), seed=3, source="x") == slots).all()
    with pytest.raises(DataError, match="2 patient"):
        patient_assignment(np.array([1, 2]), (0.7, 0.1, 0.2), seed=0, source="x")


# --- the real tables ------------------------------------------------------------------------------------------

PADCHEST_TABLE = "meta/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"


@pytest.mark.shared_data
def test_real_padchest_mapping(shared_data: Path) -> None:
    path = shared_data / PADCHEST_TABLE
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    frame = read_padchest(path)
    listed = {name for labels in frame["labels"] if labels for name in labels}
    assert len(listed) == 193
    mapped = set(DATASET_LABEL_MAPS["padchest"])
    assert mapped <= listed, f"mapped names not in the table: {sorted(mapped - listed)}"
    unmapped = unmapped_labels("padchest", frame)
    assert set(unmapped) == listed - mapped and len(unmapped) == 127
    assert list(unmapped)[:3] == ["normal", "COPD signs", "unchanged"] and unmapped["normal"] == 50_616
    for name in ("aortic elongation", "scoliosis", "pseudonodule", "subcutaneous emphysema", "sternotomy"):
        assert name in unmapped
    assert not any("fracture" in name for name in unmapped)
    labels = harmonised_labels("padchest", frame)
    uninformative = np.isnan(labels).all(axis=1)
    assert int(uninformative.sum()) == 6302
    positives = dict(zip(HARMONISED_LABELS, (labels == 1).sum(axis=0).tolist(), strict=True))
    assert positives["Cardiomegaly"] == 15_022 and positives["Hernia"] == 2363
    assert positives["Effusion"] == 9989 and positives["Fracture"] == 4631
    assert positives["Support_Devices"] == 14_283 and positives["Infiltration"] == 18_754
    assert positives["Lung_Opacity"] == positives["Lung_Lesion"] == 0
    assert np.isnan(labels[:, HARMONISED_LABELS.index("Lung_Opacity")]).all()
    defined = [HARMONISED_LABELS.index(label) for label in DEFINED_LABELS["padchest"]]
    assert not np.isnan(labels[~uninformative][:, defined]).any()


@pytest.mark.shared_data
def test_real_chexpert_policies(shared_data: Path) -> None:
    path = shared_data / "meta" / "chexpert_train.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    frame = read_chexpert(path)
    effusion = HARMONISED_LABELS.index("Effusion")
    ones = harmonised_labels("chexpert", frame, policy=UncertaintyPolicy("ones"))
    ignore = harmonised_labels("chexpert", frame)
    assert int((ones[:, effusion] == 1).sum()) == 86_187 + 11_628
    silent = np.isnan(ones).all(axis=1)
    assert int(silent.sum()) == 12  # rows with all 14 observations empty: unknown
    assert int((ignore[:, effusion] == 1).sum()) == 86_187
    assert int(np.isnan(ignore[~silent, effusion]).sum()) == 11_628
    for label in ("Mass", "Nodule", "Infiltration", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"):
        assert np.isnan(ones[:, HARMONISED_LABELS.index(label)]).all()
    assert unmapped_labels("chexpert", frame) == {"No Finding": 22_381, "Pleural Other": 3523}
