"""Reader for the OpenI / Indiana University chest X-ray reports and their image files.

Demner-Fushman et al., "Preparing a collection of radiology examinations for distribution and retrieval",
JAMIA 2016. The public release is ``NLMCXR_reports.tgz`` (3,955 reports, ``ecgen-radiology/N.xml``) and
``NLMCXR_png.tgz`` (7,470 images). One report (``<eCitation>``) carries:

* ``<uId id="CXR1900"/>``, the report id, which prefixes the ids of its images;
* ``<AbstractText Label="COMPARISON|INDICATION|FINDINGS|IMPRESSION">``, the report text;
* ``<MeSH>`` with ``<major>`` terms (``Opacity/lung/upper lobe/right/streaky``, parsed by
  :mod:`cxreader.vocabulary`) and ``<automatic>`` terms (free-text concepts such as ``sternotomy``);
* one ``<parentImage id="CXR1900_IM-0584-1001">`` per image, whose ``<caption>`` describes the whole study
  ("Xray Chest PA and Lateral"). The XML has no per-image view: :attr:`OpenIReport.views` holds the view
  words of the study's captions, not the view of each image.

The image release names each file after its ``parentImage`` id (``CXR1_1_IM-0001-3001.png``); the DICOM
release drops the ``CXR`` prefix (``1_IM-0001-3001.dcm``). Both are recognised.

Nothing in the reader raises on a bad report: malformed XML, a report without images, unknown MeSH headings
and modifiers, duplicate report ids and missing image files are counted in ``warnings`` with a few examples.
Only a source that is missing, or is neither a tar archive nor a directory of XML reports, raises
:class:`DataError`.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxreader.errors import DataError
from cxreader.labels import FINDINGS
from cxreader.vocabulary import (
    MeshAnnotation,
    annotation_tokens,
    is_known_heading,
    is_known_modifier,
    parse_mesh,
)

#: Image file suffixes linked to image ids, preferred first when one id has several files.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm")
#: How many examples each warning kind keeps.
MAX_WARNING_EXAMPLES = 5

# View words of the study captions, in the order they are listed.
_VIEW_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PA", re.compile(r"\bpa\b", re.IGNORECASE)),
    ("AP", re.compile(r"\bap\b", re.IGNORECASE)),
    ("FRONTAL", re.compile(r"\bfrontal\b", re.IGNORECASE)),
    ("LATERAL", re.compile(r"\blat(?:eral)?\b", re.IGNORECASE)),
    ("OBLIQUE", re.compile(r"\boblique\b", re.IGNORECASE)),
    ("DECUBITUS", re.compile(r"\bdecubitus\b", re.IGNORECASE)),
)
# Some captions go on with the comparison study ("... with comparison PA and lateral ..."): its views are not
# this study's, so only the text before "compar" is read.
_COMPARISON = re.compile(r"compar", re.IGNORECASE)


@dataclass
class OpenIReport:
    """One OpenI report.

    Attributes:
        report_id: The ``<uId>`` id, e.g. ``"CXR1900"``.
        image_ids: The ``<parentImage>`` ids, in file order, e.g. ``["CXR1900_IM-0584-1001", ...]``.
        views: View words ("PA", "LATERAL", ...) of the study's captions, not per image (module docstring).
        captions: The ``<caption>`` of each image, aligned with ``image_ids`` ("" when absent).
        findings: FINDINGS text, or None when empty; ``impression``, ``indication`` and ``comparison`` alike.
        mesh_major: The ``<major>`` MeSH terms as written (stripped).
        mesh_automatic: The ``<automatic>`` terms as written (stripped).
        source: Where it was read: a file path, or ``ARCHIVE!MEMBER`` inside a tar archive.
        image_paths: Image id -> image file, filled by :func:`load_openi` when an image folder is given.
    """

    report_id: str
    image_ids: list[str]
    views: list[str]
    captions: list[str]
    findings: str | None
    impression: str | None
    indication: str | None
    comparison: str | None
    mesh_major: list[str]
    mesh_automatic: list[str]
    source: str
    image_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def annotations(self) -> list[MeshAnnotation]:
        """The ``<major>`` terms parsed by :func:`cxreader.vocabulary.parse_mesh`."""
        return [parse_mesh(term) for term in self.mesh_major]


@dataclass
class OpenIDataset:
    """The reports of one OpenI source, sorted by report id (``CXR2`` before ``CXR10``).

    Attributes:
        source: The tar archive or directory they were read from.
        images_dir: The image folder linked to them, if any.
        warnings: Count of each problem met while reading (see the module docstring).
        warning_examples: Up to :data:`MAX_WARNING_EXAMPLES` examples of each warning kind.
    """

    reports: list[OpenIReport]
    source: Path
    images_dir: Path | None = None
    warnings: Counter[str] = field(default_factory=Counter)
    warning_examples: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.reports)

    def __iter__(self) -> Iterator[OpenIReport]:
        return iter(self.reports)


class _WarningLog:
    """Counts warnings by kind and keeps the first few examples of each."""

    def __init__(self, counts: Counter[str] | None, examples: dict[str, list[str]] | None):
        self.counts = counts if counts is not None else Counter()
        self.examples = examples if examples is not None else {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < MAX_WARNING_EXAMPLES:
            kept.append(example)


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value: ``CXR2`` < ``CXR10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def caption_views(caption: str) -> list[str]:
    """View words of a study caption, e.g. ``"PA and lateral chest"`` → ``["PA", "LATERAL"]``."""
    text = _COMPARISON.split(caption, maxsplit=1)[0]
    return [view for view, pattern in _VIEW_PATTERNS if pattern.search(text)]


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return text or None


def _terms(mesh: ET.Element | None, tag: str) -> list[str]:
    if mesh is None:
        return []
    return [text for text in (_text(element) for element in mesh.iter(tag)) if text]


def _parse_report(data: bytes, *, source: str, log: _WarningLog) -> OpenIReport:
    """Parse the XML text of one OpenI report (``source``: where it comes from, for messages).

    Raises:
        DataError: when the text is not well-formed XML or not an ``<eCitation>`` report.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DataError(source, f"malformed XML ({exc})") from exc
    if root.tag != "eCitation":
        raise DataError(source, f"not an OpenI report: root element is <{root.tag}>, expected <eCitation>")

    uid = root.find("uId")
    report_id = (uid.get("id") or "").strip() if uid is not None else ""
    if not report_id:
        # The release names report N.xml and gives it uId CXR<N>; fall back on that.
        stem = Path(source.rsplit("!", 1)[-1]).stem
        report_id = f"CXR{stem}" if stem.isdigit() else stem
        log.add("missing_report_id", f"{source}: no <uId id=...>, using {report_id}")

    sections: dict[str, str | None] = {}
    for element in root.iter("AbstractText"):
        label = (element.get("Label") or "").strip().upper()
        if label and sections.get(label) is None:
            sections[label] = _text(element)

    image_ids: list[str] = []
    captions: list[str] = []
    for image in root.iter("parentImage"):
        image_id = (image.get("id") or "").strip()
        if not image_id:
            log.add("image_without_id", f"{source}: a <parentImage> has no id")
            continue
        image_ids.append(image_id)
        captions.append(_text(image.find("caption")) or "")
    if not image_ids:
        log.add("no_images", f"{report_id} ({source})")
    named_views = {view for caption in captions for view in caption_views(caption)}
    views = [view for view, _ in _VIEW_PATTERNS if view in named_views]

    mesh = root.find("MeSH")
    mesh_major = _terms(mesh, "major")
    if not mesh_major:
        log.add("no_mesh_terms", f"{report_id} ({source})")
    for term in mesh_major:
        annotation = parse_mesh(term)
        if not is_known_heading(annotation.heading):
            log.add("unknown_mesh_heading", f"{report_id}: {term!r}")
        for word in annotation.other_modifiers:
            if not is_known_modifier(word):
                log.add("unknown_mesh_modifier", f"{report_id}: {word!r} in {term!r}")

    return OpenIReport(
        report_id=report_id,
        image_ids=image_ids,
        views=views,
        captions=captions,
        findings=sections.get("FINDINGS"),
        impression=sections.get("IMPRESSION"),
        indication=sections.get("INDICATION"),
        comparison=sections.get("COMPARISON"),
        mesh_major=mesh_major,
        mesh_automatic=_terms(mesh, "automatic"),
        source=source,
    )


def _is_report_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    # "._N.xml" files are macOS resource forks that tar archives made on a Mac carry along.
    return base.lower().endswith(".xml") and not base.startswith("._")


def _iter_directory(directory: Path) -> Iterator[tuple[str, bytes]]:
    folder = directory / "ecgen-radiology" if (directory / "ecgen-radiology").is_dir() else directory
    files = sorted(
        (path for path in folder.iterdir() if path.is_file() and _is_report_name(path.name)),
        key=lambda path: natural_key(path.name),
    )
    if not files:
        raise DataError(directory, "no OpenI XML reports (*.xml, or ecgen-radiology/*.xml) in this directory")
    for path in files:
        yield str(path), path.read_bytes()


def _iter_tar(archive: Path) -> Iterator[tuple[str, bytes]]:
    count = 0
    try:
        # "r|*" streams the archive once, member by member: nothing is extracted to disk.
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                if not member.isfile() or not _is_report_name(member.name):
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                data = handle.read()
                count += 1
                yield f"{archive}!{member.name}", data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(archive, f"cannot read the tar archive after {count} reports ({exc})") from exc
    if count == 0:
        raise DataError(archive, "the tar archive holds no OpenI XML reports (ecgen-radiology/*.xml)")


def _iter_documents(source: Path) -> Iterator[tuple[str, bytes]]:
    if not source.exists():
        raise DataError(
            source, "no such file or directory (expected NLMCXR_reports.tgz or its unpacked folder)"
        )
    if source.is_dir():
        yield from _iter_directory(source)
        return
    try:
        is_tar = tarfile.is_tarfile(source)
    except OSError as exc:
        raise DataError(source, f"cannot read ({exc})") from exc
    if not is_tar:
        raise DataError(source, "not a tar archive or a directory of OpenI XML reports")
    yield from _iter_tar(source)


def iter_openi_reports(
    source: str | Path,
    *,
    warnings: Counter[str] | None = None,
    examples: dict[str, list[str]] | None = None,
) -> Iterator[OpenIReport]:
    """Stream the reports of an OpenI source, in source order.

    Args:
        source: ``NLMCXR_reports.tgz`` (any tar compression, read as a stream) or a directory holding
            ``ecgen-radiology/*.xml`` or the XML files themselves.
        warnings: Counter receiving ``malformed_xml`` and ``not_a_report`` counts (those documents are
            skipped) and per report ``no_images``, ``no_mesh_terms``, ``missing_report_id``,
            ``image_without_id``, ``unknown_mesh_heading`` and ``unknown_mesh_modifier``.
        examples: Receives a few examples of each warning.

    Raises:
        DataError: when the source is missing, is neither a tar archive nor a directory, holds no XML
            reports, or the archive is corrupt.
    """
    log = _WarningLog(warnings, examples)
    for name, data in _iter_documents(Path(source)):
        try:
            yield _parse_report(data, source=name, log=log)
        except DataError as exc:
            kind = "malformed_xml" if exc.reason.startswith("malformed XML") else "not_a_report"
            log.add(kind, str(exc))


def _image_key(path: Path) -> str:
    """The image id a file is named after; the DICOM release drops the "CXR" of the id."""
    return path.stem if path.stem.upper().startswith("CXR") else f"CXR{path.stem}"


def _image_id_variants(image_id: str) -> list[str]:
    """The id itself, and for report 1 the DICOM release's spelling of it.

    Report 1's XML (and the PNG release) repeat the report number: ``CXR1_1_IM-0001-3001``, where the DICOM
    release writes ``1_IM-0001-3001.dcm``.
    """
    shorter = re.sub(r"^CXR(\d+)_\1_", r"CXR\1_", image_id)
    return [image_id] if shorter == image_id else [image_id, shorter]


def _index_images(images_dir: Path, log: _WarningLog) -> dict[str, Path]:
    """Image id -> file for every image file under ``images_dir`` (recursively)."""
    candidates: dict[str, list[Path]] = {}
    for path in images_dir.rglob("*"):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file() or path.name.startswith("."):
            continue
        candidates.setdefault(_image_key(path), []).append(path)
    index = {}
    for image_id, paths in candidates.items():
        paths.sort(
            key=lambda p: (
                IMAGE_SUFFIXES.index(p.suffix.lower()),
                len(p.relative_to(images_dir).parts),
                str(p),
            )
        )
        if len(paths) > 1:
            log.add("duplicate_image_file", f"{image_id}: using {paths[0]} of {len(paths)} files")
        index[image_id] = paths[0]
    return index


def load_openi(source: str | Path, *, images_dir: str | Path | None = None) -> OpenIDataset:
    """Read every report of an OpenI source and, given an image folder, link image ids to files.

    Args:
        source: ``NLMCXR_reports.tgz`` or its unpacked directory (see :func:`iter_openi_reports`).
        images_dir: A folder searched recursively for ``<image id>.png`` (also ``.jpg``, ``.jpeg``, and the
            DICOM release's ``<id without CXR>.dcm``), e.g. the unpacked ``NLMCXR_png.tgz``.

    Returns:
        The reports sorted by report id; a repeated report id keeps its first report (``duplicate_report_id``
        warning). With ``images_dir``, ``image_file_missing`` counts image ids without a file and
        ``image_without_report`` files that no report names.

    Raises:
        DataError: when the source cannot be read (see :func:`iter_openi_reports`) or ``images_dir`` is not a
            directory.
    """
    source = Path(source)
    log = _WarningLog(Counter(), {})
    reports: dict[str, OpenIReport] = {}
    for report in iter_openi_reports(source, warnings=log.counts, examples=log.examples):
        if report.report_id in reports:
            log.add("duplicate_report_id", f"{report.report_id}: kept {reports[report.report_id].source}")
            continue
        reports[report.report_id] = report
    ordered = sorted(reports.values(), key=lambda report: natural_key(report.report_id))

    images_path = None
    if images_dir is not None:
        images_path = Path(images_dir)
        if not images_path.is_dir():
            raise DataError(images_path, "image folder not found (expected a directory of CXR*.png files)")
        index = _index_images(images_path, log)
        named: set[str] = set()
        for report in ordered:
            for image_id in report.image_ids:
                found = next((index[key] for key in _image_id_variants(image_id) if key in index), None)
                if found is not None:
                    named.add(_image_key(found))
                    report.image_paths[image_id] = found
                else:
                    log.add("image_file_missing", f"{report.report_id}: {image_id}")
        for image_id in sorted(set(index) - named, key=natural_key):
            log.add("image_without_report", str(index[image_id]))

    return OpenIDataset(
        reports=ordered,
        source=source,
        images_dir=images_path,
        warnings=log.counts,
        warning_examples=log.examples,
    )


def openi_stats(dataset: OpenIDataset, *, top: int = 20) -> dict[str, Any]:
    """Counts describing an OpenI dataset (what ``cxreader data openi-stats`` prints).

    Args:
        top: How many of the most common annotations and headings to list.

    Returns:
        A JSON-ready dict: report and image counts, reports with each text section, MeSH term counts
        (distinct strings, headings, annotations, how many map to the 14 findings, per finding), the ``top``
        most common annotations (as token sequences) and headings, study views and the warning counts.
    """
    reports = dataset.reports
    image_ids = [image_id for report in reports for image_id in report.image_ids]
    majors = [term for report in reports for term in report.mesh_major]
    annotations = [annotation for report in reports for annotation in report.annotations]
    headings = Counter(annotation.heading for annotation in annotations)
    heading_findings: dict[str, Counter[str]] = {}
    for annotation in annotations:
        if annotation.finding is not None:
            heading_findings.setdefault(annotation.heading, Counter())[annotation.finding] += 1
    per_finding = Counter(annotation.finding for annotation in annotations if annotation.finding)
    sequences = Counter(" ".join(annotation_tokens(annotation)) for annotation in annotations)
    automatic = [term for report in reports for term in report.mesh_automatic]
    views = Counter("+".join(report.views) or "(none named)" for report in reports)

    stats: dict[str, Any] = {
        "source": str(dataset.source),
        "reports": len(reports),
        "images": {
            "ids": len(image_ids),
            "distinct_ids": len(set(image_ids)),
            "reports_without_images": sum(1 for report in reports if not report.image_ids),
        },
        "reports_with": {
            section: sum(1 for report in reports if getattr(report, section))
            for section in ("findings", "impression", "indication", "comparison")
        },
        "reports_with_findings_or_impression": sum(1 for r in reports if r.findings or r.impression),
        "study_views": dict(views.most_common()),
        "mesh": {
            "major_terms": len(majors),
            "distinct_major_strings": len(set(majors)),
            "distinct_annotations": len(sequences),
            "distinct_headings": len(headings),
            "headings_mapped_to_findings": len(heading_findings),
            "terms_mapped_to_findings": sum(per_finding.values()),
            "reports_with_a_mapped_finding": sum(
                1 for report in reports if any(a.finding for a in report.annotations)
            ),
            "normal_reports": sum(1 for report in reports if report.mesh_major == ["normal"]),
            "per_finding": {finding: per_finding.get(finding, 0) for finding in FINDINGS},
            "automatic_terms": len(automatic),
            "distinct_automatic_terms": len(set(automatic)),
            "top_annotations": [[tokens, count] for tokens, count in sequences.most_common(top)],
            "top_headings": [
                [heading, count, "|".join(sorted(heading_findings.get(heading, {}))) or None]
                for heading, count in headings.most_common(top)
            ],
        },
        "warnings": dict(sorted(dataset.warnings.items())),
        "warning_examples": {kind: list(values) for kind, values in sorted(dataset.warning_examples.items())},
    }
    if dataset.images_dir is not None:
        stats["images"]["images_dir"] = str(dataset.images_dir)
        stats["images"]["linked_files"] = sum(len(report.image_paths) for report in reports)
    return stats
