"""The triage list of a screening run: images with findings above threshold, highest priority first.

Urgency order (:data:`URGENCY_ORDER`). Worklist prioritisation studies rank chest radiograph findings by how
soon a patient needs someone to act on them. Baltruschat et al., "Smart chest X-ray worklist prioritization
using artificial intelligence: a clinical workflow simulation" (Eur Radiol 31:3837-3845, 2021) rank eight
findings in descending urgency as pneumothorax, pleural effusion, infiltrate, congestion, atelectasis,
cardiomegaly, mass, foreign object; Annarumma et al., "Automated triaging of adult chest radiographs with deep
artificial neural networks" (Radiology 291:196-202, 2019) sort radiographs into critical, urgent, non-urgent
and normal. cxreader keeps Baltruschat's order for the findings it shares with ChestX-ray14 (congestion =
Edema) and places the other six where their clinical course puts them:

1. **Pneumothorax**: can become a tension pneumothorax within minutes to hours; the one "critical" finding.
2. **Effusion**: a large effusion compromises breathing and may be blood or pus; acted upon the same day.
3. **Pneumonia**, 4. **Consolidation**, 5. **Infiltration**: airspace opacities, Baltruschat's "infiltrate"
   group; pneumonia names an acute infection to treat today, consolidation and infiltration are its
   radiographic signs (and those of other acute processes).
6. **Edema**: pulmonary congestion of heart failure or fluid overload, acute but usually already suspected.
7. **Atelectasis**: collapse, often post-operative or from an obstructed airway.
8. **Cardiomegaly**: an enlarged heart, a reason for work-up rather than for immediate action.
9. **Mass**: suspected malignancy, work-up within days (ACR's "within days" category of actionable findings).
10. **Nodule**: followed up over weeks to months (Fleischner Society guidelines, MacMahon et al. 2017).
11. **Hernia**: a hiatal hernia, seldom acute on a chest radiograph.
12. **Emphysema**, 13. **Fibrosis**, 14. **Pleural Thickening**: chronic conditions, important for the
    patient's care but not for the order of a worklist.

The findings of the harmonised label space (:data:`cxreader.labels.EXTRA_FINDINGS`, CheXpert and MIMIC-CXR
observations) that a model trained on several datasets may predict take these places, the 14 above keeping
their order among themselves:

* **Lung Opacity**, urgent, right after Infiltration: the same airspace opacity as Baltruschat's "infiltrate"
  group under the Fleischner Society's preferred name (Hansell et al. 2008).
* **Fracture**, urgent, after Edema: an acute injury (a rib fracture may come with a pneumothorax or a
  haemothorax, and flail chest with several), acted upon the same day.
* **Enlarged Cardiomediastinum**, non-urgent, right before Cardiomegaly: it is mostly the same enlarged
  silhouette, but also covers a widened mediastinum, the one reading of it that needs a prompt look.
* **Lung Lesion**, non-urgent, between Mass and Nodule: a nodule or a mass whose label does not say which.
* **Support Devices** is **not triaged** (:data:`NOT_TRIAGED`): tubes, lines and pacemakers are there because
  someone put them there, so a device never puts an image on the worklist or moves it up. Whether a device is
  misplaced is what would matter, and the label does not say that. The records keep the finding like any other.

Sorting rule (:func:`build_triage`). A finding's *priority* combines its urgency and its probability: the
probability (calibrated, where the checkpoint carries a calibration) times the weight of its urgency tier
(:data:`TIER_WEIGHTS`):

* **critical**, weight 4: Pneumothorax (Annarumma's "critical");
* **urgent**, weight 2: Effusion, Pneumonia, Consolidation, Infiltration, Lung Opacity, Edema, Fracture (acted
  upon the same day);
* **non-urgent**, weight 1: Atelectasis, Enlarged Cardiomediastinum, Cardiomegaly, Mass, Lung Lesion, Nodule,
  Hernia (work-up within days to months);
* **chronic**, weight 0.5: Emphysema, Fibrosis, Pleural Thickening.

An image ranks by its highest-priority finding above threshold (the *leading* finding); ties go to the more
urgent finding (:data:`URGENCY_ORDER`), then to more findings above threshold, then to the source path (a stable
order). So a finding at 0.01 never outranks one at 0.99 of the same tier, whatever their order inside it, and a
critical finding outranks a non-urgent one only when it is at least a quarter as probable (0.25 x 4 = 0.99 x 1
at the margin). Images with no finding above threshold are not on the list, nor are those whose only findings
above threshold are not triaged (Support Devices); an entry lists its triaged findings only.

The printed list never shows patient identifiers (progress output and logs must not); the CSV, an export for
the clinical team, carries the PatientID the records database holds.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cxreader import DISCLAIMER
from cxreader.files import spreadsheet_safe, write_text_atomic
from cxreader.labels import canonical_finding, display_name
from cxreader.storage.records import FindingResult
from cxreader.storage.tables import Finding, Image, Study

#: Urgency tiers and their weights in a finding's priority (see the module docstring).
URGENCY_TIERS: dict[str, tuple[str, ...]] = {
    "critical": ("Pneumothorax",),
    "urgent": ("Effusion", "Pneumonia", "Consolidation", "Infiltration", "Lung_Opacity", "Edema", "Fracture"),
    "non-urgent": (
        "Atelectasis",
        "Enlarged_Cardiomediastinum",
        "Cardiomegaly",
        "Mass",
        "Lung_Lesion",
        "Nodule",
        "Hernia",
    ),
    "chronic": ("Emphysema", "Fibrosis", "Pleural_Thickening"),
}
TIER_WEIGHTS = {"critical": 4.0, "urgent": 2.0, "non-urgent": 1.0, "chronic": 0.5}
#: The findings that are triaged, most urgent first (see the module docstring for the reasons): the tiers in
#: order, each in its order; every finding of the harmonised label space but :data:`NOT_TRIAGED`.
URGENCY_ORDER: tuple[str, ...] = tuple(name for names in URGENCY_TIERS.values() for name in names)
#: Findings that never put an image on the triage list (module docstring: a support device is placed there on
#: purpose).
NOT_TRIAGED: tuple[str, ...] = ("Support_Devices",)
#: The tier :func:`urgency_tier` names for a finding of :data:`NOT_TRIAGED`.
NOT_TRIAGED_TIER = "not triaged"

#: Columns of the triage CSV.
CSV_COLUMNS = (
    "rank",
    "image_id",
    "leading_finding",
    "probability",
    "threshold",
    "findings_above_threshold",
    "source_path",
    "study_date",
    "patient_id",
    "view_position",
    "synthetic",
)


_RANK = {name: index for index, name in enumerate(URGENCY_ORDER)}
_TIER = {name: tier for tier, names in URGENCY_TIERS.items() for name in names}
# Hashes per query when reading a run's results back: well below SQLite's and PostgreSQL's parameter limits.
_QUERY_CHUNK = 500


def urgency_rank(finding: str) -> int:
    """Position of a finding in :data:`URGENCY_ORDER` (0 = most urgent); any accepted spelling. A finding of
    :data:`NOT_TRIAGED` comes after all of them.

    Raises:
        KeyError, ValueError: a name that is no finding (``No Finding``, an unknown name).
    """
    name = canonical_finding(finding)
    if name in NOT_TRIAGED:
        return len(URGENCY_ORDER)
    return _RANK[name]


def urgency_tier(finding: str) -> str:
    """The urgency tier of a finding (a key of :data:`URGENCY_TIERS`, or :data:`NOT_TRIAGED_TIER`); any
    accepted spelling."""
    name = canonical_finding(finding)
    if name in NOT_TRIAGED:
        return NOT_TRIAGED_TIER
    return _TIER[name]


def is_triaged(finding: str) -> bool:
    """Whether a finding above its threshold puts an image on the triage list (all but :data:`NOT_TRIAGED`)."""
    return canonical_finding(finding) not in NOT_TRIAGED


def priority(finding: FindingResult) -> float:
    """A finding's triage priority: its probability times its urgency tier's weight (module docstring); 0 for a
    finding that is not triaged."""
    name = canonical_finding(finding.finding)
    return 0.0 if name in NOT_TRIAGED else TIER_WEIGHTS[_TIER[name]] * float(finding.probability)


@dataclass(frozen=True)
class TriageEntry:
    """One image on the triage list.

    ``positives`` holds the results of the findings above threshold, highest priority first (:func:`make_entry`
    sorts them).
    """

    source_path: str
    positives: tuple[FindingResult, ...]
    image_id: int | None = None
    content_sha256: str | None = None
    study_date: date | None = None
    patient_id: str | None = field(default=None, repr=False)
    view_position: str | None = None
    synthetic: bool = False

    @property
    def leading(self) -> FindingResult:
        """The leading finding: the one above threshold with the highest :func:`priority`."""
        return self.positives[0]


def make_entry(
    *, source_path: str, positives: Iterable[FindingResult], **details: object
) -> TriageEntry | None:
    """A :class:`TriageEntry` with its triaged findings by priority, or ``None`` when none of them is above
    threshold (findings of :data:`NOT_TRIAGED` are left out)."""
    triaged = [item for item in positives if is_triaged(item.finding)]
    ordered = tuple(sorted(triaged, key=lambda item: (-priority(item), urgency_rank(item.finding))))
    if not ordered:
        return None
    return TriageEntry(source_path=source_path, positives=ordered, **details)  # type: ignore[arg-type]


def build_triage(entries: Iterable[TriageEntry | None]) -> list[TriageEntry]:
    """The entries that have a finding above threshold, highest priority first (the module docstring's rule)."""

    def urgency(entry: TriageEntry) -> tuple[float, int, int, str]:
        first = entry.leading
        return (-priority(first), urgency_rank(first.finding), -len(entry.positives), entry.source_path)

    return sorted((entry for entry in entries if entry is not None and entry.positives), key=urgency)


def triage_from_database(
    *, session: Session, checkpoint_id: int, content_sha256s: Iterable[str]
) -> list[TriageEntry]:
    """The triage list of the stored results of one checkpoint for the files with these hashes.

    A resumed run passes the hashes of every file it saw, so the images stored by the interrupted run are on
    its list too.

    Args:
        session: Database session.
        checkpoint_id: The checkpoint whose results are triaged.
        content_sha256s: The files to triage.
    """
    base = (
        select(
            Image.id.label("image_id"),
            Image.source_path,
            Image.content_sha256,
            Image.view_position,
            Image.synthetic,
            Study.study_date,
            Study.patient_id,
            Finding.finding,
            Finding.probability,
            Finding.threshold,
        )
        .join(Finding, Finding.image_id == Image.id)
        .outerjoin(Study, Study.id == Image.study_id)
        .where(
            Image.checkpoint_id == checkpoint_id,
            Image.status == "ok",
            Finding.above_threshold.is_(True),
            Finding.finding.not_in(NOT_TRIAGED),
        )
    )
    hashes = sorted({value.lower() for value in content_sha256s})
    details: dict[int, dict[str, Any]] = {}
    positives: dict[int, list[FindingResult]] = defaultdict(list)
    for start in range(0, len(hashes), _QUERY_CHUNK):
        chunk = hashes[start : start + _QUERY_CHUNK]
        for row in session.execute(base.where(Image.content_sha256.in_(chunk))):
            values = row._asdict()
            finding = FindingResult(values.pop("finding"), values.pop("probability"), values.pop("threshold"))
            positives[row.image_id].append(finding)
            details.setdefault(row.image_id, values)
    return build_triage(
        make_entry(positives=positives[image_id], **values) for image_id, values in details.items()
    )


def format_triage(entries: Sequence[TriageEntry], *, limit: int | None = 50) -> str:
    """The triage list as text for a terminal: rank, most urgent finding, all findings above threshold.

    No patient identifiers are printed (see the module docstring).

    Args:
        entries: The list, as :func:`build_triage` orders it.
        limit: Show at most this many lines (``None`` = all); the rest is counted.
    """
    if not entries:
        return "Triage: no image has a finding above its threshold.\n" + DISCLAIMER + "\n"
    shown = entries if limit is None else entries[:limit]
    lines = [f"Triage: {len(entries)} image(s) with findings above threshold, highest priority first"]
    width = len(str(len(shown)))
    for rank, entry in enumerate(shown, start=1):
        first = entry.leading
        marks = " [SYNTHETIC]" if entry.synthetic else ""
        image = f"image {entry.image_id}  " if entry.image_id is not None else ""
        lines.append(
            f"{rank:>{width}}. {display_name(first.finding):<18} {first.probability:.2f}  {image}"
            f"{entry.source_path}{marks}"
        )
        above = "; ".join(
            f"{display_name(item.finding)} {item.probability:.2f} (>= {item.threshold:.2f})"
            for item in entry.positives
        )
        lines.append(f"{'':>{width}}  above threshold: {above}")
    if len(shown) < len(entries):
        lines.append(f"... and {len(entries) - len(shown)} more (write them all with --triage-csv)")
    lines.append(DISCLAIMER)
    return "\n".join(lines) + "\n"


def write_triage_csv(entries: Sequence[TriageEntry], path: str | Path) -> Path:
    """Write the whole triage list as CSV (:data:`CSV_COLUMNS`) with :func:`~cxreader.files.write_text_atomic`.

    Text cells that a spreadsheet would run as a formula (a PatientID ``=HYPERLINK(...)``) are neutralised
    (:func:`~cxreader.files.spreadsheet_safe`).

    Returns:
        The path written.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rank, entry in enumerate(entries, start=1):
        first = entry.leading
        row = {
            "rank": rank,
            "image_id": entry.image_id,
            "leading_finding": first.finding,
            "probability": f"{first.probability:.4f}",
            "threshold": f"{first.threshold:.4f}",
            "findings_above_threshold": "|".join(item.finding for item in entry.positives),
            "source_path": entry.source_path,
            "study_date": entry.study_date.isoformat() if entry.study_date else "",
            "patient_id": entry.patient_id or "",
            "view_position": entry.view_position or "",
            "synthetic": str(entry.synthetic).lower(),
        }
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
    return write_text_atomic(path, buffer.getvalue())
