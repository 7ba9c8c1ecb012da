"""``cxreader data stats``: the Table 1 of the CheXNet lists, JSON output, errors as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cxreader.cli.__main__ as cli
from cxreader.labels import FINDINGS, display_name

#: "Table 1" of /work/shared/data/README.md: finding -> (train %, val %, test %) of the CheXNet lists.
README_TABLE = {
    "Atelectasis": (10.2, 10.0, 10.8),
    "Cardiomegaly": (2.5, 2.1, 2.6),
    "Effusion": (11.8, 11.5, 12.3),
    "Infiltration": (17.7, 18.0, 17.6),
    "Mass": (5.1, 5.6, 5.1),
    "Nodule": (5.6, 5.5, 6.0),
    "Pneumonia": (1.2, 1.2, 1.1),
    "Pneumothorax": (4.7, 4.5, 4.9),
    "Consolidation": (4.2, 4.0, 4.3),
    "Edema": (2.2, 1.8, 1.8),
    "Emphysema": (2.3, 1.9, 2.3),
    "Fibrosis": (1.5, 1.5, 1.6),
    "Pleural_Thickening": (2.9, 3.3, 3.3),
    "Hernia": (0.2, 0.4, 0.2),
}
HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run the real ``cxreader`` main with this command module registered; return (code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("cxreader.cli.stats_cmd",))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["data", "stats", *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def parse_table(text: str) -> dict[str, list[str]]:
    """Rows of the printed table: label -> cells (labels may contain one space, cells never do)."""
    rows = {}
    for line in text.splitlines():
        for name in (*(display_name(f) for f in FINDINGS), "images", "patients", "finding"):
            if line.startswith(name + " "):
                rows[name] = line[len(name) :].split()
    return rows


def labels_line(name: str, positives: tuple[str, ...]) -> str:
    return name + " " + " ".join("1" if finding in positives else "0" for finding in FINDINGS)


@pytest.fixture
def chexnet_lists(tmp_path: Path) -> dict[str, Path]:
    """Tiny CheXNet-format lists with known prevalences: train 1/4 Atelectasis, val 1/3 Hernia, test 2/2 Mass."""
    content = {
        "train": [
            labels_line("images_001/images/00000001_000.png", ("Atelectasis",)),
            labels_line("00000001_001.png", ()),
            labels_line("00000002_000.png", ("Effusion", "Pleural_Thickening")),
            labels_line("00000003_000.png", ()),
        ],
        "val": [
            labels_line("00000004_000.png", ("Hernia",)),
            labels_line("00000005_000.png", ()),
            labels_line("00000005_001.png", ()),
        ],
        "test": [labels_line("00000006_000.png", ("Mass",)), labels_line("00000002_001.png", ("Mass",))],
    }
    paths = {}
    for name, lines in content.items():
        paths[name] = tmp_path / f"{name}_list.txt"
        paths[name].write_text("\n".join(lines))
    return paths


def list_args(paths: dict[str, Path]) -> list[str]:
    return [arg for name, path in paths.items() for arg in ("--list", f"{name}={path}")]


def test_table_of_generated_lists(run_cli, chexnet_lists: dict[str, Path]) -> None:
    code, out, err = run_cli(*list_args(chexnet_lists))
    assert code == 0, err
    rows = parse_table(out)
    assert rows["finding"] == ["train", "%", "val", "%", "test", "%"]
    assert rows["Atelectasis"] == ["25.0", "0.0", "0.0"]
    assert rows["Pleural Thickening"] == ["25.0", "0.0", "0.0"]
    assert rows["Hernia"] == ["0.0", "33.3", "0.0"]
    assert rows["Mass"] == ["0.0", "0.0", "100.0"]
    assert rows["images"] == ["4", "3", "2"]
    assert rows["patients"] == ["3", "2", "2"]
    # Patient 2 is in train and test: the overlap line must say so.
    assert "train/val 0, train/test 1, val/test 0" in out and "WARNING" in out


def test_json_of_generated_lists(run_cli, chexnet_lists: dict[str, Path]) -> None:
    code, out, _ = run_cli(*list_args(chexnet_lists), "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"splits", "patient_overlap"}
    assert result["patient_overlap"] == {"train/val": 0, "train/test": 1, "val/test": 0}
    assert result["splits"]["val"]["images"] == 3 and result["splits"]["val"]["patients"] == 2
    assert result["splits"]["val"]["percent"]["Hernia"] == 33.3
    assert list(result["splits"]["train"]["percent"]) == list(FINDINGS)
    assert set(result["splits"]["train"]) == {"images", "patients", "percent"}


def test_random_split_of_a_generated_table(run_cli, tmp_path: Path) -> None:
    rows = [
        f"{p:08d}_{k:03d}.png,{'Nodule' if p % 3 == 0 else 'No Finding'},{k},{p},40,M,PA,2048,2048,0.143,0.143"
        for p in range(1, 31)
        for k in range(1 + p % 2)
    ]
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join([HEADER, *rows]))
    code, out, _ = run_cli("--data", str(tmp_path), "--seed", "4", "--json")
    assert code == 0
    result = json.loads(out)
    assert sum(split["images"] for split in result["splits"].values()) == len(rows)
    assert sum(split["patients"] for split in result["splits"].values()) == 30
    assert set(result["patient_overlap"].values()) == {0}
    assert run_cli("--data", str(tmp_path), "--seed", "4", "--json")[1] == out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "give --data DIR"),
        (("--split", "official", "--list", "train=a.txt"), "either --split or --list"),
        (("--list", "train=a.txt", "--list", "train=b.txt"), "given twice"),
        (("--data", "{tmp}"), "no Data_Entry table found"),
    ],
)
def test_errors_are_one_line(run_cli, tmp_path: Path, argv: tuple[str, ...], message: str) -> None:
    code, out, err = run_cli(*(arg.format(tmp=tmp_path) for arg in argv))
    assert code == 2 and not out
    assert err.startswith("cxreader: error:") and message in err and err.count("\n") == 1


def test_label_less_list_without_table_names_the_file(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "test_list.txt"
    path.write_text("00000001_000.png")
    code, _, err = run_cli("--list", f"test={path}")
    assert code == 2 and str(path) in err and "no labels" in err


def test_malformed_list_argument_is_a_usage_error(run_cli) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli("--list", "train_list.txt")
    assert info.value.code == 2


@pytest.mark.shared_data
def test_chexnet_lists_reproduce_readme_table(run_cli, shared_data: Path) -> None:
    folder = shared_data / "meta" / "chexnet_split"
    code, out, err = run_cli(
        *list_args({name: folder / f"{name}_list.txt" for name in ("train", "val", "test")})
    )
    assert code == 0, err
    rows = parse_table(out)
    for finding, expected in README_TABLE.items():
        assert [float(cell) for cell in rows[display_name(finding)]] == list(expected), finding
        assert all(len(cell.split(".")[1]) == 1 for cell in rows[display_name(finding)])
    assert rows["images"] == ["78468", "11219", "22433"]
    assert "train/val 0, train/test 0, val/test 0" in out


@pytest.mark.shared_data
def test_official_split_json_needs_no_images(run_cli, shared_data: Path) -> None:
    code, out, err = run_cli("--data", str(shared_data / "meta"), "--split", "official", "--json")
    assert code == 0, err
    result = json.loads(out)
    splits = result["splits"]
    assert splits["train"]["images"] + splits["val"]["images"] == 86524
    assert splits["test"]["images"] == 25596
    assert result["patient_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}
    for split in splits.values():
        assert all(value == round(value, 1) for value in split["percent"].values())
