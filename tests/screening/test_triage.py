"""The triage list: urgency order, sorting rule, reading a run's results back, text and CSV output."""

from __future__ import annotations

import csv
import hashlib
from datetime import date

import pytest

from cxreader.labels import FINDINGS, HARMONISED_LABELS
from cxreader.screening.triage import (
    CSV_COLUMNS,
    NOT_TRIAGED,
    TIER_WEIGHTS,
    URGENCY_ORDER,
    URGENCY_TIERS,
    build_triage,
    format_triage,
    make_entry,
    priority,
    triage_from_database,
    urgency_rank,
    write_triage_csv,
)
from cxreader.storage.db import open_database
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo
from cxreader.storage.write import add_image_result, register_checkpoint


def entry(path: str, *positives: tuple[str, float], **details):
    return make_entry(
        source_path=path, positives=[FindingResult(name, p, 0.5) for name, p in positives], **details
    )


#: The order of the 14 CheXNet findings, which the extra findings of the harmonised label space never change.
CHEXNET_URGENCY_ORDER = (
    "Pneumothorax", "Effusion", "Pneumonia", "Consolidation", "Infiltration", "Edema", "Atelectasis",
    "Cardiomegaly", "Mass", "Nodule", "Hernia", "Emphysema", "Fibrosis", "Pleural_Thickening",
)  # fmt: skip


def test_urgency_order_holds_each_finding_once_with_pneumothorax_first_and_nodule_after_mass():
    triaged = sorted(set(HARMONISED_LABELS) - set(NOT_TRIAGED))
    assert sorted(URGENCY_ORDER) == triaged and len(URGENCY_ORDER) == len(triaged)
    assert tuple(name for name in URGENCY_ORDER if name in FINDINGS) == CHEXNET_URGENCY_ORDER
    assert URGENCY_ORDER[0] == "Pneumothorax"
    assert urgency_rank("Effusion") < urgency_rank("Mass") < urgency_rank("Nodule")
    last = len(URGENCY_ORDER) - 1
    assert urgency_rank("pleural thickening") == urgency_rank("Pleural_Thickening") == last


def test_the_leading_finding_decides_then_urgency_then_more_findings():
    nodule = entry("a.png", ("Nodule", 0.99))
    pneumothorax = entry("b.png", ("Pneumothorax", 0.55), ("Nodule", 0.9))
    effusion_high = entry("c.png", ("Effusion", 0.95))
    effusion_low = entry("d.png", ("Effusion", 0.90))
    effusion_low_more = entry("e.png", ("Effusion", 0.90), ("Cardiomegaly", 0.7))
    nothing = entry("f.png")
    ordered = build_triage([nodule, effusion_low, nothing, effusion_high, pneumothorax, effusion_low_more])
    assert [item.source_path for item in ordered] == ["b.png", "c.png", "e.png", "d.png", "a.png"]
    assert nothing is None
    # Within an entry the findings are listed by priority (Pneumothorax 0.55 x 4 before Nodule 0.9 x 1).
    assert [item.finding for item in pneumothorax.positives] == ["Pneumothorax", "Nodule"]


def _result(name: str, checkpoint_id: int, probabilities: dict[str, float], *, patient: str | None = None):
    return ImageResult(
        source_path=f"/data/{name}.png",
        content_sha256=hashlib.sha256(name.encode()).hexdigest(),
        checkpoint_id=checkpoint_id,
        findings=[
            FindingResult(finding=f, probability=probabilities.get(f, 0.1), threshold=0.5) for f in FINDINGS
        ],
        study=StudyInfo(patient_id=patient, study_date=date(2024, 1, 2) if patient else None),
    )


def test_triage_from_database_reads_the_stored_results_of_the_given_files(tmp_path):
    database = open_database(str(tmp_path / "records.sqlite3"))
    try:
        with database.session() as session:
            checkpoint = register_checkpoint(session=session, sha256="a" * 64)
            other = register_checkpoint(session=session, sha256="b" * 64)
            stored = {
                "mass": {"Mass": 0.8},
                "ptx": {"Pneumothorax": 0.7, "Effusion": 0.9},
                "normal": {},
                "edema": {"Edema": 0.6},
            }
            for name, probabilities in stored.items():
                add_image_result(
                    session=session, result=_result(name, checkpoint, probabilities, patient="P-7")
                )
            add_image_result(session=session, result=_result("elsewhere", other, {"Pneumothorax": 0.99}))
            everything = triage_from_database(
                session=session,
                checkpoint_id=checkpoint,
                content_sha256s=[
                    hashlib.sha256(name.encode()).hexdigest() for name in [*stored, "elsewhere"]
                ],
            )
            some = triage_from_database(
                session=session,
                checkpoint_id=checkpoint,
                content_sha256s=[hashlib.sha256(b"mass").hexdigest(), hashlib.sha256(b"normal").hexdigest()],
            )
    finally:
        database.close()
    assert [item.source_path for item in everything] == ["/data/ptx.png", "/data/edema.png", "/data/mass.png"]
    first = everything[0]
    assert [p.finding for p in first.positives] == ["Pneumothorax", "Effusion"]
    assert first.patient_id == "P-7" and first.study_date == date(2024, 1, 2) and first.image_id is not None
    assert [item.source_path for item in some] == ["/data/mass.png"]


def test_text_list_hides_patient_ids_and_csv_carries_them(tmp_path):
    entries = build_triage(
        [
            entry("/x/ptx.dcm", ("Pneumothorax", 0.81), patient_id="SECRET-42", image_id=3, synthetic=True),
            entry("/x/nod.png", ("Nodule", 0.66), image_id=4),
        ]
    )
    text = format_triage(entries, limit=1)
    assert "SECRET-42" not in text
    assert "Pneumothorax" in text and "[SYNTHETIC]" in text and "1 more" in text
    assert "not a certified medical device" in text
    path = write_triage_csv(entries, tmp_path / "out" / "triage.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(row["rank"], row["leading_finding"], row["patient_id"]) for row in rows] == [
        ("1", "Pneumothorax", "SECRET-42"),
        ("2", "Nodule", ""),
    ]
    assert rows[0]["synthetic"] == "true" and rows[0]["image_id"] == "3"
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_empty_triage_says_so():
    assert "no image has a finding above its threshold" in format_triage([])


@pytest.mark.parametrize("name", ["Bogus", "No Finding"])
def test_urgency_rank_rejects_what_is_not_a_finding(name):
    with pytest.raises((KeyError, ValueError)):
        urgency_rank(name)


def test_a_faint_finding_never_outranks_a_near_certain_one_of_its_tier():
    """The issue's case: Consolidation at 0.01 ranked above Mass at 0.99 under the old urgency-first rule."""
    faint_consolidation = entry("c.png", ("Consolidation", 0.01))
    certain_mass = entry("m.png", ("Mass", 0.99))
    certain_pneumonia = entry("p.png", ("Pneumonia", 0.99))
    faint_pneumothorax = entry("t.png", ("Pneumothorax", 0.2))
    likely_pneumothorax = entry("u.png", ("Pneumothorax", 0.3))
    ordered = build_triage(
        [faint_consolidation, certain_mass, certain_pneumonia, faint_pneumothorax, likely_pneumothorax]
    )
    assert [item.source_path for item in ordered] == ["p.png", "u.png", "m.png", "t.png", "c.png"]
    assert {tier for tier in TIER_WEIGHTS} == set(URGENCY_TIERS)
    assert sorted(name for names in URGENCY_TIERS.values() for name in names) == sorted(URGENCY_ORDER)
    assert priority(FindingResult("Mass", 0.99, 0.5)) == pytest.approx(0.99)
