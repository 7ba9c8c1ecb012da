"""The normal anatomy of a SYNTHETIC chest radiograph phantom: lungs, heart, hila, ribs, exposure.

Each frontal (PA or AP) image has body soft tissue on a dark background, two dark lung fields shaped like
lungs, mediastinum, heart (two thirds of it left of the midline), hila, diaphragm domes with costophrenic
angles, spine, ribs, clavicles, a gastric bubble and branching vascular markings in the lungs.
:func:`sample_anatomy` draws the numbers of one such anatomy; findings may change them
(:mod:`cxreader.synthetic.findings`), and :mod:`cxreader.synthetic.render` turns them into pixels.

Coordinates. Geometry lives in normalised units: the image spans [0, 1] in x (left to right) and y (top to
bottom), one unit being :data:`FIELD_OF_VIEW_CM` centimetres. Anatomy is defined in a frame turned by a
degree or two against the image. A hemithorax uses the mirrored lateral coordinate ``d = sign * (x -
midline)``, ``sign`` being -1 for the patient's RIGHT and +1 for the patient's LEFT: in a PA or AP view the
patient faces the viewer, so the patient's right lies in the image's LEFT half. One lung model serves both
sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Width (and height) of the imaged field in centimetres: a realistic chest field of view.
FIELD_OF_VIEW_CM = 40.0
#: Guards divisions by a vanishing gradient or length.
EPS = 1e-6


@dataclass(frozen=True)
class Lung:
    """One lung field in the mirrored frame of its hemithorax (all lengths normalised).

    The field is the inside of an ellipse (lateral border and apex), above a diaphragm dome (a parabola with
    its top at ``dome_d``; the lateral limb descends ``dome_drop`` into the costophrenic recess, the medial
    limb half as far) and lateral to the line ``d = medial_d``.
    """

    sign: int
    centre_d: float
    centre_y: float
    semi_a: float
    semi_b: float
    medial_d: float
    dome_y: float
    dome_d: float
    dome_halfwidth: float
    dome_drop: float
    air: float

    @property
    def apex_y(self) -> float:
        return self.centre_y - self.semi_b

    @property
    def base_y(self) -> float:
        """Mean height of the diaphragm under the lung: the lower end of the lung height used for zones."""
        return self.dome_y + 0.5 * self.dome_drop

    @property
    def lateral_d(self) -> float:
        return self.centre_d + self.semi_a

    def lateral_edge(self, y):
        """Lateral border ``d`` at height ``y``."""
        v = np.clip((y - self.centre_y) / self.semi_b, -1.0, 1.0)
        return self.centre_d + self.semi_a * np.sqrt(1.0 - v * v)

    def diaphragm_y(self, d):
        t = (d - self.dome_d) / self.dome_halfwidth
        return self.dome_y + self._drop(t) * t * t

    def _drop(self, t):
        """Depth of the dome's limb: the medial limb (t < 0) descends half as far as the lateral one."""
        if np.ndim(t) == 0:
            return 0.5 * self.dome_drop if t < 0 else self.dome_drop
        drop = np.full(np.shape(t), self.dome_drop, dtype=np.result_type(t, np.float32))
        drop[t < 0] *= 0.5
        return drop

    def distance(self, d, y):
        """Approximate signed distance to the lung border (positive inside), for masks and pleural bands."""
        u = (d - self.centre_d) / self.semi_a
        v = (y - self.centre_y) / self.semi_b
        grad = 2.0 * np.sqrt((u / self.semi_a) ** 2 + (v / self.semi_b) ** 2) + EPS
        inside_ellipse = (1.0 - u * u - v * v) / grad
        t = (d - self.dome_d) / self.dome_halfwidth
        drop = self._drop(t)
        slope = 2.0 * drop * t / self.dome_halfwidth
        above_dome = (self.dome_y + drop * t * t - y) / np.sqrt(1.0 + slope * slope)
        return np.minimum(np.minimum(inside_ellipse, above_dome), d - self.medial_d)


@dataclass(frozen=True)
class Anatomy:
    """The normal anatomy of one image (normalised units, anatomy frame); findings may modify it."""

    view: str
    rotation: float
    midline: float
    body_half_width: float
    right: Lung
    left: Lung
    heart_width: float
    heart_tilt: float
    heart_aspect: float
    heart_right_fraction: float
    heart_base_y: float
    hilum_d: float
    hilum_y_right: float
    hilum_y_left: float
    knob_y: float
    carina_y: float
    rib_top: float
    rib_spacing: float
    marking_strength: float
    bubble_radius: float
    bubble_y: float
    soft_tissue: float
    texture_seed: int
    noise_sigma: float
    window_low: float
    window_high: float
    gamma: float

    def lung(self, sign: int) -> Lung:
        return self.right if sign < 0 else self.left

    def hilum_y(self, sign: int) -> float:
        return self.hilum_y_right if sign < 0 else self.hilum_y_left

    @property
    def thoracic_width(self) -> float:
        """Internal thoracic diameter at its widest (the denominator of the cardiothoracic ratio)."""
        return self.right.lateral_d + self.left.lateral_d

    def heart_ellipse(self) -> tuple[float, float, float, float, float]:
        """Centre x, centre y, semi-major, semi-minor and tilt of the heart ellipse in the anatomy frame.

        The ellipse is sized so that its horizontal extent is ``heart_width``, with ``heart_right_fraction``
        of it right of the midline (the patient's right: image left) and its lower part cut by the diaphragm.
        """
        tilt, aspect = self.heart_tilt, self.heart_aspect
        half = 0.5 * self.heart_width
        semi_major = half / math.sqrt(math.cos(tilt) ** 2 + (aspect * math.sin(tilt)) ** 2)
        semi_minor = aspect * semi_major
        vertical = math.sqrt((semi_major * math.sin(tilt)) ** 2 + (semi_minor * math.cos(tilt)) ** 2)
        centre_x = self.midline + self.heart_width * (0.5 - self.heart_right_fraction)
        centre_y = self.heart_base_y - 0.8 * vertical
        return centre_x, centre_y, semi_major, semi_minor, tilt


def sample_anatomy(patient_rng: np.random.Generator, image_rng: np.random.Generator, *, view: str) -> Anatomy:
    """Draw a normal anatomy: patient traits from ``patient_rng``, per-image jitter from ``image_rng``.

    Follow-up images of one patient share the patient draws, so they look like the same person imaged
    again (slightly different position, inspiration and exposure).
    """
    if view not in ("PA", "AP"):
        raise ValueError(f"view must be 'PA' or 'AP', got {view!r}")
    p, j = patient_rng, image_rng
    habitus = p.uniform(0.92, 1.05)
    # An AP film is usually taken supine or sitting: shallower inspiration, domes higher.
    inspiration = j.normal(0.0, 0.008) + (0.025 if view == "AP" else 0.0)
    apex = 0.135 + p.normal(0.0, 0.008) + j.normal(0.0, 0.004)
    dome_right = 0.70 + p.normal(0.0, 0.012) + inspiration

    def lung(sign: int, dome_y: float) -> Lung:
        semi_a = 0.19 * habitus * (1.0 + p.normal(0.0, 0.03))
        semi_b = 0.47 * (1.0 + p.normal(0.0, 0.025))
        centre_d = 0.235 * habitus + p.normal(0.0, 0.005)
        return Lung(
            sign=sign,
            centre_d=centre_d,
            centre_y=apex + semi_b + j.normal(0.0, 0.003),
            semi_a=semi_a,
            semi_b=semi_b,
            medial_d=0.055 + p.normal(0.0, 0.004),
            dome_y=dome_y,
            dome_d=centre_d - 0.015,
            dome_halfwidth=semi_a,
            dome_drop=0.085 + p.normal(0.0, 0.008),
            air=0.42 + p.normal(0.0, 0.015),
        )

    right = lung(-1, dome_right)
    # The left hemidiaphragm usually lies a little lower than the right one (the liver lifts the right).
    left = lung(1, dome_right + p.uniform(0.01, 0.03))
    thoracic = right.lateral_d + left.lateral_d
    heart_ctr = p.uniform(0.41, 0.50)
    view_ap = view == "AP"
    return Anatomy(
        view=view,
        rotation=p.normal(0.0, 0.015) + j.normal(0.0, 0.012),
        midline=0.5 + p.normal(0.0, 0.008) + j.normal(0.0, 0.005),
        body_half_width=0.5 * thoracic + p.uniform(0.03, 0.07),
        right=right,
        left=left,
        heart_width=heart_ctr * thoracic,
        heart_tilt=p.uniform(0.35, 0.55),
        heart_aspect=p.uniform(0.68, 0.78),
        heart_right_fraction=p.uniform(0.27, 0.35),
        heart_base_y=left.diaphragm_y(left.medial_d + 0.02) - 0.005,
        hilum_d=0.095 + p.normal(0.0, 0.006),
        hilum_y_right=0.45 + p.normal(0.0, 0.01) + 0.5 * inspiration,
        hilum_y_left=0.43 + p.normal(0.0, 0.01) + 0.5 * inspiration,
        knob_y=0.30 + p.normal(0.0, 0.01),
        carina_y=0.38 + p.normal(0.0, 0.01),
        rib_top=0.105 + p.normal(0.0, 0.006),
        rib_spacing=(dome_right - 0.06) / 10.0,
        marking_strength=p.uniform(0.85, 1.15),
        bubble_radius=p.uniform(0.022, 0.04) if p.random() < 0.75 else 0.0,
        bubble_y=left.dome_y + 0.05,
        soft_tissue=p.uniform(0.72, 0.8),
        texture_seed=int(j.integers(0, 2**31 - 1)),
        noise_sigma=j.uniform(0.006, 0.016),
        window_low=j.uniform(-0.06, 0.04) + (0.03 if view_ap else 0.0),
        window_high=j.uniform(0.98, 1.1) + (0.06 if view_ap else 0.0),
        gamma=j.uniform(0.8, 1.2),
    )
