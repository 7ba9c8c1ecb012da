"""OpenI / IU report reader: real reports field by field, tgz vs folder, bad input, image linking, the CLI."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from cxreader.cli.openi_cmd import register_data
from cxreader.data.openi import (
    OpenIDataset,
    OpenIReport,
    caption_views,
    iter_openi_reports,
    load_openi,
    natural_key,
    openi_stats,
)
from cxreader.errors import DataError

REPORTS = Path("meta/NLMCXR_reports.tgz")
# Reports checked field by field: two images and PA/lateral captions (1900); empty FINDINGS and COMPARISON,
# MeSH "normal" (3); no <parentImage> at all (1068); AP captions, a heading with a trailing space (1957).
CHECKED = ("1900", "3", "1068", "1957")


def _report_xml(
    report_id: str = "1",
    *,
    images: tuple[str, ...] = ("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"),
    majors: tuple[str, ...] = ("Cardiomegaly/mild",),
    automatic: tuple[str, ...] = ("cardiomegaly",),
    findings: str = "The heart is enlarged.",
    caption: str = "PA and lateral chest",
    uid: bool = True,
) -> str:
    """A small report in the layout of the public release."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<eCitation>"]
    if uid:
        parts.append(f'<uId id="CXR{report_id}"/>')
    parts += [
        "<MedlineCitation><Article><Abstract>",
        '<AbstractText Label="COMPARISON">None.</AbstractText>',
        '<AbstractText Label="INDICATION">Dyspnea.</AbstractText>',
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>',
        '<AbstractText Label="IMPRESSION">Cardiomegaly.</AbstractText>',
        "</Abstract></Article></MedlineCitation>",
        "<MeSH>",
        *(f"<major>{term}</major>" for term in majors),
        *(f"<automatic>{term}</automatic>" for term in automatic),
        "</MeSH>",
    ]
    for image_id in images:
        parts.append(
            f'<parentImage id="{image_id}"><figureId>F1</figureId><caption>{caption}</caption></parentImage>'
        )
    parts.append("</eCitation>")
    return "\n".join(parts)


def _write_tgz(path: Path, members: dict[str, str | bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8") if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _report(dataset: OpenIDataset, report_id: str) -> OpenIReport:
    return next(report for report in dataset if report.report_id == report_id)


@pytest.fixture(scope="module")
def real_openi(shared_data: Path) -> OpenIDataset:
    return load_openi(shared_data / REPORTS)


def _independent_read(tgz: Path, number: str) -> ET.Element:
    """The report's XML read straight from the archive with ElementTree, for comparison."""
    with tarfile.open(tgz, "r:gz") as tar:
        handle = tar.extractfile(f"ecgen-radiology/{number}.xml")
        assert handle is not None
        return ET.fromstring(handle.read())


# --- the real collection ------------------------------------------------------------------------------------


def test_real_collection_counts(real_openi: OpenIDataset) -> None:
    assert len(real_openi) == 3955
    image_ids = [image_id for report in real_openi for image_id in report.image_ids]
    assert len(image_ids) == 7470 == len(set(image_ids))
    assert real_openi.warnings["no_images"] == 104
    # Every heading and modifier of the real file belongs to the grammar's vocabularies.
    assert real_openi.warnings["unknown_mesh_heading"] == 0
    assert real_openi.warnings["unknown_mesh_modifier"] == 0
    assert real_openi.warnings["malformed_xml"] == 0
    ids = [report.report_id for report in real_openi]
    assert ids[:3] == ["CXR1", "CXR2", "CXR3"] and ids == sorted(ids, key=natural_key)


@pytest.mark.parametrize("number", CHECKED)
def test_real_reports_match_their_xml(real_openi: OpenIDataset, shared_data: Path, number: str) -> None:
    root = _independent_read(shared_data / REPORTS, number)
    report = _report(real_openi, root.find("uId").get("id"))
    assert report.report_id == f"CXR{number}"
    sections = {e.get("Label"): ("".join(e.itertext()).strip() or None) for e in root.iter("AbstractText")}
    assert report.findings == sections["FINDINGS"]
    assert report.impression == sections["IMPRESSION"]
    assert report.indication == sections["INDICATION"]
    assert report.comparison == sections["COMPARISON"]
    assert report.mesh_major == [e.text.strip() for e in root.find("MeSH").iter("major")]
    assert report.mesh_automatic == [e.text.strip() for e in root.find("MeSH").iter("automatic")]
    assert report.image_ids == [e.get("id") for e in root.iter("parentImage")]
    assert report.captions == [e.findtext("caption").strip() for e in root.iter("parentImage")]
    assert report.source.endswith(f"!ecgen-radiology/{number}.xml")


def test_real_reports_literal_values(real_openi: OpenIDataset) -> None:
    # Values read by eye from ecgen-radiology/1900.xml, 3.xml, 1068.xml and 1957.xml.
    r1900 = _report(real_openi, "CXR1900")
    assert r1900.image_ids == ["CXR1900_IM-0584-1001", "CXR1900_IM-0584-2001"]
    assert r1900.views == ["PA", "LATERAL"]
    assert r1900.comparison == "PA and lateral chest XXXX."
    assert r1900.indication == "XXXX year old hypertension and chest pain."
    assert r1900.impression == "1. Stable appearance of the chest. No acute process."
    assert r1900.findings.startswith("There are XXXX sternotomy XXXX identified.")
    assert r1900.findings.endswith("Mild degenerative changes of the thoracic spine.")
    assert r1900.mesh_major == [
        "Calcinosis/aorta",
        "Aorta/tortuous",
        "Calcified Granuloma/lung/bilateral/scattered/multiple",
        "Thoracic Vertebrae/degenerative/mild",
    ]
    assert r1900.mesh_automatic == ["calcified granuloma", "degenerative change", "sternotomy"]

    r3 = _report(real_openi, "CXR3")
    assert r3.findings is None and r3.comparison is None
    assert r3.mesh_major == ["normal"] and r3.mesh_automatic == []
    assert r3.image_ids == ["CXR3_IM-1384-1001", "CXR3_IM-1384-2001"]

    r1068 = _report(real_openi, "CXR1068")
    assert r1068.image_ids == [] and r1068.views == [] and r1068.captions == []
    assert r1068.indication == "Chest congestion" and r1068.impression == "No active disease."
    assert any("CXR1068" in example for example in real_openi.warning_examples["no_images"])

    r1957 = _report(real_openi, "CXR1957")
    assert r1957.views == ["AP", "LATERAL"]
    assert r1957.image_ids == ["CXR1957_IM-0624-0001", "CXR1957_IM-0624-4004"]
    assert r1957.mesh_major[-1] == "Technical Quality of Image Unsatisfactory"  # trailing space stripped
    assert [(a.finding, a.side, a.severity, a.size) for a in r1957.annotations[:2]] == [
        ("Effusion", "left", None, "small"),
        ("Effusion", "right", "moderate", None),
    ]
    assert r1957.annotations[2].finding == "Infiltration"  # Opacity/lung/base/bilateral


def test_real_images_link_as_pairs_csv_says(shared_data: Path) -> None:
    dataset = load_openi(shared_data / REPORTS, images_dir=shared_data / "openi" / "images_256")
    pairs = {
        (image_id, path.name, report.report_id)
        for report in dataset
        for image_id, path in report.image_paths.items()
    }
    with (shared_data / "openi" / "pairs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    assert pairs == {(row["image_id"], Path(row["file_256"]).name, row["uId"]) for row in rows}
    assert dataset.warnings["image_file_missing"] == 7470 - 5
    assert dataset.warnings["image_without_report"] == 0


def test_tgz_and_unpacked_folder_agree(shared_data: Path, tmp_path: Path) -> None:
    # A slice of the real archive, as a new tgz, as an ecgen-radiology/ folder and as a flat folder.
    members = {}
    with tarfile.open(shared_data / REPORTS, "r:gz") as tar:
        for member in tar:
            if member.isfile() and len(members) < 150:
                members[member.name] = tar.extractfile(member).read()
    tgz = _write_tgz(tmp_path / "part.tgz", members)
    nested, flat = tmp_path / "nested", tmp_path / "flat"
    for name, data in members.items():
        for target in (nested / name, flat / Path(name).name):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def comparable(dataset: OpenIDataset) -> list:
        return [dataclasses.replace(report, source="") for report in dataset.reports]

    from_tgz, from_nested, from_flat = load_openi(tgz), load_openi(nested), load_openi(flat)
    assert len(from_tgz) == 150
    assert comparable(from_tgz) == comparable(from_nested) == comparable(from_flat)
    assert from_tgz.warnings == from_nested.warnings == from_flat.warnings
    assert openi_stats(from_tgz)["mesh"] == openi_stats(from_nested)["mesh"]
    assert from_nested.reports[0].source == str(
        nested / "ecgen-radiology" / Path(from_nested.reports[0].source).name
    )


# --- bad input ----------------------------------------------------------------------------------------------


def test_bad_reports_are_counted_not_fatal(tmp_path: Path) -> None:
    tgz = _write_tgz(
        tmp_path / "reports.tgz",
        {
            "ecgen-radiology/1.xml": _report_xml("1"),
            "ecgen-radiology/2.xml": _report_xml("2", images=())[:-40],  # truncated: malformed
            "ecgen-radiology/3.xml": _report_xml("3", images=()),
            "ecgen-radiology/4.xml": _report_xml("4", majors=("Wobbly Lung/lung/left/sparkly", "normal")),
            "ecgen-radiology/5.xml": _report_xml("5", uid=False, images=("CXR5_IM-1-1001",), majors=()),
            "ecgen-radiology/6.xml": "<html><body>not a report</body></html>",
            "ecgen-radiology/7.xml": _report_xml("1", images=("CXR1_dup",)),  # same uId as 1.xml
            "ecgen-radiology/._8.xml": b"\x00\x05\x16\x07 resource fork",
            "ecgen-radiology/README.txt": "not xml",
        },
    )
    dataset = load_openi(tgz)
    assert [r.report_id for r in dataset] == ["CXR1", "CXR3", "CXR4", "CXR5"]
    assert dataset.warnings == {
        "malformed_xml": 1,
        "not_a_report": 1,
        "no_images": 1,
        "unknown_mesh_heading": 1,
        "unknown_mesh_modifier": 1,
        "missing_report_id": 1,
        "duplicate_report_id": 1,
        "no_mesh_terms": 1,
    }
    assert "2.xml" in dataset.warning_examples["malformed_xml"][0]
    assert "'sparkly'" in dataset.warning_examples["unknown_mesh_modifier"][0]
    assert _report(dataset, "CXR1").image_ids == [
        "CXR1_1_IM-0001-3001",
        "CXR1_1_IM-0001-4001",
    ]  # the first kept
    weird = _report(dataset, "CXR4").annotations[0]
    assert (weird.heading, weird.organ, weird.side, weird.other_modifiers, weird.finding) == (
        "Wobbly Lung",
        "lung",
        "left",
        ("sparkly",),
        None,
    )


def test_iter_reports_streams_in_source_order(tmp_path: Path) -> None:
    tgz = _write_tgz(
        tmp_path / "r.tgz", {f"ecgen-radiology/{n}.xml": _report_xml(str(n), images=()) for n in (10, 2, 1)}
    )
    warnings: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    reports = list(iter_openi_reports(tgz, warnings=warnings, examples=examples))
    assert [r.report_id for r in reports] == ["CXR10", "CXR2", "CXR1"]
    assert warnings == {"no_images": 3} and len(examples["no_images"]) == 3


def test_bad_sources_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_openi(tmp_path / "missing.tgz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a tar archive"):
        load_openi(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no OpenI XML reports"):
        load_openi(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no OpenI XML reports"):
        load_openi(_write_tgz(tmp_path / "other.tgz", {"a/readme.txt": "x"}))
    good = _write_tgz(tmp_path / "good.tgz", {f"e/{n}.xml": _report_xml(str(n)) * 20 for n in range(40)})
    (tmp_path / "cut.tgz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.tgz: cannot read the tar archive"):
        load_openi(tmp_path / "cut.tgz")
    with pytest.raises(DataError, match="image folder not found"):
        load_openi(good, images_dir=tmp_path / "no-images")


def test_image_files_link_by_id(tmp_path: Path) -> None:
    tgz = _write_tgz(
        tmp_path / "r.tgz",
        {
            "ecgen-radiology/1.xml": _report_xml("1", images=("CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001")),
            "ecgen-radiology/2.xml": _report_xml("2", images=("CXR2_IM-0652-1001", "CXR2_IM-0652-2001")),
            "ecgen-radiology/3.xml": _report_xml("3", images=("CXR3_IM-1384-1001",)),
        },
    )
    images = tmp_path / "NLMCXR_png"
    (images / "sub").mkdir(parents=True)
    (images / "CXR1_1_IM-0001-3001.png").write_bytes(b"png")
    (images / "sub" / "CXR1_1_IM-0001-3001.png").write_bytes(b"deeper copy")
    (images / "1_IM-0001-4001.dcm").write_bytes(b"DICOM release name of report 1's odd id")
    (images / "3_IM-1384-1001.dcm").write_bytes(b"DICOM release name")
    (images / "sub" / "CXR2_IM-0652-1001.jpg").write_bytes(b"jpg")
    (images / "CXR99_IM-0000-1001.png").write_bytes(b"no report names it")
    (images / "notes.txt").write_text("ignored")

    dataset = load_openi(tgz, images_dir=images)
    assert _report(dataset, "CXR1").image_paths == {
        "CXR1_1_IM-0001-3001": images / "CXR1_1_IM-0001-3001.png",  # the shallower of the two copies
        "CXR1_1_IM-0001-4001": images / "1_IM-0001-4001.dcm",
    }
    assert _report(dataset, "CXR2").image_paths == {
        "CXR2_IM-0652-1001": images / "sub" / "CXR2_IM-0652-1001.jpg"
    }
    assert _report(dataset, "CXR3").image_paths == {"CXR3_IM-1384-1001": images / "3_IM-1384-1001.dcm"}
    assert [image_id for report in dataset for image_id in report.image_paths] == [
        "CXR1_1_IM-0001-3001",
        "CXR1_1_IM-0001-4001",
        "CXR2_IM-0652-1001",
        "CXR3_IM-1384-1001",
    ]
    assert dataset.warnings == {"duplicate_image_file": 1, "image_file_missing": 1, "image_without_report": 1}
    assert dataset.warning_examples["image_file_missing"] == ["CXR2: CXR2_IM-0652-2001"]


@pytest.mark.parametrize(
    ("caption", "views"),
    [
        ("Xray Chest PA and Lateral", ["PA", "LATERAL"]),
        ("CHEST 2V FRONTAL/LATERAL XXXX, XXXX XXXX PM", ["FRONTAL", "LATERAL"]),
        ("TWO-VIEW CHEST (AP/PA and lateral): XXXX.", ["PA", "AP", "LATERAL"]),
        ("PA and LAT view CHEST XXXX, XXXX XXXX PM", ["PA", "LATERAL"]),
        ("Portable chest x-XXXX dated XXXX at XXXX.", []),
        ("Chest x-XXXX, 2 views dated XXXX COMPARISXXXX/XXXX AP", []),  # views of the comparison study
        ("Paediatric chest, lateral decubitus", ["LATERAL", "DECUBITUS"]),
    ],
)
def test_caption_views(caption: str, views: list[str]) -> None:
    assert caption_views(caption) == views


# --- statistics and the CLI ---------------------------------------------------------------------------------


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cxreader data")
    register_data(parser.add_subparsers(dest="data_command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_openi_stats_json_on_generated_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tgz = _write_tgz(
        tmp_path / "r.tgz",
        {
            "ecgen-radiology/1.xml": _report_xml("1", majors=("Cardiomegaly/mild", "Opacity/lung/base/left")),
            "ecgen-radiology/2.xml": _report_xml("2", majors=("normal",), findings="", images=()),
            "ecgen-radiology/3.xml": _report_xml(
                "3", majors=("Cardiomegaly/mild", "Opacity/ribs/anterior"), images=("CXR3_IM-1", "CXR3_IM-2")
            ),
        },
    )
    assert _run_cli(["openi-stats", "--reports", str(tgz), "--json", "--top", "2"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["reports"] == 3
    assert stats["images"] == {"ids": 4, "distinct_ids": 4, "reports_without_images": 1}
    assert stats["reports_with"]["findings"] == 2 and stats["reports_with"]["impression"] == 3
    mesh = stats["mesh"]
    assert (mesh["major_terms"], mesh["distinct_major_strings"], mesh["distinct_headings"]) == (5, 4, 3)
    assert mesh["headings_mapped_to_findings"] == 2  # Cardiomegaly, and Opacity when in the lung
    assert mesh["per_finding"]["Cardiomegaly"] == 2 and mesh["per_finding"]["Infiltration"] == 1
    assert mesh["top_annotations"] == [["cardiomegaly mild", 2], ["infiltration lung left base", 1]]
    assert mesh["top_headings"][0] == ["Cardiomegaly", 2, "Cardiomegaly"]
    assert mesh["top_headings"][1] == ["Opacity", 2, "Infiltration"]
    assert stats["warnings"] == {"no_images": 1}

    assert _run_cli(["openi-stats", "--reports", str(tgz)]) == 0
    text = capsys.readouterr().out
    assert "reports without images" in text and "cardiomegaly mild" in text and "no_images" in text


def test_openi_stats_cli_on_real_reports(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cxreader.cli.__main__ import main

    assert main(["data", "openi-stats", "--reports", str(shared_data / REPORTS), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["reports"] == 3955 and stats["images"]["ids"] == 7470
    assert stats["mesh"]["major_terms"] == 8298
    assert stats["mesh"]["distinct_major_strings"] == 1719


def test_openi_stats_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cxreader.cli.__main__ import main

    assert main(["data", "openi-stats", "--reports", str(tmp_path / "none.tgz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cxreader: error:") and "none.tgz" in err and "\n" not in err
