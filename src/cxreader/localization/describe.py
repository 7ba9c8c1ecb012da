"""Grounded context descriptions: where a positive finding is, how big and how severe, in words.

For every finding whose probability reaches its operating threshold, a structured description and one
sentence are built from three things only: the finding's heatmap (:mod:`cxreader.localization.cam`), its
probability, and the image geometry (:mod:`cxreader.localization.geometry`). The vocabulary follows chest
radiograph reporting (Hansell et al., "Fleischner Society: Glossary of Terms for Thoracic Imaging",
Radiology 2008) and the synthetic ground truth of :mod:`cxreader.synthetic`.

The rules, in order:

* **Thorax first**: the map is restricted to the thorax of the geometry estimate (why:
  :func:`~cxreader.localization.cam.restrict_heatmap`).
* **Involved region**: the pixels where the heatmap reaches ``region_level`` (``diffuse_level`` for Edema,
  Emphysema and Fibrosis, which involve much of both lungs while the map peaks where they are most
  conspicuous: read at the focal findings' level, their region keeps to one peak); the **box** is the most
  salient connected component at the box level (:func:`~cxreader.localization.boxes.boxes_from_heatmap`),
  in original-image pixels.
* **Side, in the PATIENT's frame.** In frontal views (PA and AP) the image is displayed as if facing the
  patient, so the patient's RIGHT is on the image's LEFT (the radiographic convention; both PA and AP films
  are hung this way). The heatmap mass of the involved region on each side of the estimated midline is
  compared: ``bilateral`` when the smaller side holds at least ``bilateral_ratio`` of the larger (a lower
  ratio, ``diffuse_bilateral_ratio``, for Edema, Emphysema and Fibrosis, which are bilateral processes in
  the great majority of films), otherwise the larger side. Cardiomegaly and Hiatus hernia are ``midline``
  by definition. The view position comes from the caller (Data_Entry CSV) or the DICOM ``ViewPosition``;
  when neither gives one, :data:`DEFAULT_VIEW` (PA, the standard erect chest film; AP shares its left/right
  convention) is assumed and ``view_assumed`` is set. In a lateral view (LL, RL, LATERAL) left and right
  cannot be told from the image: the side is ``None`` and the sentence names none.
* **Zone**: the third of the lung height (apex to diaphragm of the involved lung, or of both) holding the
  heatmap-weighted centroid of the involved region: ``upper``, ``middle`` or ``lower``. Special zones:
  ``diffuse`` when the region covers at least ``diffuse_cover`` of every third of the involved lung(s);
  ``perihilar`` for a bilateral finding whose centroid lies in the middle zone and whose region keeps to the
  medial half of the lungs (not for Emphysema and Fibrosis, whose distribution is told by zone);
  Cardiomegaly is ``cardiac`` and Hiatus hernia ``retrocardiac`` by definition.
  The sentence adds ``apical``/``basal`` when the centroid lies in the top/bottom sixth of the lung.
* **Several foci** (Nodule and Mass): when the involved region falls apart into separate foci
  (:mod:`cxreader.localization.foci`: 8-connected components holding at least ``focus_share`` of the
  heaviest one's heatmap mass), each focus gets its own side and zone by the rules above (``foci``), and the
  sentence names them all: "Moderate multiple nodules (2): right upper zone; left lower zone." The
  finding-level side and zone still describe the finding as a whole.
* **Organ**: fixed per finding (:data:`cxreader.labels.ORGAN_OF`): lung, pleura, heart, mediastinum, diaphragm,
  bone or device.
* **Extent**: the fraction of the hemithorax (the lung field of the involved side, both fields when
  bilateral or midline) covered by the involved region.
* **Size**: with a known pixel spacing, the longer side of the box in centimetres. A nodule is under 3 cm
  and a mass over 3 cm (Fleischner glossary): when the measured size contradicts the label, the sentence
  says so. Without a spacing, ``size_cm`` is ``None``.
* **Severity** (documented rule): an extent grade (0 below ``severity_extent[0]``, 1 below ``[1]``, else 2)
  plus a confidence grade (how far the probability lies above the finding's threshold ``t``: 0 in the
  lower third of ``[t, 1]``, 1 in the middle third, 2 in the upper third); their sum 0-1 is ``mild``,
  2-3 ``moderate`` and 4 ``severe``. Both a small faint finding and a large uncertain one read as mild or
  moderate; only a large and confident one is severe.

**The findings of the harmonised label space** (:data:`cxreader.labels.EXTRA_FINDINGS`, from CheXpert, MIMIC-CXR
and PadChest) follow the same rules where their words mean something, and make no claim where they would not:

* **Lung Opacity** is a parenchymal finding like Consolidation: side, zone (perihilar included), extent and
  severity by the rules above.
* **Lung Lesion** is focal like a nodule or a mass: the rules above, several foci named apart, and its size in
  centimetres (without the nodule/mass remark: a lesion's label says nothing of its size).
* **Enlarged Cardiomediastinum** is the cardiomediastinal silhouette itself: ``midline`` by definition like
  Cardiomegaly, and no zone (the silhouette is not in a third of a lung); severity by the rule above.
* **Fracture** (organ ``bone``): the side is read from the map (a rib or clavicle fracture has one), but no
  zone (the zones are thirds of the lung height; the map cannot name the rib), no size (a box around a
  class activation map is not the length of a fracture line) and no severity (displacement and number of
  fractures cannot be read from the map's extent or the probability): "Right-sided fracture."
* **Support Devices** (organ ``device``): no side, zone, size or severity, only that the model sees one; the
  box still shows where the map points. Tubes and lines cross the midline and run through several zones, and
  a device is not graded: "Support devices present."

The numbers (:class:`DescriptionRules`, defaults :data:`DEFAULT_RULES`) were set on the synthetic validation
split by the coordinate search of ``benchmarks/localization_synthetic.py`` and are written here, not learned
at run time; ``benchmarks/BENCHMARKS.md`` has how they score. ``bilateral_ratio`` is 0.4 rather than a
higher value the search scored alike, so that two nearly equal effusions whose maps differ in brightness stay
bilateral. The limit of the rules is the map: it points at the most conspicuous part of a finding (the apex
of a pneumothorax, the upper zones in emphysema), not always at the centroid of the whole finding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxreader.data.io import LoadedImage
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS, HARMONISED_LABELS, ORGAN_OF, canonical_finding
from cxreader.localization.boxes import DEFAULT_BOX_THRESHOLD, Box, box_threshold_for, boxes_from_heatmap
from cxreader.localization.cam import restrict_heatmap
from cxreader.localization.foci import FOCAL_FINDINGS, FOCUS_SHARE, foci_of
from cxreader.localization.geometry import THORAX_MARGIN, ChestGeometry, estimate_geometry
from cxreader.vocabulary import SEVERITIES, SIZE_LARGE_CM

#: View assumed when neither the CSV nor the DICOM header gives one.
DEFAULT_VIEW = "PA"
FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL")
_DIFFUSE_BY_NATURE = ("Edema", "Emphysema", "Fibrosis")
#: Findings whose distribution is described by zone, never as perihilar: emphysema is upper-zone or
#: panlobular, fibrosis peripheral and basal (Hansell et al. 2008); the hila are not where they gather.
_NEVER_PERIHILAR = ("Emphysema", "Fibrosis")


@dataclass(frozen=True)
class DescriptionRules:
    """The numbers of the description rules (module docstring), set on synthetic validation data.

    Attributes:
        region_level: Heatmap level of the involved region (side, zone, extent).
        diffuse_level: The same for Edema, Emphysema and Fibrosis (why: module docstring).
        bilateral_ratio: Smaller side's share of the larger side's heatmap mass that makes a finding bilateral.
        diffuse_bilateral_ratio: The same for Edema, Emphysema and Fibrosis.
        diffuse_cover: Share of every third of the lung the region must cover to be called diffuse.
        severity_extent: Extent limits of the extent grades 0/1/2 of the severity rule.
        box_threshold: Heatmap level of the box.
        focus_share: Share of the heaviest focus's map mass that makes another component of a nodule's or a
            mass's region a focus of its own (:mod:`cxreader.localization.foci`).
    """

    region_level: float = 0.7
    diffuse_level: float = 0.1
    bilateral_ratio: float = 0.4
    diffuse_bilateral_ratio: float = 0.05
    diffuse_cover: float = 1.0
    severity_extent: tuple[float, float] = (0.1, 0.25)
    box_threshold: float = DEFAULT_BOX_THRESHOLD
    focus_share: float = FOCUS_SHARE


#: The rules used unless a caller passes others.
DEFAULT_RULES = DescriptionRules()


def rules_for(model: object) -> DescriptionRules:
    """:data:`DEFAULT_RULES` with the box level of the model's pooling (:func:`box_threshold_for`)."""
    return dataclasses.replace(DEFAULT_RULES, box_threshold=box_threshold_for(model))


#: The noun each finding takes in a sentence.
NOUN_OF = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "pleural effusion",
    "Infiltration": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "Consolidation": "consolidation",
    "Edema": "pulmonary edema",
    "Emphysema": "emphysema",
    "Fibrosis": "fibrosis",
    "Pleural_Thickening": "pleural thickening",
    "Hernia": "hiatus hernia",
    "Lung_Opacity": "lung opacity",
    "Lung_Lesion": "lung lesion",
    "Enlarged_Cardiomediastinum": "enlarged cardiomediastinal silhouette",
    "Fracture": "fracture",
    "Support_Devices": "support devices",
}
_FIXED_PLACE: dict[str, tuple[str, str | None]] = {
    "Cardiomegaly": ("midline", "cardiac"),
    "Hernia": ("midline", "retrocardiac"),
    "Enlarged_Cardiomediastinum": ("midline", None),
}
#: Findings whose side and zone are fixed by definition, never read from the map.
PLACED_BY_DEFINITION = tuple(_FIXED_PLACE)
#: Findings described without a zone, size or severity (module docstring: a bone, a device).
UNGRADED = ("Fracture", "Support_Devices")
#: Findings described without a side either (a device).
UNSIDED = ("Support_Devices",)
#: Findings whose size the sentence gives (focal findings).
_SIZED = ("Nodule", "Mass", "Lung_Lesion")


@dataclass
class FindingDescription:
    """The grounded description of one positive finding.

    Attributes:
        side: ``right``/``left`` (the PATIENT's), ``bilateral``, ``midline``, or ``None`` (lateral view, or a
            support device).
        zone: ``upper``/``middle``/``lower``, ``perihilar``, ``diffuse``, ``cardiac`` or ``retrocardiac``;
            ``None`` where the finding has none (enlarged cardiomediastinum, fracture, support devices).
        organ: ``lung``, ``pleura``, ``heart``, ``mediastinum``, ``diaphragm``, ``bone`` or ``device``.
        extent: Fraction of the hemithorax (or of both lung fields) covered, in [0, 1].
        size_cm: Longer side of the box in cm, ``None`` without a pixel spacing (and for a fracture or a device).
        severity: ``mild``, ``moderate`` or ``severe`` (rule in the module docstring); ``None`` for a fracture
            or a device.
        box: ``[x, y, w, h]`` of the most salient region in original-image pixels, ``None`` if none.
        sentence: One sentence for the report.
        view: The view position used; ``view_assumed`` is True when it was the default.
        foci: For a nodule or mass whose map shows several separate foci, one entry per focus, heaviest
            first: ``{"side", "zone", "box", "size_cm"}`` read by the rules from that focus alone (the
            finding-level ``side`` and ``zone`` describe the finding as a whole); empty otherwise.
    """

    finding: str
    probability: float
    side: str | None
    zone: str | None
    organ: str
    extent: float
    size_cm: float | None
    severity: str | None
    box: list[float] | None
    sentence: str
    view: str = DEFAULT_VIEW
    view_assumed: bool = False
    foci: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        data = {
            "finding": self.finding,
            "probability": round(float(self.probability), 4),
            "side": self.side,
            "zone": self.zone,
            "organ": self.organ,
            "extent": round(float(self.extent), 3),
            "size_cm": _rounded(self.size_cm),
            "severity": self.severity,
            "box": self.box,
            "sentence": self.sentence,
        }
        if self.foci:
            data["foci"] = [dict(focus) for focus in self.foci]
        return data


def normalise_view(view_position: str | None) -> tuple[str, bool]:
    """The view to use and whether it was assumed: ``("PA", True)`` when unknown (see module docstring)."""
    text = (view_position or "").strip().upper()
    if text in FRONTAL_VIEWS or text in LATERAL_VIEWS:
        return text, False
    return DEFAULT_VIEW, True


def patient_side(image_side: str, view: str) -> str | None:
    """The patient's side shown on the image's ``"left"``/``"right"`` half (convention: module docstring).

    ``None`` in a lateral view.
    """
    if view in LATERAL_VIEWS:
        return None
    return "right" if image_side == "left" else "left"


def _by_finding(values: Mapping[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    return {canonical_finding(name): convert(value) for name, value in values.items()}


def describe_findings(
    probabilities: Mapping[str, float],
    heatmaps: Mapping[str, np.ndarray],
    image: LoadedImage | np.ndarray,
    thresholds: Mapping[str, float] | Sequence[float],
    *,
    view_position: str | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
    original_size: tuple[int, int] | None = None,
    rules: DescriptionRules = DEFAULT_RULES,
    labels: Sequence[str] = FINDINGS,
) -> list[FindingDescription]:
    """Describe every finding whose probability reaches its threshold, most probable first.

    Args:
        probabilities: Finding -> the model's probability.
        heatmaps: Finding -> map in [0, 1] on the model's input grid (:func:`~cxreader.localization.cam.heatmaps`).
            Every positive finding needs its map.
        image: The decoded image (its pixels give the geometry; its DICOM view position and pixel spacing are
            used unless overridden), or a bare ``(H, W)`` array.
        thresholds: Per-finding operating thresholds: a mapping, or a sequence in ``labels`` order.
        view_position: Overrides the image's view position (e.g. from the Data_Entry CSV).
        pixel_spacing_mm: ``(row, column)`` spacing of ``image``'s pixels in mm; overrides the DICOM one.
        original_size: ``(width, height)`` of the original when ``image`` is a smaller rendition of it (the
            display image of screening): boxes and sizes are then in the original's pixels, and
            ``pixel_spacing_mm`` is the original's. Default: the size of ``image``.
        labels: The order of ``thresholds`` when it is a sequence (the model's labels; default the 14 CheXNet
            findings).

    Raises:
        ConfigError: a positive finding without a heatmap, malformed thresholds.
    """
    pixels = image.pixels if isinstance(image, LoadedImage) else np.asarray(image)
    view, assumed = normalise_view(view_position if view_position else getattr(image, "view_position", None))
    spacing = pixel_spacing_mm if pixel_spacing_mm is not None else getattr(image, "pixel_spacing_mm", None)
    if not isinstance(thresholds, Mapping):
        if len(thresholds) != len(labels):
            raise ConfigError(
                f"thresholds must give one value per finding ({len(labels)}), got {len(thresholds)}"
            )
        thresholds = dict(zip(labels, thresholds, strict=True))
    limits = _by_finding(thresholds, float)
    probabilities = _by_finding(probabilities, float)
    maps = _by_finding(heatmaps, lambda value: np.asarray(value, dtype=np.float32))
    unset = [name for name in probabilities if name not in limits]
    if unset:
        raise ConfigError(f"no threshold given for {', '.join(unset)}")
    # Ties of probability keep the canonical order (the 14 CheXNet findings first, then the extra ones).
    positives = [
        name for name in HARMONISED_LABELS if name in probabilities and probabilities[name] >= limits[name]
    ]
    positives.sort(key=lambda name: -probabilities[name])
    height, width = pixels.shape[:2]
    geometry = estimate_geometry(pixels) if positives else None  # an image without a positive needs none
    descriptions = []
    for name in positives:
        if name not in maps:
            raise ConfigError(f"no heatmap given for the positive finding {name}")
        description = describe_finding(
            name,
            probabilities[name],
            maps[name],
            geometry,
            threshold=limits[name],
            view=view,
            original_size=original_size or (width, height),
            pixel_spacing_mm=spacing,
            rules=rules,
        )
        description.view_assumed = assumed
        descriptions.append(description)
    return descriptions


def describe_finding(
    finding: str,
    probability: float,
    heatmap: np.ndarray,
    geometry: ChestGeometry,
    *,
    threshold: float,
    view: str = DEFAULT_VIEW,
    original_size: tuple[int, int] | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
    rules: DescriptionRules = DEFAULT_RULES,
) -> FindingDescription:
    """Describe one finding from its heatmap (rules in the module docstring).

    Args:
        heatmap: ``(H, W)`` map in [0, 1].
        geometry: The image geometry on the heatmap's grid (``W x H``).
        threshold: The finding's operating threshold (for the confidence grade).
        view: Normalised view position (see :func:`normalise_view`).
        original_size: ``(width, height)`` of the original image; the box is given in its pixels.
        pixel_spacing_mm: ``(row, column)`` spacing of the original image's pixels.
    """
    name = canonical_finding(finding)
    values = np.asarray(heatmap, dtype=np.float32)
    height, width = values.shape
    if (geometry.width, geometry.height) != (width, height):
        geometry = geometry.scaled_to(width, height)
    original = original_size or (width, height)
    values = restrict_heatmap(values, geometry.thorax_mask(THORAX_MARGIN))
    boxes = boxes_from_heatmap(values, rules.box_threshold, original_size=original, max_boxes=1)
    box = boxes[0] if boxes else None
    if not float(values.max()) > 0.0:
        # An all-zero map (a Grad-CAM whose ReLU removed everything) shows no place: say so, invent none.
        side = zone = box = size_cm = None
        extent, foci = 0.0, []
        severity = None if name in UNGRADED else _severity(extent, probability, threshold, rules)
        noun = f"{severity} {NOUN_OF[name]}" if severity is not None else NOUN_OF[name]
        sentence = f"{noun[:1].upper()}{noun[1:]} (the heatmap does not show where)."
    elif name in UNGRADED:
        # A bone or a device: the side where it makes sense, no zone, size or severity (module docstring).
        region = values >= rules.region_level
        if not region.any():
            region = values >= values.max()
        side, image_sides = (None, ("left", "right"))
        if name not in UNSIDED:
            side, image_sides = _side(name, values, region, geometry, view, rules)
        zone = size_cm = severity = None
        extent, foci = _extent(region, geometry, image_sides), []
        sentence = _ungraded_sentence(name, side)
    else:
        level = rules.diffuse_level if name in _DIFFUSE_BY_NATURE else rules.region_level
        region = values >= level
        if not region.any():  # a map below the region level everywhere: its maximum marks the place
            region = values >= values.max()
        side, image_sides = _side(name, values, region, geometry, view, rules)
        zone, qualifier = _zone(name, values, region, geometry, image_sides, side, rules)
        extent = _extent(region, geometry, image_sides)
        size_cm = _size_cm(box, pixel_spacing_mm)
        severity = _severity(extent, probability, threshold, rules)
        foci = _foci(name, values, level, geometry, view, original, pixel_spacing_mm, rules)
        if foci:
            sentence = _multifocal_sentence(name, severity, foci)
        else:
            sentence = _sentence(name, severity, side, zone, qualifier, size_cm)
    return FindingDescription(
        finding=name,
        probability=float(probability),
        side=side,
        zone=zone,
        organ=ORGAN_OF[name],
        extent=extent,
        size_cm=size_cm,
        severity=severity,
        box=box.to_list() if box is not None else None,
        sentence=sentence,
        view=view,
        foci=foci,
    )


def _foci(
    name: str,
    values: np.ndarray,
    level: float,
    geometry: ChestGeometry,
    view: str,
    original: tuple[int, int],
    spacing: tuple[float, float] | None,
    rules: DescriptionRules,
) -> list[dict[str, Any]]:
    """Side, zone, box and size of every focus of a multifocal nodule or mass; empty for a single focus."""
    if name not in FOCAL_FINDINGS:
        return []
    found = foci_of(values, level, rules.focus_share)
    if len(found) < 2:
        return []
    height, width = values.shape
    sx, sy = original[0] / width, original[1] / height
    described = []
    for focus in found:
        image_side = geometry.image_side_of(focus.centre_x)
        box = focus.box.scaled(sx, sy)
        described.append(
            {
                "side": patient_side(image_side, view),
                "zone": geometry.zone_of(focus.centre_y, (image_side,)),
                "box": box.to_list(),
                "size_cm": _rounded(_size_cm(box, spacing)),
            }
        )
    return described


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def _side(
    name: str,
    values: np.ndarray,
    region: np.ndarray,
    geometry: ChestGeometry,
    view: str,
    rules: DescriptionRules,
) -> tuple[str | None, tuple[str, ...]]:
    """Patient side and the image halves involved."""
    if name in _FIXED_PLACE:
        return _FIXED_PLACE[name][0], ("left", "right")
    weight = np.where(region, values, 0.0)
    on_left = geometry.half_mask(("left",))
    left_mass, right_mass = float(weight[on_left].sum()), float(weight[~on_left].sum())
    ratio = rules.diffuse_bilateral_ratio if name in _DIFFUSE_BY_NATURE else rules.bilateral_ratio
    larger, smaller = max(left_mass, right_mass), min(left_mass, right_mass)
    if larger > 0 and smaller >= ratio * larger:
        return ("bilateral" if view not in LATERAL_VIEWS else None), ("left", "right")
    image_side = "left" if left_mass >= right_mass else "right"
    return patient_side(image_side, view), (image_side,)


def _zone(
    name: str,
    values: np.ndarray,
    region: np.ndarray,
    geometry: ChestGeometry,
    image_sides: tuple[str, ...],
    side: str | None,
    rules: DescriptionRules,
) -> tuple[str | None, str | None]:
    """Zone and an optional apical/basal qualifier for the sentence."""
    if name in _FIXED_PLACE:
        return _FIXED_PLACE[name][1], None
    involved = region & geometry.half_mask(image_sides)
    if not involved.any():  # none of the region lies in the involved halves: all of it counts
        involved = region
    rows, cols = np.nonzero(involved)
    centre_y = float(np.average(rows + 0.5, weights=values[rows, cols]))
    top, bottom = geometry.zone_bounds(image_sides)
    lung_height = max(bottom - top, 1e-6)
    third = lung_height / 3.0
    covers = []
    lungs = geometry.lung_mask(image_sides)
    for k in range(3):
        band = slice(int(round(top + k * third)), int(round(top + (k + 1) * third)))
        covers.append(float((lungs[band] & region[band]).sum()) / max(1.0, float(lungs[band].sum())))
    if min(covers) >= rules.diffuse_cover:
        return "diffuse", None
    zone = geometry.zone_of(centre_y, image_sides)
    if (
        side == "bilateral"
        and zone == "middle"
        and name not in _NEVER_PERIHILAR
        and _medial(cols, geometry, image_sides)
    ):
        return "perihilar", None
    return zone, _qualifier(zone, (centre_y - top) / lung_height)


def _qualifier(zone: str, position: float) -> str | None:
    """``apical`` for an upper-zone finding in the top sixth of the lung, ``basal`` for a lower-zone one in the
    bottom sixth."""
    if zone == "upper" and position < 1 / 6:
        return "apical"
    if zone == "lower" and position > 5 / 6:
        return "basal"
    return None


def _medial(cols: np.ndarray, geometry: ChestGeometry, image_sides: tuple[str, ...]) -> bool:
    """Whether most of the region's pixels (their columns ``cols``, never empty) lie in the medial half of the
    lung fields (towards the hila)."""
    medial = 0
    for image_side in image_sides:
        lung = geometry.lung(image_side)
        centre = 0.5 * (lung.x0 + lung.x1)
        if image_side == "left":
            medial += int(((cols >= centre) & (cols < geometry.midline)).sum())
        else:
            medial += int(((cols < centre) & (cols >= geometry.midline)).sum())
    return medial >= 0.5 * cols.size


def _extent(region: np.ndarray, geometry: ChestGeometry, image_sides: tuple[str, ...]) -> float:
    lungs = geometry.lung_mask(image_sides)
    area = float(lungs.sum())
    return float((region & lungs).sum()) / area if area > 0 else 0.0


def _size_cm(box: Box | None, spacing: tuple[float, float] | None) -> float | None:
    if box is None or spacing is None:
        return None
    row_mm, col_mm = spacing
    return max(box.w * col_mm, box.h * row_mm) / 10.0


def _severity(extent: float, probability: float, threshold: float, rules: DescriptionRules) -> str:
    low, high = rules.severity_extent
    extent_grade = 0 if extent < low else 1 if extent < high else 2
    span = max(1.0 - threshold, 1e-6)
    above = (probability - threshold) / span
    confidence_grade = 0 if above < 1 / 3 else 1 if above < 2 / 3 else 2
    total = extent_grade + confidence_grade
    return SEVERITIES[0 if total <= 1 else 1 if total <= 3 else 2]


def _ungraded_sentence(name: str, side: str | None) -> str:
    """``"Right-sided fracture."``, ``"Bilateral fractures."``, ``"Support devices present."``."""
    if name == "Support_Devices":
        return "Support devices present."
    noun = NOUN_OF[name]
    if side == "bilateral":
        return f"Bilateral {noun}s."
    if side in ("right", "left"):
        return f"{side.capitalize()}-sided {noun}."
    return f"{noun.capitalize()}."


def _sentence(
    name: str, severity: str, side: str | None, zone: str | None, qualifier: str | None, size_cm: float | None
) -> str:
    words = [severity.capitalize()]
    if side in ("right", "left", "bilateral"):
        words.append(side)
    words.append(NOUN_OF[name])
    text = " ".join(words)
    if zone in ("upper", "middle", "lower"):
        text += f", {zone} zone" + (f" ({qualifier})" if qualifier else "")
    elif zone in ("perihilar", "diffuse", "retrocardiac"):
        text += f", {zone}"
    if size_cm is not None and name in _SIZED:
        text += f", about {size_cm:.1f} cm"
        if name == "Nodule" and size_cm > SIZE_LARGE_CM:
            text += " (larger than 3 cm: mass-sized)"
        elif name == "Mass" and size_cm < SIZE_LARGE_CM:
            text += " (under 3 cm: nodule-sized)"
    return text + "."


def _multifocal_sentence(name: str, severity: str, foci: Sequence[Mapping[str, Any]]) -> str:
    """``"Moderate multiple nodules (3): right upper zone, about 1.9 cm; left lower zone; ..."``."""
    places = []
    for focus in foci:
        words = [focus["side"]] if focus["side"] else []
        words.append(f"{focus['zone']} zone")
        text = " ".join(words)
        if focus["size_cm"] is not None:
            text += f", about {focus['size_cm']:.1f} cm"
        places.append(text)
    return f"{severity.capitalize()} multiple {_PLURAL_OF[name]} ({len(foci)}): {'; '.join(places)}."


_PLURAL_OF = {"Nodule": "nodules", "Mass": "masses", "Lung_Lesion": "lung lesions"}
