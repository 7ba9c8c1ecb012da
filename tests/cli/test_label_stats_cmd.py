"""``cxreader data stats --dataset chexpert|mimic|padchest``: JSON shape, table, one-line errors, real tables."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import cxreader.cli.__main__ as cli
from cxreader.data.chexpert import CHEXPERT_LABELS

CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
CHEXPERT_ROWS = (
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,"
    "-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,1.0,1.0,,,-1.0,,,,,,1.0,",
)
VALID_ROWS = (
    "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,0.0,1.0,0.0,1.0,0.0,"
    "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
)
MIMIC_FILES = {
    "mimic-cxr-2.0.0-chexpert.csv": (
        "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
        "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,"
        "Support Devices\n10000032,50414267,,1.0,,,,,,,,,,,,\n10000033,50414268,,0.0,,,,,,,,,,,,\n"
    ),
    "mimic-cxr-2.0.0-metadata.csv": (
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
        "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
        "PatientOrientationCodeSequence_CodeMeaning\n"
        "d1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
        "postero-anterior,Erect\n"
        "d2,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
        "lateral,Erect\n"
        "d3,10000033,50414268,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
        "postero-anterior,Erect\n"
    ),
    "mimic-cxr-2.0.0-split.csv": (
        "dicom_id,study_id,subject_id,split\nd1,50414267,10000032,train\nd2,50414267,10000032,train\n"
        "d3,50414268,10000033,validate\n"
    ),
}
PADCHEST_CSV = (
    ",ImageID,ImageDir,PatientID,Projection,Labels,Localizations\n"
    "0,a.png,0,p1,PA,['normal'],[]\n"
    "1,b.png,0,p1,L,\"['cardiomegaly', 'pleural effusion']\",[]\n"
    "2,c.png,1,p2,AP,['cardiomegaly',[]\n"
)
KINDS = ("positive", "negative", "uncertain", "unmentioned")


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run the real ``cxreader`` main with the stats command registered; return (code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cxreader.cli.stats_cmd",))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["data", "stats", *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def chexpert_dir(tmp_path: Path) -> Path:
    (tmp_path / "train.csv").write_text(CHEXPERT_HEADER + "\n" + "\n".join(CHEXPERT_ROWS) + "\n")
    (tmp_path / "valid.csv").write_text(CHEXPERT_HEADER + "\n" + "\n".join(VALID_ROWS) + "\n")
    return tmp_path


def check_shape(result: dict, dataset: str, splits: list[str]) -> None:
    assert set(result) == {"dataset", "splits"} and result["dataset"] == dataset
    assert list(result["splits"]) == splits
    for split in result["splits"].values():
        assert set(split) == {"images", "patients", "frontal", "views", "labels"}
        assert sum(split["views"].values()) == split["images"]
        for counts in split["labels"].values():
            assert set(KINDS) <= set(counts)
            assert sum(counts[kind] for kind in KINDS) == split["images"]


def test_chexpert_json(run_cli, chexpert_dir: Path) -> None:
    code, out, err = run_cli("--dataset", "chexpert", "--data", str(chexpert_dir), "--json")
    assert code == 0 and not err
    result = json.loads(out)
    check_shape(result, "chexpert", ["train", "valid"])
    train = result["splits"]["train"]
    assert (train["images"], train["patients"], train["frontal"]) == (3, 2, 2)
    assert list(train["labels"]) == list(CHEXPERT_LABELS)
    cardiomegaly = train["labels"]["Cardiomegaly"]
    assert {kind: cardiomegaly[kind] for kind in KINDS} == {
        "positive": 1,
        "negative": 0,
        "uncertain": 1,
        "unmentioned": 1,
    }
    assert cardiomegaly["positive_percent"] == 33.3
    assert result["splits"]["valid"]["labels"]["Cardiomegaly"]["negative"] == 1
    csv_out = run_cli("--dataset", "chexpert", "--csv", str(chexpert_dir / "train.csv"), "--json")[1]
    assert json.loads(csv_out)["splits"] == {"train": train}


def test_chexpert_table(run_cli, chexpert_dir: Path) -> None:
    code, out, _ = run_cli("--dataset", "chexpert", "--data", str(chexpert_dir))
    assert code == 0
    assert "chexpert train: 3 images, 2 patients, 2 frontal" in out
    line = next(line for line in out.splitlines() if line.startswith("Cardiomegaly"))
    assert line.split() == ["Cardiomegaly", "1", "(33.3%)", "0", "(0.0%)", "1", "(33.3%)", "1", "(33.3%)"]


def test_mimic_json(run_cli, tmp_path: Path) -> None:
    for name, text in MIMIC_FILES.items():
        (tmp_path / name).write_text(text)
    code, out, _ = run_cli("--dataset", "mimic", "--data", str(tmp_path), "--json")
    assert code == 0
    result = json.loads(out)
    check_shape(result, "mimic", ["train", "validate"])
    assert (result["splits"]["train"]["images"], result["splits"]["train"]["frontal"]) == (2, 1)
    assert result["splits"]["train"]["labels"]["Cardiomegaly"]["positive"] == 2
    assert result["splits"]["validate"]["labels"]["Cardiomegaly"]["negative"] == 1
    labels_file = str(tmp_path / "mimic-cxr-2.0.0-chexpert.csv")
    assert json.loads(run_cli("--dataset", "mimic", "--csv", labels_file, "--json")[1]) == result


def test_padchest_json_notes_malformed_rows(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "padchest.csv"
    path.write_text(PADCHEST_CSV)
    code, out, err = run_cli("--dataset", "padchest", "--csv", str(path), "--json")
    assert code == 0 and "1 row(s) with a malformed Labels cell" in err
    result = json.loads(out)
    check_shape(result, "padchest", ["all"])
    split = result["splits"]["all"]
    assert (split["images"], split["patients"], split["frontal"]) == (3, 2, 2)
    assert {kind: split["labels"]["cardiomegaly"][kind] for kind in KINDS} == {
        "positive": 1,
        "negative": 0,
        "uncertain": 0,
        "unmentioned": 2,
    }
    assert "negative and uncertain are always 0" in run_cli("--dataset", "padchest", "--csv", str(path))[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--dataset", "chexpert"), "give either --data DIR or --csv FILE"),
        (("--dataset", "padchest", "--data", "{tmp}", "--csv", "x.csv"), "give either --data DIR or --csv"),
        (("--dataset", "mimic", "--split", "official", "--data", "{tmp}"), "--split and --list are for"),
        (("--dataset", "mimic", "--csv", "a.csv", "--csv", "b.csv"), "takes one --csv"),
        (("--dataset", "mimic", "--data", "{tmp}"), "MIMIC-CXR-JPG table(s) not found"),
        (("--dataset", "padchest", "--data", "{tmp}"), "no PadChest table"),
        (("--dataset", "chexpert", "--csv", "{tmp}/bad.csv"), "missing columns 'Frontal/Lateral', 'AP/PA'"),
    ],
)
def test_errors_are_one_line(run_cli, tmp_path: Path, argv: tuple[str, ...], message: str) -> None:
    (tmp_path / "bad.csv").write_text("Path,Sex,Age," + ",".join(CHEXPERT_LABELS) + "\n")
    code, out, err = run_cli(*(arg.format(tmp=tmp_path) for arg in argv))
    assert code == 2 and not out
    assert err.startswith("cxreader: error:") and message in err and err.count("\n") == 1


def test_nih_csv_reads_a_data_entry_table(run_cli, tiny_nih: Path) -> None:
    by_data = run_cli("--data", str(tiny_nih), "--json")
    by_csv = run_cli("--dataset", "nih", "--csv", str(tiny_nih / "Data_Entry_2017_v2020.csv"), "--json")
    assert by_data[0] == by_csv[0] == 0 and by_csv[1] == by_data[1]


@pytest.mark.shared_data
def test_real_chexpert_train(run_cli, shared_data: Path) -> None:
    path = shared_data / "meta" / "chexpert_train.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    start = time.perf_counter()
    code, out, _ = run_cli("--dataset", "chexpert", "--csv", str(path), "--json")
    seconds = time.perf_counter() - start
    assert code == 0
    result = json.loads(out)
    check_shape(result, "chexpert", ["train"])
    train = result["splits"]["train"]
    assert train["images"] == 223_414
    assert (train["patients"], train["frontal"]) == (64_540, 191_027)
    # Irvin et al. 2019, Table 1 (training set): Cardiomegaly.
    cardiomegaly = train["labels"]["Cardiomegaly"]
    assert (cardiomegaly["positive"], cardiomegaly["uncertain"], cardiomegaly["negative"]) == (
        27_000,
        8_087,
        11_116,
    )
    assert train["labels"]["Pleural Effusion"]["positive"] == 86_187
    assert train["views"] == {"AP": 161_590, "Lateral": 32_387, "PA": 29_420, "LL": 16, "RL": 1}
    print(f"chexpert train: {train['images']} images, {train['patients']} patients, in {seconds:.1f} s")


@pytest.mark.shared_data
def test_real_padchest_table(run_cli, shared_data: Path) -> None:
    path = shared_data / "meta" / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    code, out, _ = run_cli("--dataset", "padchest", "--csv", str(path), "--json")
    assert code == 0
    table = json.loads(out)["splits"]["all"]
    assert (table["images"], table["patients"], table["frontal"]) == (160_861, 67_625, 110_633)
    assert table["views"] == {
        "PA": 91_728,
        "L": 49_579,
        "AP_horizontal": 14_346,
        "AP": 4_559,
        "COSTAL": 630,
        "EXCLUDE": 11,
        "UNK": 8,
    }
    assert table["labels"]["cardiomegaly"]["positive"] == 15_022
    assert table["labels"]["pleural effusion"]["positive"] == 9_853
    assert table["labels"]["normal"]["positive"] == 50_616
    assert table["frontal"] == table["views"]["PA"] + table["views"]["AP"] + table["views"]["AP_horizontal"]
