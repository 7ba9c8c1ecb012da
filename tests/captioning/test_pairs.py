"""Caption pairs: merging synthetic instances, synthetic and OpenI pairs, the PAIRS file and its errors."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxreader.captioning.pairs import (
    PAIRS_COLUMNS,
    CaptionPair,
    merge_instances,
    mesh_sequences,
    openi_pairs,
    read_pairs,
    select_split,
    synthetic_pairs,
    write_pairs,
)
from cxreader.data.openi import load_openi
from cxreader.data.sidecars import read_synthetic_findings
from cxreader.errors import DataError
from cxreader.vocabulary import to_token, tokens_to_annotation


def _row(
    side: str, zone: str = "lower", severity: str = "moderate", size_cm: float = 8.0, organ: str = "pleura"
):
    return {"side": side, "zone": zone, "organ": organ, "severity": severity, "size_cm": size_cm}


def test_merge_right_and_left_instances_into_one_bilateral_annotation():
    effusion = merge_instances("Effusion", [_row("right"), _row("left", severity="severe")])
    assert effusion.side == "bilateral" and effusion.location == ("lower lobe",)
    assert effusion.severity == "severe"  # the highest
    assert effusion.size is None  # an effusion's box side is not a MeSH size
    nodules = merge_instances(
        "Nodule",
        [_row("right", "upper", "mild", 1.4, "lung"), _row("right", "lower", "mild", 2.1, "lung")],
    )
    assert nodules.side == "right" and nodules.location == ()  # zones differ: none is named
    assert (nodules.size, nodules.number) == ("small", "multiple")
    heart = merge_instances("Cardiomegaly", [_row("midline", "cardiac", "mild", 16.0, "heart")])
    assert heart.location == () and heart.organ == "heart" and heart.side == "midline"
    with pytest.raises(ValueError, match="no instance"):
        merge_instances("Mass", [])


def test_synthetic_pairs_follow_the_sidecar_and_the_split_lists(synthetic_dir: Path):
    pairs = synthetic_pairs(synthetic_dir)
    sidecar = read_synthetic_findings(synthetic_dir / "synthetic_findings.csv")
    instances = defaultdict(list)
    for row in sidecar.to_dict("records"):
        instances[(row["image"], row["finding"])].append(row)
    assert len(pairs) == len(instances)  # one pair per (image, finding)
    test_images = set((synthetic_dir / "test_list.txt").read_text().split())
    for pair in pairs:
        assert pair.image.is_file() and pair.source == "synthetic"
        assert pair.tokens[0] == to_token(pair.finding)
        assert (pair.split == "test") == (pair.image.name in test_images)
        rows = instances[(pair.image.name, pair.finding)]
        annotation = tokens_to_annotation(pair.tokens)
        assert annotation.severity == rows[0]["severity"]
        if len(rows) == 1:
            assert annotation.side == rows[0]["side"]
    assert {pair.split for pair in pairs} <= {"train", "val", "test"}


def test_synthetic_pairs_need_the_sidecar(tmp_path: Path):
    with pytest.raises(DataError, match="synthetic_findings.csv"):
        synthetic_pairs(tmp_path)


def test_pairs_file_round_trip(tmp_path: Path, synthetic_dir: Path):
    pairs = synthetic_pairs(synthetic_dir)
    outside = CaptionPair(
        image=tmp_path / "elsewhere" / "x.png",
        finding=None,
        tokens=("calcified_granuloma", "lung"),
        split="train",
        source="openi",
    )
    path = tmp_path / "run" / "pairs.csv"
    assert write_pairs([*pairs, outside], path) == len(pairs) + 1
    header = path.read_text().splitlines()[0]
    assert tuple(header.split(",")) == PAIRS_COLUMNS
    back = read_pairs(path)
    assert [(p.image.resolve(), p.finding, p.tokens, p.split) for p in back] == [
        (p.image.resolve(), p.finding, p.tokens, p.split) for p in [*pairs, outside]
    ]
    # Images under the file's folder are written relative to it, so the folder can move.
    inside = tmp_path / "run" / "images" / "a.png"
    write_pairs([CaptionPair(inside, "Mass", ("mass", "lung"), "test", "synthetic")], path)
    assert "images/a.png,Mass,mass lung,test,synthetic" in path.read_text()
    assert len(select_split(back, "all")) == len(back)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.png,Effusion,,train,synthetic", "line 2: no tokens"),
        ("a.png,Effusion,effusion right,holdout,synthetic", "split 'holdout'"),
        ("a.png,Effusion,effusion right,train,web", "source 'web'"),
        ("a.png,Effusion,nodule right,train,synthetic", "tokens start with 'nodule'"),
        ("a.png,Granuloma,granuloma,train,openi", "unknown finding"),
        (",Effusion,effusion,train,synthetic", "empty image path"),
    ],
)
def test_bad_pairs_rows_name_the_file_and_line(tmp_path: Path, row: str, message: str):
    path = tmp_path / "pairs.csv"
    path.write_text(",".join(PAIRS_COLUMNS) + "\n" + row + "\n")
    with pytest.raises(DataError, match=message) as error:
        read_pairs(path)
    assert str(path) in str(error.value)


def test_pairs_file_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        read_pairs(tmp_path / "missing.csv")
    path = tmp_path / "pairs.csv"
    path.write_text("image,tokens\na.png,mass\n")
    with pytest.raises(DataError, match="columns missing: finding, split, source"):
        read_pairs(path)
    path.write_bytes(b"image,finding,tokens,split,source\n\xff\xfe,\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_pairs(path)


def _report(number: int, images: list[str], majors: list[str]) -> str:
    parts = ["<eCitation>", f'<uId id="CXR{number}"/>', "<MeSH>"]
    parts += [f"<major>{term}</major>" for term in majors]
    parts += ["</MeSH>"] + [
        f'<parentImage id="{image}"><caption>PA chest</caption></parentImage>' for image in images
    ]
    return "\n".join(parts + ["</eCitation>"])


@pytest.fixture()
def openi_folder(tmp_path: Path) -> tuple[Path, Path]:
    reports = tmp_path / "ecgen-radiology"
    reports.mkdir()
    images = tmp_path / "png"
    images.mkdir()
    layout = {
        1: (
            ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
            ["Opacity/lung/base/left/patchy", "Calcified Granuloma/lung/right"],
        ),
        2: (
            ["CXR2_IM-0652-1001"],
            ["Pleural Effusion/right/small", "Pleural Effusion/right/small", "normal"],
        ),
        3: (["CXR3_IM-1384-1001"], ["Cardiomegaly/mild"]),  # its image file is missing
    }
    for number, (image_ids, majors) in layout.items():
        (reports / f"{number}.xml").write_text(_report(number, image_ids, majors))
    for image_id in ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001", "CXR2_IM-0652-1001"):
        Image.fromarray(np.full((8, 8), 90, dtype=np.uint8)).save(images / f"{image_id}.png")
    return tmp_path, images


def test_openi_pairs_pair_each_linked_image_with_each_annotation(openi_folder: tuple[Path, Path]):
    source, images = openi_folder
    dataset = load_openi(source, images_dir=images)
    pairs = openi_pairs(dataset, seed=0)
    by_image = defaultdict(list)
    for pair in pairs:
        by_image[pair.image.name].append((pair.finding, " ".join(pair.tokens)))
    assert by_image["CXR1_1_IM-0001-3001.png"] == [
        ("Infiltration", "infiltration lung left base patchy"),
        (None, "calcified_granuloma lung right"),
    ]
    assert by_image["CXR2_IM-0652-1001.png"] == [
        ("Effusion", "effusion right small"),
        (None, "normal"),
    ]  # no duplicate
    assert len(by_image) == 3  # report 3's image is not on disk
    report_splits = {(pair.image.name.split("_")[0], pair.split) for pair in pairs}
    assert len(report_splits) == 2  # the images of a report stay together in one split
    mapped = openi_pairs(dataset, mapped_only=True)
    assert all(pair.finding is not None for pair in mapped) and len(mapped) == 3


def test_mesh_sequences_are_every_major_term(openi_folder: tuple[Path, Path]):
    source, _ = openi_folder
    sequences, warnings = mesh_sequences(source)
    assert len(sequences) == 6
    assert ["cardiomegaly", "mild"] in sequences and ["normal"] in sequences
    assert not warnings


@pytest.mark.shared_data
def test_real_openi_images_give_pairs(shared_data: Path):
    dataset = load_openi(
        shared_data / "meta" / "NLMCXR_reports.tgz", images_dir=shared_data / "openi" / "images_256"
    )
    pairs = openi_pairs(dataset)
    assert len({pair.image.name for pair in pairs}) == 5
    tokens = {(pair.image.name, " ".join(pair.tokens)) for pair in pairs}
    assert ("CXR7_IM-2263-1001.png", "atelectasis base") in tokens
    assert ("CXR1900_IM-0584-1001.png", "calcified_granuloma lung bilateral multiple scattered") in tokens
