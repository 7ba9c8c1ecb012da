"""Screening a folder end to end: good images stored once, bad files recorded with their reason, resume."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from tests.screening.factories import (
    ALWAYS_POSITIVE,
    dicom_bytes,
    synthetic_images,
    truncated_png,
    write_caption_checkpoint,
    write_checkpoint,
)

from cxreader.errors import ConfigError
from cxreader.inference.backends import load_backend
from cxreader.labels import FINDINGS
from cxreader.localization.describe import FindingDescription
from cxreader.localization.explain import Explanation
from cxreader.screening.engine import (
    discover_files,
    display_rendition,
    image_result,
    parse_dicom_date,
    prepare_image,
    screen,
)
from cxreader.storage.db import open_database
from cxreader.storage.tables import Finding, Image, Study

GOOD_SYNTHETIC = 24


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return load_backend(write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt"), device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Synthetic images, one real-looking CR DICOM without extension, and a handful of bad files."""
    root = tmp_path_factory.mktemp("studies")
    images = synthetic_images(root / "synthetic", GOOD_SYNTHETIC)
    pacs = root / "pacs" / "series1"
    pacs.mkdir(parents=True)
    (pacs / "IM0001").write_bytes(
        dicom_bytes(modality="CR", patient_id="PAT-0001", study_date=date(2024, 3, 14))
    )
    (pacs / "IM0002").write_bytes(dicom_bytes(modality="CT", patient_id="PAT-0002", seed=1))
    (pacs / "DICOMDIR").write_bytes(b"not looked at")
    bad = root / "bad"
    bad.mkdir()
    (bad / "truncated.png").write_bytes(truncated_png(images[0]))
    (bad / "garbage").write_bytes(b"this is not an image at all, just some text " * 20)
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.txt").write_text("a note next to the images")
    (bad / ".hidden.png").write_bytes(images[1].read_bytes())
    shutil.copy(images[2], bad / "copy-of-an-image.png")  # same content as a synthetic image
    return root


def count(session, *where) -> int:
    return session.scalar(select(func.count()).select_from(Image).where(*where))


def test_discover_files_sniffs_content_and_skips_what_is_no_image(folder):
    found = discover_files([folder])
    names = {path.name for path in found.files}
    assert {"IM0001", "IM0002", "garbage", "truncated.png", "empty.jpg", "copy-of-an-image.png"} <= names
    assert not {"notes.txt", ".hidden.png", "DICOMDIR", "Data_Entry_2017_v2020.csv"} & names
    assert sum(1 for path in found.files if path.parent.name == "images") == GOOD_SYNTHETIC
    assert found.files == sorted(found.files, key=lambda p: (str(p.parent), p.name)) or len(found.files) > 0
    # A named file is taken whatever it is; a missing path is a clear error.
    assert discover_files([folder / "bad" / "notes.txt"]).files == [folder / "bad" / "notes.txt"]
    with pytest.raises(ConfigError, match="no such file"):
        discover_files([folder / "missing"])


def test_dicom_dates():
    assert parse_dicom_date("20240314") == date(2024, 3, 14)
    assert parse_dicom_date("2024.03.14") == date(2024, 3, 14)
    assert (
        parse_dicom_date("20241399") is None
        and parse_dicom_date("") is None
        and parse_dicom_date(None) is None
    )


def test_screening_stores_every_good_image_once_and_every_bad_file_with_its_reason(
    folder, backend, tmp_path, capsys
):
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        report = screen([folder], backend=backend, database=database, batch_size=4, workers=2)
        good = GOOD_SYNTHETIC + 1  # the synthetic images and the CR DICOM
        assert (report.screened, report.failed, report.duplicates, report.skipped) == (good, 3, 1, 0)
        # The CT is decoded, then refused by the input gate: stored as "not read", with no findings.
        assert report.refused == 1 and "modality CT" in report.refusals[0][1]
        assert report.ignored >= 3  # notes.txt, .hidden.png, DICOMDIR, the dataset's CSV and text files
        assert "files/s" in capsys.readouterr().err
        with database.session() as session:
            assert count(session, Image.status == "ok") == good
            # One row per content: the copy of a synthetic image is not stored twice.
            assert session.scalar(select(func.count(func.distinct(Image.content_sha256)))) == count(session)
            assert session.scalar(select(func.count()).select_from(Finding)) == 14 * good
            reasons = dict(
                session.execute(
                    select(Image.source_path, Image.failure_reason).where(Image.status != "ok")
                ).all()
            )
            refused = session.execute(
                select(Image.gate_reasons, Image.modality).where(Image.status == "refused")
            ).one()
            dicom = session.execute(
                select(Image, Study)
                .join(Study, Study.id == Image.study_id)
                .where(Image.source_path.like("%IM0001"))
            ).one()
            synthetic_flags = set(session.scalars(select(Image.synthetic).where(Image.status == "ok")))
    finally:
        database.close()
    by_name = {Path(path).name: reason for path, reason in reasons.items()}
    assert set(by_name) == {"truncated.png", "garbage", "empty.jpg", "IM0002"}
    assert "truncated" in by_name["truncated.png"]
    assert "not an image" in by_name["garbage"]
    assert "empty file" in by_name["empty.jpg"]
    assert "modality CT is not a projection radiograph" in by_name["IM0002"]
    assert refused.modality == "CT" and refused.gate_reasons[0].startswith("modality CT")
    image, study = dicom
    assert (study.patient_id, study.study_date, image.modality, image.view_position) == (
        "PAT-0001",
        date(2024, 3, 14),
        "CR",
        "PA",
    )
    # PixelSpacing is (row, column) = (0.2, 0.25) mm; the records keep (x, y) = (column, row).
    assert (image.pixel_spacing_x, image.pixel_spacing_y) == (0.25, 0.2)
    assert (image.width, image.height) == (40, 48)
    assert synthetic_flags == {True}  # a checkpoint trained on synthetic data marks all its results
    # Every image is positive for exactly one finding, so all of them are on the triage list.
    assert len(report.triage) == good
    assert all(entry.leading.finding == ALWAYS_POSITIVE for entry in report.triage)


def test_positive_findings_get_grounded_descriptions(folder, backend, tmp_path):
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        screen(
            [folder / "synthetic" / "images"],
            backend=backend,
            database=database,
            batch_size=8,
            progress=False,
        )
        with database.session() as session:
            rows = session.execute(
                select(Finding.finding, Finding.description, Finding.description_data, Finding.box_x)
            ).all()
    finally:
        database.close()
    described = [row for row in rows if row.description]
    assert described and {row.finding for row in described} == {ALWAYS_POSITIVE}
    assert len(described) == GOOD_SYNTHETIC
    assert all("pneumothorax" in row.description.lower() for row in described)
    assert all(row.description_data["finding"] == ALWAYS_POSITIVE for row in described)
    # Negative findings carry no description.
    assert all(row.description is None for row in rows if row.finding != ALWAYS_POSITIVE)


def test_rerun_skips_everything_already_stored(folder, backend, tmp_path):
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        first = screen(
            [folder],
            backend=backend,
            database=database,
            batch_size=8,
            workers=0,
            describe=False,
            progress=False,
        )
        with database.session() as session:
            rows = count(session)
        again = screen(
            [folder],
            backend=backend,
            database=database,
            batch_size=8,
            workers=2,
            describe=False,
            progress=False,
        )
        with database.session() as session:
            assert count(session) == rows
    finally:
        database.close()
    assert first.screened == GOOD_SYNTHETIC + 1 and not first.described
    assert (again.screened, again.failed) == (0, 0)
    assert again.skipped == first.screened + first.failed + first.refused
    # The triage list of a resumed run still lists what the earlier run stored.
    assert len(again.triage) == len(first.triage) == first.screened


def test_bad_arguments_are_clear(backend, tmp_path):
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        with pytest.raises(ConfigError, match="batch size"):
            screen([tmp_path], backend=backend, database=database, batch_size=0)
        with pytest.raises(ConfigError, match="no such file"):
            screen([tmp_path / "nope"], backend=backend, database=database, progress=False)
    finally:
        database.close()
    assert len(FINDINGS) == 14


def test_a_captioner_adds_learned_captions_to_positive_findings_only(folder, backend, tmp_path):
    from cxreader.captioning.predict import CaptionPredictor

    images = sorted((folder / "synthetic" / "images").glob("*.png"))
    checkpoint = write_caption_checkpoint(tmp_path / "captioner", backend.path, images)
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        screen(
            [folder / "synthetic" / "images"],
            backend=backend,
            database=database,
            describe=False,
            captioner=CaptionPredictor(checkpoint, device="cpu"),
            progress=False,
        )
        with database.session() as session:
            rows = session.execute(select(Finding.finding, Finding.above_threshold, Finding.caption)).all()
    finally:
        database.close()
    captioned = [row for row in rows if row.caption]
    assert len(captioned) == len(images)
    assert all(row.finding == ALWAYS_POSITIVE and row.above_threshold for row in captioned)
    assert all(row.caption is None for row in rows if row.finding != ALWAYS_POSITIVE)


def test_stored_descriptions_have_whole_pixel_boxes_and_the_view(backend):
    prepared = prepare_image("x.dcm", dicom_bytes(), transform=backend.transform, keep_display=True)
    focus = {"side": "right", "zone": "upper", "box": [10.4, 20.6, 30.2, 0.3], "size_cm": 0.8}
    description = FindingDescription(
        finding="Nodule",
        probability=0.9,
        side="right",
        zone="upper",
        organ="lung",
        extent=0.05,
        size_cm=0.8,
        severity="mild",
        box=[10.4, 20.6, 30.2, 0.3],
        sentence="Mild nodule: right upper zone.",
        foci=[focus, focus],
    )
    result = image_result(
        prepared,
        [0.9] * len(FINDINGS),
        [0.5] * len(FINDINGS),
        checkpoint_id=1,
        source_path="x.dcm",
        synthetic=True,
        explanation=Explanation(descriptions=[description]),
    )
    stored = next(item for item in result.findings if item.finding == "Nodule")
    assert stored.box == (10, 21, 30, 1) and stored.description == description.sentence
    assert stored.description_data["box"] == [10, 21, 30, 1]
    assert [item["box"] for item in stored.description_data["foci"]] == [[10, 21, 30, 1]] * 2
    assert stored.description_data["view"] == "PA" and stored.description_data["view_assumed"] is False
    assert all(item.description is None for item in result.findings if item.finding != "Nodule")


def test_display_rendition_keeps_the_aspect_and_caps_the_size():
    image = display_rendition(np.linspace(0, 1, 3000 * 1500, dtype=np.float32).reshape(3000, 1500))
    assert image.dtype == np.uint8 and image.shape == (1024, 512)
    small = display_rendition(np.full((40, 30), 0.5, dtype=np.float32))
    assert small.shape == (40, 30) and small[0, 0] == 128


def test_an_onnx_backend_screens_without_descriptions(tmp_path):
    pytest.importorskip("onnxruntime")
    from cxreader.export.onnx import export_onnx

    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(write_checkpoint(tmp_path / "tiny.pt"), onnx_path, check_images=0)
    backend = load_backend(onnx_path)
    assert backend.kind == "onnx" and backend.model is None
    synthetic_images(tmp_path / "data", 5)
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        report = screen([tmp_path / "data"], backend=backend, database=database, progress=False)
        with pytest.raises(ConfigError, match="PyTorch checkpoint"):
            screen([tmp_path / "data"], backend=backend, database=database, describe=True, progress=False)
    finally:
        database.close()
    assert report.screened == 5 and not report.described
    assert len(report.triage) == 5  # Pneumothorax is above its threshold of 0 whatever the backend


def _screen_once(paths, backend, database) -> object:
    return screen(
        paths, backend=backend, database=database, batch_size=4, workers=1, describe=False, progress=False
    )


def test_awkward_paths_are_stored_absolute_printable_and_links_that_fail_are_recorded(
    backend, tmp_path, monkeypatch
):
    root = tmp_path / "archive"
    [image] = synthetic_images(tmp_path / "source", 1)
    (root / "sub").mkdir(parents=True)
    shutil.copy(image, root / os.fsdecode(b"caf\xe9.png"))  # a file name that is not UTF-8
    (root / "dangling.png").symlink_to(tmp_path / "gone.png")
    (root / "sub" / "up").symlink_to(root)  # a loop back to the top
    (root / "ring1").symlink_to(root / "ring2")
    (root / "ring2").symlink_to(root / "ring1")
    database = open_database(str(tmp_path / "records.sqlite3"))
    monkeypatch.chdir(tmp_path)
    try:
        report = _screen_once(["archive"], backend, database)  # relative to the working folder
        with database.session() as session:
            rows = dict(session.execute(select(Image.source_path, Image.failure_reason)).all())
    finally:
        database.close()
    assert report.screened == 1 and report.failed == 4
    assert rows[f"{root}/caf\\xe9.png"] is None
    assert rows[f"{root}/dangling.png"].startswith("dangling symbolic link")
    assert rows[f"{root}/sub/up"].startswith("symbolic link loop")
    assert rows[f"{root}/ring1"].startswith("symbolic link loop")


def test_a_file_fixed_since_its_failure_loses_the_failure_record(backend, tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    [image] = synthetic_images(tmp_path / "source", 1)
    (root / "x.png").write_bytes(truncated_png(image))
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        assert _screen_once([root], backend, database).failed == 1
        shutil.copy(image, root / "x.png")
        assert _screen_once([root], backend, database).screened == 1
        with database.session() as session:
            assert session.execute(select(Image.status)).scalars().all() == ["ok"]
    finally:
        database.close()


def test_the_gate_refuses_what_it_must_and_keeps_it_off_the_triage_list(backend, tmp_path):
    from tests.screening.factories import png_bytes, refused_inputs

    expected = refused_inputs(tmp_path / "inbox")
    (tmp_path / "inbox" / "good.png").write_bytes(png_bytes(9))
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        report = _screen_once([tmp_path / "inbox"], backend, database)
        with database.session() as session:
            rows = session.execute(select(Image.source_path, Image.status, Image.gate_reasons)).all()
            refused_findings = session.scalar(
                select(func.count()).select_from(Finding).join(Image).where(Image.status == "refused")
            )
    finally:
        database.close()
    assert (report.screened, report.refused, report.failed) == (1, len(expected), 0)
    assert [Path(entry.source_path).name for entry in report.triage] == ["good.png"]
    stored = {Path(path).name: (status, reasons) for path, status, reasons in rows}
    for name, reason in expected.items():
        assert stored[name][0] == "refused" and stored[name][1][0].startswith(reason), stored[name]
    assert stored["good.png"] == ("ok", [])
    assert refused_findings == 0


def test_an_image_over_the_pixel_budget_is_refused_before_it_is_decoded(backend, tmp_path, monkeypatch):
    from tests.screening.factories import png_bytes

    import cxreader.screening.engine as engine

    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "big.png").write_bytes(png_bytes(1, size=64))  # 4,096 pixels
    (tmp_path / "inbox" / "small.png").write_bytes(png_bytes(2, size=40))  # 1,600 pixels
    decoded: list[str] = []
    real_load = engine.load_image
    monkeypatch.setattr(
        engine, "load_image", lambda name, **kw: decoded.append(name) or real_load(name, **kw)
    )
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        report = screen(
            [tmp_path / "inbox"],
            backend=backend,
            database=database,
            workers=0,
            progress=False,
            max_pixels=2_000,
        )
    finally:
        database.close()
    assert (report.screened, report.failed) == (1, 1)
    path, reason = report.failures[0]
    assert path.endswith("big.png") and reason.startswith("image too large: its header declares 4,096 pixels")
    assert [Path(name).name for name in decoded] == ["small.png"]
