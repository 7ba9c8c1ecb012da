"""The 14 ChestX-ray14 findings drawn on the SYNTHETIC chest phantom, with precise records of each.

:func:`draw_chest` draws one image. Findings are drawn with a look modelled on their textbook radiographic
signs (Felson, *Principles of Chest Roentgenology*; Hansell et al., "Fleischner Society: Glossary of Terms for
Thoracic Imaging", Radiology 2008) and are kept visually distinct so that a small CNN can separate them. Every
drawn instance is recorded precisely (:class:`DrawnFinding`): side, zone, organ, bounding box, extent, size
and severity.

Vocabulary of the records (:mod:`cxreader.vocabulary`): sides :data:`~cxreader.vocabulary.SIDES`, zones
:data:`~cxreader.vocabulary.ZONES` plus :data:`~cxreader.vocabulary.SPECIAL_ZONES`, organs
:data:`~cxreader.vocabulary.ORGANS`, severities :data:`~cxreader.vocabulary.SEVERITIES`. A finding drawn on
both sides as two separate processes (a bilateral effusion, bilateral apical caps) is recorded as two
instances, one per side; a finding that is bilateral by nature (Edema, Emphysema, Fibrosis) is one instance
with side ``"bilateral"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter

from cxreader.labels import FINDINGS, NO_FINDING, ORGAN_OF, canonical_finding
from cxreader.synthetic.anatomy import EPS, FIELD_OF_VIEW_CM, Anatomy, Lung, sample_anatomy
from cxreader.synthetic.render import Scene, ellipse_distance, hairline, ramp
from cxreader.vocabulary import SEVERITIES, ZONES

_SEVERITY_P = (0.4, 0.4, 0.2)
_SIGN = {"right": -1, "left": 1}
_SIDE_OF_SIGN = {-1: "right", 1: "left"}
_BILATERAL = ("Edema", "Emphysema", "Fibrosis")
_MIDLINE = ("Cardiomegaly", "Hernia")


@dataclass(frozen=True)
class FindingRequest:
    """A finding to draw; severity and side are drawn at random when left as None.

    Attributes:
        finding: One of :data:`~cxreader.labels.FINDINGS` (any accepted spelling).
        severity: One of :data:`~cxreader.vocabulary.SEVERITIES`, or None.
        side: "right" or "left" (the patient's side; Effusion also "bilateral"), or None. Bilateral and
            midline findings accept only their own side or None.
    """

    finding: str
    severity: str | None = None
    side: str | None = None


@dataclass(frozen=True)
class DrawnFinding:
    """One drawn instance of a finding, as recorded in the ground truth.

    Attributes:
        finding: Canonical finding name.
        side: "right"/"left" (the patient's), "bilateral" or "midline".
        zone: "upper"/"middle"/"lower" (third of the lung height holding the centroid) or a
            :data:`~cxreader.vocabulary.SPECIAL_ZONES` value.
        organ: One of :data:`~cxreader.vocabulary.ORGANS`.
        x, y, w, h: Bounding box in pixels (top-left corner, width, height) of the drawn abnormality.
        extent: Fraction of the hemithorax's lung area covered (right/left), or of the thorax area
            (lungs, mediastinum and heart; bilateral and midline findings).
        size_cm: Diameter for nodules, masses and hernias; otherwise the longest side of the box.
        severity: One of :data:`~cxreader.vocabulary.SEVERITIES`; drawn first, it sets how big and dense the
            finding is.
    """

    finding: str
    side: str
    zone: str
    organ: str
    x: float
    y: float
    w: float
    h: float
    extent: float
    size_cm: float
    severity: str


@dataclass(frozen=True)
class PhantomImage:
    """A drawn image: 8-bit pixels, the drawn findings and the anatomy they were drawn on."""

    pixels: np.ndarray
    findings: tuple[DrawnFinding, ...]
    anatomy: Anatomy


@dataclass
class _Plan:
    finding: str
    severity: str
    side: str
    rng: np.random.Generator
    lung_before: Lung | None = None

    @property
    def level(self) -> int:
        """0, 1 or 2 for mild, moderate or severe: the index into the drawers' per-severity tables."""
        return SEVERITIES.index(self.severity)

    def uniform(self, *ranges: tuple[float, float]) -> float:
        """A value drawn from this severity's (low, high) range; ``ranges`` holds one per severity."""
        low, high = ranges[self.level]
        return float(self.rng.uniform(low, high))


def _entropy(seed: int | Sequence[int]) -> tuple[int, ...]:
    values = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
    if not values or any(int(value) < 0 for value in values):
        raise ValueError(f"seed must be a non-negative integer or a sequence of them, got {seed!r}")
    return tuple(int(value) for value in values)


def _rng(entropy: tuple[int, ...], stream: int) -> np.random.Generator:
    # Independent streams per purpose (anatomy, noise, each finding) so that adding a finding never changes
    # the rest of the picture: the finding-free image is the exact reference for what a finding drew.
    return np.random.default_rng(np.random.SeedSequence([*entropy, stream]))


def _record(
    scene: Scene,
    plan: _Plan,
    footprint: np.ndarray,
    *,
    sign: int | None = None,
    zone: str | None = None,
    size_cm: float | None = None,
    diffuse_possible: bool = False,
) -> DrawnFinding:
    """The record of what a drawer drew: box, extent and zone measured on its footprint (a boolean mask).

    The side is ``plan.side``, or the side of ``sign`` for a drawer that draws on each side separately.
    """
    side = plan.side if sign is None else _SIDE_OF_SIGN[sign]
    rows = np.flatnonzero(footprint.any(axis=1))
    cols = np.flatnonzero(footprint.any(axis=0))
    if rows.size == 0:
        raise RuntimeError(f"internal error: {plan.finding} drew nothing")  # guarded by every drawer
    x, y = float(cols[0]), float(rows[0])
    w, h = float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)
    if side in _SIGN:
        signs = (_SIGN[side],)
        reference = scene.lung_mask[_SIGN[side]]
    else:
        signs = (-1, 1)
        reference = scene.thorax_mask
    extent = float((footprint & reference).sum()) / max(1.0, float(reference.sum()))
    if zone is None:
        zone = _zone_of(scene, footprint, signs, diffuse_possible)
    if size_cm is None:
        size_cm = max(w, h) * FIELD_OF_VIEW_CM / scene.size
    return DrawnFinding(
        finding=plan.finding,
        side=side,
        zone=zone,
        organ=ORGAN_OF[plan.finding],
        x=x,
        y=y,
        w=w,
        h=h,
        extent=round(extent, 4),
        size_cm=round(float(size_cm), 2),
        severity=plan.severity,
    )


def _zone_of(scene: Scene, footprint: np.ndarray, signs: Sequence[int], diffuse_possible: bool) -> str:
    """The third of the lung height holding the footprint's centre, or "diffuse" when it fills all three."""
    top, base = scene.zone_bounds(signs)
    third = (base - top) / 3.0
    if diffuse_possible:
        lungs = scene.lung_mask[signs[0]] if len(signs) == 1 else (scene.lung_mask[-1] | scene.lung_mask[1])
        cover = []
        for k in range(3):
            band = lungs & (scene.ya >= top + k * third) & (scene.ya < top + (k + 1) * third)
            cover.append(float((band & footprint).sum()) / max(1.0, float(band.sum())))
        if min(cover) >= 0.5:
            return "diffuse"
    centre = float(scene.ya[footprint].mean())
    return ZONES[int(np.clip((centre - top) // third, 0, 2))]


def _footprint(layer: np.ndarray, relative: float = 0.2) -> np.ndarray:
    peak = float(layer.max())
    return layer > relative * peak if peak > 0 else np.zeros(layer.shape, bool)


# ------------------------------------------------------------------------------------------------------------
# Anatomy-changing findings (applied before the scene is built)
# ------------------------------------------------------------------------------------------------------------


def _modify_anatomy(anatomy: Anatomy, plans: Sequence[_Plan]) -> Anatomy:
    by_name = {plan.finding: plan for plan in plans}
    if "Emphysema" in by_name:
        # Hyperinflation: low, flattened domes and taller, slightly wider lungs; a long narrow heart.
        plan = by_name["Emphysema"]
        lower = (0.035, 0.055, 0.08)[plan.level] + plan.rng.uniform(0.0, 0.01)
        flatten = (0.6, 0.45, 0.3)[plan.level]
        widen = (1.03, 1.05, 1.08)[plan.level]

        def inflate(lung: Lung) -> Lung:
            return replace(
                lung,
                dome_y=lung.dome_y + lower,
                dome_drop=lung.dome_drop * flatten,
                semi_b=lung.semi_b + 0.5 * lower,
                centre_y=lung.centre_y + 0.5 * lower,
                semi_a=lung.semi_a * widen,
                dome_halfwidth=lung.dome_halfwidth * widen,
            )

        anatomy = replace(
            anatomy,
            right=inflate(anatomy.right),
            left=inflate(anatomy.left),
            heart_width=anatomy.heart_width * 0.9,
            heart_aspect=anatomy.heart_aspect * 1.1,
            heart_base_y=anatomy.heart_base_y + 0.8 * lower,
        )
    if "Fibrosis" in by_name and by_name["Fibrosis"].severity == "severe":
        # Volume loss of fibrotic lungs: both domes rise a little.
        rise = by_name["Fibrosis"].rng.uniform(0.015, 0.025)
        anatomy = replace(
            anatomy,
            right=replace(anatomy.right, dome_y=anatomy.right.dome_y - rise),
            left=replace(anatomy.left, dome_y=anatomy.left.dome_y - rise),
        )
    if "Atelectasis" in by_name:
        # Volume loss: the hemidiaphragm of the collapsed side rises.
        plan = by_name["Atelectasis"]
        rise = plan.uniform((0.012, 0.018), (0.025, 0.035), (0.04, 0.055))
        lung = plan.lung_before = anatomy.lung(_SIGN[plan.side])
        anatomy = replace(anatomy, **{plan.side: replace(lung, dome_y=lung.dome_y - rise)})  # right= or left=
    if "Cardiomegaly" in by_name:
        plan = by_name["Cardiomegaly"]
        ratio = plan.uniform((0.56, 0.60), (0.60, 0.65), (0.65, 0.71))
        anatomy = replace(anatomy, heart_width=ratio * anatomy.thoracic_width)
    return anatomy


# ------------------------------------------------------------------------------------------------------------
# Finding drawers: each edits the scene's layers and returns its records
# ------------------------------------------------------------------------------------------------------------


def _atelectasis(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Plate-like (discoid) band in the lower/middle zone, a raised hemidiaphragm; severe: a lobar wedge."""
    rng, sign, a = plan.rng, _SIGN[plan.side], scene.anatomy
    lung = a.lung(sign)
    length = plan.uniform((0.11, 0.14), (0.14, 0.18), (0.17, 0.21))
    thick = plan.uniform((0.014, 0.018), (0.018, 0.024), (0.022, 0.028))
    d0, y0 = scene.sample_point(rng, sign, height=(0.55, 0.8), margin=0.03)
    d0 = float(np.clip(d0, lung.medial_d + 0.5 * length + 0.01, lung.lateral_d - 0.5 * length - 0.01))
    tilt = rng.uniform(-0.25, 0.25)
    plate_f, _ = ellipse_distance(scene.d[sign], scene.ya, d0, y0, 0.5 * length, 0.5 * thick, tilt)
    layer = ramp(plate_f, 1.5 * scene.px) * scene.lung_air[sign]
    if plan.severity == "severe":
        # Lower-lobe collapse: a triangle from the hilum down to the medial diaphragm.
        apex = np.array([a.hilum_d + 0.01, a.hilum_y(sign) + 0.03])
        base_y = lung.diaphragm_y(lung.medial_d + 0.06) + 0.01
        p1 = np.array([lung.medial_d, base_y])
        p2 = np.array([lung.medial_d + rng.uniform(0.11, 0.15), base_y])
        wedge = _triangle(scene.d[sign], scene.ya, apex, p1, p2, 2.0 * scene.px)
        layer = np.maximum(layer, 0.7 * wedge * scene.lung_air[sign])
    scene.add += np.float32(0.9 * lung.air) * layer
    before = plan.lung_before.distance(scene.d[sign], scene.ya) > 0
    footprint = _footprint(layer) | (before & ~scene.lung_mask[sign])
    return [_record(scene, plan, footprint)]


def _triangle(x, y, p0, p1, p2, edge: float):
    """Soft-edged triangle: product of three half-planes oriented to contain the centroid."""
    centre = (p0 + p1 + p2) / 3.0
    result = None
    for a_, b_ in ((p0, p1), (p1, p2), (p2, p0)):
        normal = np.array([-(b_[1] - a_[1]), b_[0] - a_[0]])
        normal /= np.linalg.norm(normal) + EPS
        if np.dot(centre - a_, normal) < 0:
            normal = -normal
        half = ramp((x - a_[0]) * normal[0] + (y - a_[1]) * normal[1], edge)
        result = half if result is None else result * half
    return result


def _cardiomegaly(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """The heart itself was enlarged in :func:`_modify_anatomy` (cardiothoracic ratio > 0.55)."""
    size_cm = scene.anatomy.heart_width * FIELD_OF_VIEW_CM
    return [_record(scene, plan, scene.heart_soft > 0.5, zone="cardiac", size_cm=size_cm)]


def _effusion(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Dense basal opacity, its meniscus rising along the chest wall; obscures dome and costophrenic angle."""
    rng = plan.rng
    signs = (-1, 1) if plan.side == "bilateral" else (_SIGN[plan.side],)
    records = []
    for sign in signs:
        lung = scene.anatomy.lung(sign)
        # All three depths are drawn, whatever the severity, and the one of this severity is used.
        drops = (rng.uniform(0.01, 0.035), rng.uniform(0.06, 0.10), rng.uniform(0.15, 0.23))
        level = lung.dome_y - drops[plan.level]
        rise = rng.uniform(0.035, 0.06)
        lateral = np.clip(
            (scene.d[sign] - lung.medial_d) * np.float32(1.0 / (lung.lateral_d - lung.medial_d)), 0.0, 1.0
        )
        depth = scene.ya - (level - rise * lateral * lateral)
        fluid = ramp(depth, 3.0 * scene.px) * scene.lung_air[sign]
        layer = fluid * (0.9 + 0.1 * np.clip(depth * np.float32(1.0 / 0.08), 0.0, 1.0))
        layer *= np.float32((0.88 + 0.04 * plan.level) * lung.air)
        scene.add += layer
        scene.marking_gain *= 1.0 - 0.8 * fluid  # fluid hides the vessels behind it
        records.append(_record(scene, plan, _footprint(layer), sign=sign))
    return records


def _infiltration(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Ill-defined, patchy, hazy opacities over a region of the upper/middle lung."""
    rng, sign = plan.rng, _SIGN[plan.side]
    signs = [sign, -sign] if plan.severity == "severe" and rng.random() < 0.5 else [sign]
    records = []
    for k, s in enumerate(signs):
        lung = scene.anatomy.lung(s)
        radius = plan.uniform((0.065, 0.08), (0.08, 0.1), (0.1, 0.125))
        radius *= 0.8 if k else 1.0
        d0, y0 = scene.sample_point(rng, s, height=(0.15, 0.7), margin=0.6 * radius)
        _, rho = ellipse_distance(scene.d[s], scene.ya, d0, y0, radius, 1.25 * radius, rng.uniform(-0.5, 0.5))
        region = ramp(1.0 - rho, 0.7) * scene.lung_air[s]
        patches = 0.35 + 0.65 * ramp(scene.smooth_noise(rng, 0.012) + 0.3, 2.5)
        scene.add += region * patches * np.float32((0.5 + 0.08 * plan.level) * lung.air)
        records.append(_record(scene, plan, region > 0.3, sign=s))
    return records


def _round_opacity(
    scene: Scene, plan: _Plan, sign: int, centre, diameter: float, lobulation, edge: float, density: float
) -> DrawnFinding:
    """Add a sphere-like opacity (lobulated radius r(theta), thicker in the centre) and record it.

    ``diameter`` is in cm; ``density`` is a fraction of the lung's air.
    """
    radius = diameter / FIELD_OF_VIEW_CM / 2.0
    dd, dy = scene.d[sign] - centre[0], scene.ya - centre[1]
    r = np.sqrt(dd * dd + dy * dy)
    edge_r = radius
    if lobulation:
        theta = np.arctan2(dy, dd)
        edge_r = radius * (1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in lobulation))
    inside = ramp(edge_r - r, edge)
    core = np.sqrt(np.clip(1.0 - (r / edge_r) ** 2, 0.0, 1.0))
    layer = inside * (0.6 + 0.4 * core)
    layer *= np.float32(density * scene.anatomy.lung(sign).air)
    scene.add += layer
    return _record(scene, plan, _footprint(layer), sign=sign, size_cm=diameter)


def _mass(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Large (> 3 cm) round or lobulated opacity with a fairly sharp edge."""
    rng, sign = plan.rng, _SIGN[plan.side]
    diameter = plan.uniform((3.3, 4.4), (4.4, 5.8), (5.8, 7.5))
    margin = 0.9 * (diameter / FIELD_OF_VIEW_CM / 2.0)
    centre = scene.sample_point(rng, sign, height=(0.12, 0.75), margin=margin)
    lobulation = [(k, rng.uniform(0.03, 0.08), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5)]
    density = 0.85 + 0.07 * plan.level
    return [_round_opacity(scene, plan, sign, centre, diameter, lobulation, 2.0 * scene.px, density)]


def _nodule(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Round, well-defined opacities under 3 cm; more and larger ones with severity."""
    rng = plan.rng
    count = {"mild": 1, "moderate": int(rng.integers(1, 3)), "severe": int(rng.integers(2, 4))}[plan.severity]
    records = []
    for k in range(count):
        sign = _SIGN[plan.side] if k == 0 else int(rng.choice((-1, 1)))
        diameter = plan.uniform((1.3, 1.8), (1.8, 2.4), (2.3, 2.9))
        margin = diameter / FIELD_OF_VIEW_CM / 2.0 + 0.015
        centre = scene.sample_point(rng, sign, height=(0.1, 0.8), margin=margin)
        density = 0.9 + 0.05 * plan.level
        records.append(_round_opacity(scene, plan, sign, centre, diameter, [], 1.2 * scene.px, density))
    return records


def _pneumonia(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Patchy consolidation with fuzzy margins, middle/lower zone."""
    rng, sign = plan.rng, _SIGN[plan.side]
    lung = scene.anatomy.lung(sign)
    radius = plan.uniform((0.055, 0.07), (0.07, 0.09), (0.09, 0.115))
    d0, y0 = scene.sample_point(rng, sign, height=(0.42, 0.85), margin=0.5 * radius)
    aspect = rng.uniform(0.75, 1.3)
    _, rho = ellipse_distance(
        scene.d[sign], scene.ya, d0, y0, radius * aspect, radius / aspect, rng.uniform(0, math.pi)
    )
    cloud = ramp(0.85 - rho, 0.9) * scene.lung_air[sign]
    patchy = np.clip(0.82 + 0.2 * scene.smooth_noise(rng, 0.016), 0.5, 1.0)
    scene.add += np.float32((0.8 + 0.07 * plan.level) * lung.air) * cloud * patchy
    return [_record(scene, plan, cloud > 0.2)]


def _pneumothorax(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Apical/lateral rim of air without lung markings, bounded by a thin visible visceral pleural line."""
    sign, a = _SIGN[plan.side], scene.anatomy
    lung = a.lung(sign)
    gap = plan.uniform((0.15, 0.2), (0.25, 0.32), (0.38, 0.5))
    hd, hy = a.hilum_d, a.hilum_y(sign)
    dd, dy = scene.d[sign] - hd, scene.ya - hy
    r = np.sqrt(dd * dd + dy * dy) + EPS
    # The lung collapses towards the hilum, most at the apex and laterally (air rises in an erect patient).
    toward = np.clip((0.45 * dd - 0.6 * dy) / r + 0.2, 0.0, 1.0)
    if plan.severity == "mild":
        toward = toward * toward
    shrink = 1.0 - gap * toward
    f_collapsed = lung.distance(hd + dd / shrink, hy + dy / shrink) * shrink
    space = scene.lung_soft[sign] * (1.0 - ramp(f_collapsed, 1.5 * scene.px))
    line = hairline(f_collapsed, 1.1 * scene.px)
    line *= ramp(scene.lung_f[sign] - 2.5 * scene.px, 2.0 * scene.px)
    scene.marking_gain *= 1.0 - space
    scene.add += np.float32(-0.25 * lung.air) * space + np.float32(0.45 * lung.air) * line
    return [_record(scene, plan, (space > 0.5) | (line > 0.3))]


def _consolidation(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Dense homogeneous lobar opacity with a sharp straight fissural border and dark air bronchograms."""
    rng, sign, a = plan.rng, _SIGN[plan.side], scene.anatomy
    lung = a.lung(sign)
    d, ya = scene.d[sign], scene.ya
    hy = a.hilum_y(sign)
    lobes = ("upper", "middle", "lower") if sign < 0 else ("upper", "lower")
    lobe = lobes[int(rng.integers(len(lobes)))]
    sharp = 1.2 * scene.px
    if lobe == "lower":  # bounded above by the oblique (major) fissure, descending laterally
        slope = rng.uniform(0.3, 0.45)
        fissure_y0 = hy + 0.03
        region = ramp(ya - (fissure_y0 + slope * (d - a.hilum_d)), sharp)
        region *= ramp(lung.lateral_edge(ya) - 0.02 - d, 0.05)
        towards = 1.0  # the segment hangs below the fissure
    else:  # upper and middle lobes meet at the horizontal (minor) fissure
        slope = rng.uniform(-0.08, 0.08)
        fissure_y0 = hy - 0.01
        above = lobe == "upper"
        offset = ya - (fissure_y0 + slope * (d - a.hilum_d))
        region = ramp(-offset if above else offset, sharp)
        if lobe == "middle":
            region *= ramp(lung.centre_d + 0.05 - d, 0.06)
        towards = -1.0 if above else 1.0
    if plan.level < 2:
        # A segment: the lobe cut by a soft ellipse lying along the fissure, so the straight edge stays long.
        along = (0.09, 0.12)[plan.level] + rng.uniform(0.0, 0.02)
        across = (0.07, 0.1)[plan.level] + rng.uniform(0.0, 0.02)
        # On the left, keep the segment lateral to the heart, where it shows.
        shift = rng.uniform(-0.03, 0.03) + (0.03 if sign > 0 else 0.0)
        centre_d = float(np.clip(lung.centre_d + shift, a.hilum_d + 0.05, lung.lateral_d - 0.06))
        centre_y = fissure_y0 + slope * (centre_d - a.hilum_d) + towards * 0.5 * across
        _, rho = ellipse_distance(d, ya, centre_d, centre_y, along, across, math.atan(slope))
        region = region * ramp(1.0 - rho, 0.35)
    footprint = region * scene.lung_soft[sign] > 0.3
    region = region * scene.lung_air[sign]
    k = 5 + 2 * plan.level
    start_d = lung.centre_d + rng.uniform(-0.06, 0.04, k)
    start_y = fissure_y0 + slope * (start_d - a.hilum_d) + towards * 0.01
    xa_, yb, wb, _, _ = scene.curves(
        sign,
        start_d,
        start_y,
        towards * math.pi / 2 + rng.normal(0.0, 0.5, k),
        rng.uniform(0.05, 0.1, k),
        rng.normal(0.0, 3.0, k),
        1.0,
        0.5,
    )
    bronchi = scene.lines([(xa_, yb, wb)], 0.45 * scene.scale)
    core = np.clip((region - 0.7) * np.float32(1.0 / 0.3), 0.0, 1.0)
    layer = region * (1.0 - 0.4 * np.clip(bronchi, 0.0, 1.0) * core)
    layer *= np.float32((0.92 + 0.04 * plan.level) * lung.air)
    scene.add += layer
    scene.marking_gain *= 1.0 - 0.7 * region
    return [_record(scene, plan, footprint)]


def _edema(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Bilateral perihilar "bat-wing" haze sparing the periphery, with Kerley B lines at the bases."""
    rng, a = plan.rng, scene.anatomy
    haze_total = np.zeros_like(scene.add)
    curves = []
    for sign in (-1, 1):
        lung = a.lung(sign)
        sx = (0.09, 0.115, 0.14)[plan.level] * rng.uniform(0.9, 1.1)
        sy = (0.11, 0.14, 0.17)[plan.level] * rng.uniform(0.9, 1.1)
        dd = (scene.d[sign] - (a.hilum_d + 0.015)) * np.float32(1.0 / sx)
        dy = (scene.ya - (a.hilum_y(sign) + 0.03)) * np.float32(1.0 / sy)
        haze = np.exp(-(dd * dd + dy * dy)) * scene.lung_air[sign]
        haze_total += haze * np.float32((0.6 + 0.1 * plan.level) * lung.air)
        count = (4, 6, 8)[plan.level]
        top, base = lung.apex_y, lung.base_y
        yk = top + (base - top) * np.sort(rng.uniform(0.66, 0.93, count))
        start = lung.lateral_edge(yk) - 0.004
        length = rng.uniform(0.03, 0.045, count)
        xa_, yl, wl, _, _ = scene.curves(
            sign, start, yk, math.pi + rng.normal(0.0, 0.08, count), length, 0.0, 1.0, 1.0
        )
        curves.append((xa_, yl, wl))
    texture = 0.85 + 0.15 * scene.smooth_noise(rng, 0.008)
    lines = scene.lines(curves, 0.45 * scene.scale) * (scene.lung_soft[-1] + scene.lung_soft[1])
    scene.add += haze_total * texture + np.float32(0.5 * a.right.air) * lines
    return [_record(scene, plan, _footprint(haze_total, 0.25) | (lines > 0.3), zone="perihilar")]


def _emphysema(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Hyperinflation (from :func:`_modify_anatomy`); darker lungs with fewer markings, upper zones first."""
    rng, a = plan.rng, scene.anatomy
    top, base = scene.zone_bounds((-1, 1))
    cut = top + (base - top) * (0.5, 0.78, 1.3)[plan.level]
    weight = ramp(cut - scene.ya, 0.1) * (scene.lung_soft[-1] + scene.lung_soft[1])
    scene.air_gain += np.float32((0.22, 0.3, 0.38)[plan.level]) * weight
    scene.marking_gain *= 1.0 - np.float32((0.55, 0.7, 0.85)[plan.level]) * weight
    if plan.level == 2:
        # Bullae: round marking-free lucencies with a hairline wall in the upper zones.
        for _ in range(int(rng.integers(1, 3))):
            sign = int(rng.choice((-1, 1)))
            radius = rng.uniform(0.03, 0.045)
            d0, y0 = scene.sample_point(rng, sign, height=(0.05, 0.4), margin=radius)
            dd, dy = scene.d[sign] - d0, scene.ya - y0
            r = np.sqrt(dd * dd + dy * dy)
            inside = ramp(radius - r, 2.0 * scene.px)
            wall = hairline(r - radius, scene.px)
            scene.marking_gain *= 1.0 - inside
            scene.add += (
                np.float32(-0.18 * a.lung(sign).air) * inside + np.float32(0.25 * a.lung(sign).air) * wall
            )
    return [_record(scene, plan, weight > 0.5, diffuse_possible=True)]


def _fibrosis(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Reticular net of fine lines, peripheral and basal, extending upwards with severity."""
    rng, a = plan.rng, scene.anatomy
    top, base = scene.zone_bounds((-1, 1))
    cut = top + (base - top) * (0.6, 0.42, 0.22)[plan.level]
    sigma_px = 1.25 * scene.scale
    white = rng.standard_normal(scene.add.shape, dtype=np.float32)
    band = gaussian_filter(white, sigma_px, truncate=3.0) - gaussian_filter(
        white, 2.0 * sigma_px, truncate=3.0
    )
    # Zero crossings of band-pass noise form closed polygons: a reticular (net-like) pattern.
    net = hairline(band, 0.5 * float(band.std()) + EPS)
    weight = np.zeros_like(scene.add)
    for sign in (-1, 1):
        peripheral = np.clip(
            1.0 - scene.lung_f[sign] * np.float32(1.0 / (0.07 + 0.02 * plan.level)), 0.0, 1.0
        )
        weight += ramp(scene.ya - cut, 0.12) * peripheral * scene.lung_air[sign]
    scene.add += net * weight * np.float32((0.75 + 0.1 * plan.level) * a.right.air)
    return [_record(scene, plan, weight > 0.35, diffuse_possible=True)]


def _pleural_thickening(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Pleural band along the lateral chest wall with an undulating inner margin, or an apical cap."""
    rng, sign = plan.rng, _SIGN[plan.side]
    signs = [sign, -sign] if plan.severity != "mild" and rng.random() < 0.3 else [sign]
    apical = rng.random() < 0.35
    records = []
    for s in signs:
        lung = scene.anatomy.lung(s)
        thickness = plan.uniform((0.024, 0.03), (0.03, 0.037), (0.038, 0.048))
        f, ya, d = scene.lung_f[s], scene.ya, scene.d[s]
        top, base = lung.apex_y, lung.base_y
        # Plaque-like undulation of the inner margin, so the band reads as thickened pleura, not chest wall.
        wave = 1.0 + 0.3 * np.sin(
            ya * np.float32(2 * math.pi / rng.uniform(0.06, 0.09)) + rng.uniform(0, 2 * math.pi)
        )
        band = scene.lung_soft[s] * ramp(thickness * wave - f, 1.5 * scene.px)
        if apical:
            cap = top + (0.17 + 0.04 * plan.level) * (base - top)
            window = ramp(cap - ya, 0.04) * ramp(d - lung.medial_d - 0.03, 0.04)
        else:
            span = (0.3, 0.42, 0.55)[plan.level]
            start = rng.uniform(0.18, 0.75 - span)
            y1, y2 = top + start * (base - top), top + (start + span) * (base - top)
            window = ramp(ya - y1, 0.05) * ramp(y2 - ya, 0.05) * ramp(d - lung.centre_d, 0.04)
        layer = band * window * np.float32(1.05 * lung.air)
        scene.add += layer
        scene.marking_gain *= 1.0 - band * window
        records.append(_record(scene, plan, _footprint(layer, 0.3), sign=s))
    return records


def _hernia(scene: Scene, plan: _Plan) -> list[DrawnFinding]:
    """Hiatus hernia: retrocardiac round opacity at the midline with an air-fluid level."""
    rng, a = plan.rng, scene.anatomy
    radius = plan.uniform((0.04, 0.05), (0.05, 0.065), (0.065, 0.08))
    cx = a.midline + rng.uniform(0.0, 0.03)
    cy = a.heart_base_y - radius * rng.uniform(1.2, 1.5)
    dx, dy = scene.xa - cx, scene.ya - cy
    r = np.sqrt(dx * dx + dy * dy)
    inside = ramp(radius - r, 1.5 * scene.px)
    wall = hairline(r - radius, 1.2 * scene.px)
    fluid_level = cy + radius * rng.uniform(-0.2, 0.2)
    air = inside * ramp(fluid_level - scene.ya, 1.0 * scene.px)
    fluid = inside - air
    lung_air = a.left.air
    scene.add += (
        np.float32(0.2 * lung_air) * wall
        + np.float32(0.2 * lung_air) * fluid
        - np.float32(0.6 * lung_air) * air
    )
    footprint = (inside > 0.5) | (wall > 0.3)
    return [_record(scene, plan, footprint, zone="retrocardiac", size_cm=2 * radius * FIELD_OF_VIEW_CM)]


_DRAWERS = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}


def _plan(request: FindingRequest, rng: np.random.Generator) -> _Plan:
    name = request.finding
    # Severity is drawn first: every size and density below depends on it.
    if request.severity is None:
        severity = SEVERITIES[int(rng.choice(3, p=_SEVERITY_P))]
    elif request.severity in SEVERITIES:
        severity = request.severity
    else:
        raise ValueError(f"{name}: severity must be one of {', '.join(SEVERITIES)}, got {request.severity!r}")
    if name in _BILATERAL or name in _MIDLINE:
        natural = "bilateral" if name in _BILATERAL else "midline"
        if request.side not in (None, natural):
            raise ValueError(f"{name} is drawn {natural}; side {request.side!r} is not possible")
        side = natural
    else:
        allowed = ("right", "left", "bilateral") if name == "Effusion" else ("right", "left")
        if request.side is None:
            weights = (0.4, 0.35, 0.25) if name == "Effusion" else (0.5, 0.5)
            side = allowed[int(rng.choice(len(allowed), p=weights))]
        elif request.side in allowed:
            side = request.side
        else:
            raise ValueError(f"{name}: side must be one of {', '.join(allowed)}, got {request.side!r}")
    return _Plan(finding=name, severity=severity, side=side, rng=rng)


def _requests(findings: Iterable[str | FindingRequest]) -> list[FindingRequest]:
    requests: dict[str, FindingRequest] = {}
    for item in findings:
        request = item if isinstance(item, FindingRequest) else FindingRequest(str(item))
        name = canonical_finding(request.finding)
        if name == NO_FINDING:
            continue
        if name in requests:
            raise ValueError(f"finding {name!r} requested twice")
        requests[name] = replace(request, finding=name)
    return [requests[name] for name in FINDINGS if name in requests]


def draw_chest(
    seed: int | Sequence[int],
    *,
    size: int = 128,
    findings: Iterable[str | FindingRequest] = (),
    view: str = "PA",
    patient_seed: int | Sequence[int] | None = None,
) -> PhantomImage:
    """Draw one synthetic chest radiograph with the given findings.

    The same arguments always give the same pixels. The anatomy, the image noise and each finding use
    independent random streams, so ``draw_chest(seed, findings=())`` is the exact finding-free version of
    ``draw_chest(seed, findings=[...])``: their difference is what the findings drew.

    Args:
        seed: Non-negative integer (or sequence of them) seeding this image.
        size: Image side in pixels (at least 32; the look is tuned at 128 to 512).
        findings: Finding names or :class:`FindingRequest` objects ("No Finding" is ignored).
        view: "PA" or "AP" (AP: shallower inspiration, lower contrast).
        patient_seed: Seeds the patient's anatomy; images sharing it look like the same person. Defaults to
            ``seed``.

    Returns:
        The 8-bit image and the records of every drawn instance.

    Raises:
        ValueError: unknown finding, a finding requested twice, an impossible side or severity, bad size.
    """
    if int(size) < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    entropy = _entropy(seed)
    patient_entropy = _entropy(patient_seed) if patient_seed is not None else entropy
    anatomy = sample_anatomy(_rng(patient_entropy, 1), _rng(entropy, 2), view=view)
    plans = [
        _plan(request, _rng(entropy, 100 + FINDINGS.index(request.finding)))
        for request in _requests(findings)
    ]
    anatomy = _modify_anatomy(anatomy, plans)
    scene = Scene(anatomy, int(size))
    drawn: list[DrawnFinding] = []
    for plan in plans:
        drawn.extend(_DRAWERS[plan.finding](scene, plan))
    pixels = scene.render(_rng(entropy, 3))
    return PhantomImage(pixels=pixels, findings=tuple(drawn), anatomy=anatomy)
