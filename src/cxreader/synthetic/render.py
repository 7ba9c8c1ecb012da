"""Rendering of the SYNTHETIC chest phantom: the scene's fields and layers, and the 8-bit image.

Rendering is additive in a linear "density" map (brighter = more attenuating): soft tissue, bone, heart and
fluid add; aerated lung subtracts. Findings (:mod:`cxreader.synthetic.findings`) add density to
:attr:`Scene.add` (opacities), remove lung markings through :attr:`Scene.marking_gain` or deepen the lucency
through :attr:`Scene.air_gain` (pneumothorax, emphysema), or change the anatomy before the scene is built
(cardiomegaly, hyperinflation, volume loss). The map is then blurred a little, given noise and a random
window and gamma, and quantised to 8 bits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from cxreader.synthetic.anatomy import EPS, Anatomy


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(centres, centres)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def ellipse_distance(x, y, cx: float, cy: float, a: float, b: float, tilt: float = 0.0):
    """Approximate signed distance to an ellipse (positive inside) and its normalised radius."""
    c, s = math.cos(tilt), math.sin(tilt)
    u = ((x - cx) * c + (y - cy) * s) / a
    v = (-(x - cx) * s + (y - cy) * c) / b
    q = u * u + v * v
    grad = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2) + EPS
    return (1.0 - q) / grad, np.sqrt(q)


class Canvas:
    """Drawing helpers on a square image whose anatomy frame is turned by ``rotation`` about its centre."""

    def __init__(self, size: int, rotation: float, midline: float):
        self.size = size
        self.px = 1.0 / size
        self.scale = size / 128.0  # blur widths are set at 128 px and scale with the image
        self.rotation = rotation
        self.midline = midline

    def to_image(self, xa, ya):
        """Anatomy-frame normalised coordinates to image-frame normalised coordinates."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return 0.5 + c * (xa - 0.5) - s * (ya - 0.5), 0.5 + s * (xa - 0.5) + c * (ya - 0.5)

    def xa_of(self, sign: int, d):
        return self.midline + sign * d

    def smooth_noise(self, rng: np.random.Generator, sigma: float) -> np.ndarray:
        """Gaussian noise low-passed at ``sigma`` (normalised units), rescaled to unit standard deviation."""
        sigma_px = sigma * self.size
        noise = rng.standard_normal((self.size, self.size), dtype=np.float32)
        return gaussian_filter(noise, sigma_px, truncate=3.0) * np.float32(
            2.0 * math.sqrt(math.pi) * sigma_px
        )

    def lines(self, curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]], sigma_px: float) -> np.ndarray:
        """Render polylines given in the anatomy frame as blurred lines; a weight-1 line peaks near 1.

        Each curve is (xa, ya, weight), arrays of shape (k, n) of k polylines of n points each.
        """
        size = self.size
        xs, ys, ws = [], [], []
        for xa, ya, weight in curves:
            x, y = self.to_image(xa, ya)
            step = np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)) * size  # point spacing in pixels
            step = np.concatenate([step[:, :1], step], axis=1)
            xs.append((x * size - 0.5).ravel())
            ys.append((y * size - 0.5).ravel())
            ws.append((weight * step).ravel())
        px, py, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
        x0, y0 = np.floor(px), np.floor(py)
        fx, fy = px - x0, py - y0
        ok = (x0 >= 0) & (x0 < size - 1) & (y0 >= 0) & (y0 < size - 1)
        x0, y0, fx, fy, w = x0[ok].astype(np.int64), y0[ok].astype(np.int64), fx[ok], fy[ok], w[ok]
        index = y0 * size + x0
        # Bilinear splatting keeps thin lines smooth without per-pixel loops.
        acc = np.bincount(
            np.concatenate([index, index + 1, index + size, index + size + 1]),
            np.concatenate([w * (1 - fx) * (1 - fy), w * fx * (1 - fy), w * (1 - fx) * fy, w * fx * fy]),
            minlength=size * size,
        )
        image = acc.reshape(size, size).astype(np.float32)
        sigma_px = max(sigma_px, 0.35)
        return gaussian_filter(image, sigma_px, truncate=3.0) * np.float32(
            math.sqrt(2.0 * math.pi) * sigma_px
        )

    def curves(self, sign, d0, y0, angle, length, curvature, weight_start, weight_end):
        """Polylines in one hemithorax, started at (d0, y0) with a heading (0 = lateral, +pi/2 = down).

        Returns the anatomy-frame x, y and weight of every point (shape (k, n)), plus ``d`` and the heading.
        """
        d0, y0, angle, length, curvature = (
            np.atleast_1d(np.asarray(v, np.float64)) for v in (d0, y0, angle, length, curvature)
        )
        n = max(8, int(np.ceil(length.max() * self.size)) + 1)  # about one point per pixel
        t = np.linspace(0.0, 1.0, n)[None, :]
        heading = angle[:, None] + curvature[:, None] * (t * length[:, None])
        step = length[:, None] / (n - 1)
        # Each point is the previous one moved one step along the heading there.
        d = np.concatenate([d0[:, None], np.cos(heading[:, :-1]) * step], axis=1).cumsum(axis=1)
        y = np.concatenate([y0[:, None], np.sin(heading[:, :-1]) * step], axis=1).cumsum(axis=1)
        start = np.asarray(weight_start, np.float64).reshape(-1, 1)
        weight = start + (np.asarray(weight_end, np.float64).reshape(-1, 1) - start) * t
        return self.xa_of(sign, d), y, np.broadcast_to(weight, d.shape), d, heading


class Scene(Canvas):
    """The fields of one image: grids, lung and heart masks, base layers and the findings' edits."""

    def __init__(self, anatomy: Anatomy, size: int):
        super().__init__(size, anatomy.rotation, anatomy.midline)
        self.anatomy = anatomy
        x, y = _grid(size)
        c, s = math.cos(anatomy.rotation), math.sin(anatomy.rotation)
        self.xa = 0.5 + c * (x - 0.5) + s * (y - 0.5)
        self.ya = 0.5 - s * (x - 0.5) + c * (y - 0.5)
        self.d = {sign: sign * (self.xa - anatomy.midline) for sign in (-1, 1)}
        self.lung_f = {sign: anatomy.lung(sign).distance(self.d[sign], self.ya) for sign in (-1, 1)}
        self.lung_soft = {sign: ramp(self.lung_f[sign], 1.5 * self.px) for sign in (-1, 1)}
        self.lung_mask = {sign: self.lung_f[sign] > 0 for sign in (-1, 1)}
        hx, hy, ha, hb, tilt = anatomy.heart_ellipse()
        heart_f, _ = ellipse_distance(self.xa, self.ya, hx, hy, ha, hb, tilt)
        # The heart sits on the diaphragm: cut it where the domes are, so it never overlaps the abdomen.
        floor = np.where(
            self.xa > anatomy.midline,
            anatomy.left.diaphragm_y(self.d[1]),
            anatomy.right.diaphragm_y(self.d[-1]),
        )
        self.heart_soft = ramp(np.minimum(heart_f, floor - self.ya), 1.5 * self.px)
        dx = self.xa - anatomy.midline
        knob = np.clip(1.0 - ((self.ya - anatomy.knob_y) * np.float32(1.0 / 0.045)) ** 2, 0.0, 1.0)
        self.mediastinum = ramp(dx + (0.068 + 0.03 * self.ya), 3 * self.px) * ramp(
            0.07 + 0.035 * knob - dx, 3 * self.px
        )
        self.mediastinum *= ramp(hy - self.ya, 0.1)
        # Lung behind the heart and mediastinum is thin: they displace most of it (and what replaces its air).
        behind = 1.0 - 0.75 * np.maximum(self.heart_soft, self.mediastinum)
        self.lung_air = {sign: self.lung_soft[sign] * behind for sign in (-1, 1)}
        lungs = self.lung_mask[-1] | self.lung_mask[1]
        self.thorax_mask = _fill_rows(lungs) | (self.heart_soft > 0.5)
        self.add = np.zeros((size, size), np.float32)
        self.marking_gain = np.ones((size, size), np.float32)
        self.air_gain = np.ones((size, size), np.float32)

    # -- geometry helpers ---------------------------------------------------------------------------------
    def zone_bounds(self, signs: Sequence[int]) -> tuple[float, float]:
        lungs = [self.anatomy.lung(sign) for sign in signs]
        return float(np.mean([lung.apex_y for lung in lungs])), float(
            np.mean([lung.base_y for lung in lungs])
        )

    def sample_point(
        self, rng: np.random.Generator, sign: int, *, height: tuple[float, float], margin: float
    ) -> tuple[float, float]:
        """A point (d, y) well inside one lung and clear of the heart, in fractions ``height`` of its height."""
        lung = self.anatomy.lung(sign)
        top, base = lung.apex_y, lung.base_y
        hx, hy, ha, hb, tilt = self.anatomy.heart_ellipse()
        for attempt in range(8):
            shrink = 0.8**attempt  # relax the margin if the lung is too crowded for it
            d = rng.uniform(lung.medial_d, lung.lateral_d, 64)
            y = top + (base - top) * rng.uniform(height[0], height[1], 64)
            heart_f, _ = ellipse_distance(self.xa_of(sign, d), y, hx, hy, ha, hb, tilt)
            ok = (lung.distance(d, y) >= margin * shrink) & (heart_f < -0.5 * margin * shrink)
            hits = np.flatnonzero(ok)
            if hits.size:
                return float(d[hits[0]]), float(y[hits[0]])
        return lung.centre_d, top + (base - top) * 0.5 * (height[0] + height[1])

    # -- rendering -------------------------------------------------------------------------------------------
    def render(self, noise_rng: np.random.Generator) -> np.ndarray:
        """Compose the density map (anatomy, then the findings' edits), blur, add noise, window, quantise."""
        a = self.anatomy
        rng = np.random.default_rng(a.texture_seed)
        xa, ya, px = self.xa, self.ya, self.px
        dx = xa - a.midline
        # Body: a squarish superellipse (broad shoulders, abdomen below) whose brightness follows thickness.
        u = dx * np.float32(1.0 / a.body_half_width)
        u *= u
        u *= u
        v = (ya - 0.56) * np.float32(1.0 / 0.62)
        v *= v
        v *= v
        inside = 1.0 - (u + v)
        density = np.sqrt(np.clip(inside, 0.0, 1.0))
        density *= np.float32(0.6 * a.soft_tissue)
        density += np.float32(0.4 * a.soft_tissue)
        density *= ramp(inside, 0.05)
        # Mediastinum continuous with the heart, spine seen through it, trachea down to the carina.
        density += 0.09 * np.maximum(self.mediastinum, self.heart_soft)
        vertebra = np.abs((ya - a.rib_top) * np.float32(1.0 / a.rib_spacing) % 1.0 - 0.5)
        density += ramp(0.03 - np.abs(dx), 2 * px) * (0.03 + 0.06 * vertebra)
        density -= 0.12 * ramp(0.012 - np.abs(dx - 0.004), 1.5 * px) * ramp(a.carina_y - ya, 3 * px)
        # Lungs: aerated lung subtracts density, less at the borders (partial volume) and behind the heart.
        for sign in (-1, 1):
            interior = np.clip(self.lung_f[sign] * np.float32(1.0 / 0.05), 0.0, 1.0)
            interior *= 0.2
            interior += 0.8
            density -= np.float32(a.lung(sign).air) * self.lung_air[sign] * self.air_gain * interior
        for sign in (-1, 1):
            hilum_x = a.midline + sign * (a.hilum_d - 0.005)
            bump = (
                1.0
                - ((xa - hilum_x) * np.float32(1 / 0.035)) ** 2
                - ((ya - a.hilum_y(sign)) * np.float32(1 / 0.05)) ** 2
            )
            density += 0.07 * np.clip(bump, 0.0, 1.0)
        if a.bubble_radius > 0:
            bubble_f, _ = ellipse_distance(
                xa, ya, a.midline + 0.17, a.bubble_y, 1.4 * a.bubble_radius, a.bubble_radius
            )
            density -= 0.2 * ramp(bubble_f, 2 * px)
        density += 0.07 * self._bones()
        markings = self._markings(rng)
        markings *= self.marking_gain
        markings *= self.lung_air[-1] + self.lung_air[1]
        density += markings
        density += self.add
        density = gaussian_filter(density, 0.45 * self.scale, truncate=3.0)
        density += noise_rng.standard_normal(density.shape, dtype=np.float32) * np.float32(a.noise_sigma)
        # Window and gamma through a lookup table (cheaper than a power of every pixel).
        level = (density - a.window_low) * np.float32(4095.0 / (a.window_high - a.window_low))
        index = np.clip(level, 0.0, 4095.0).astype(np.int16)
        return _gamma_table(round(a.gamma, 3))[index]

    def _bones(self) -> np.ndarray:
        """Ribs and clavicles as bands around families of curves (no splatting: a few array operations).

        Posterior ribs run from the spine in a low arch to the chest wall, all ribs of a side following the
        same curve shifted by the rib spacing; anterior ribs run from the chest wall down and medially.
        """
        a = self.anatomy
        dx = self.xa - a.midline
        d = np.abs(dx)
        lateral = np.where(dx < 0, a.right.lateral_d, a.left.lateral_d).astype(np.float32) + np.float32(0.015)
        t = np.clip((d - 0.03) / (lateral - 0.03), 0.0, 1.0)
        arch = -0.03 * np.sin(np.float32(np.pi) * np.minimum(t * 1.15, 1.0)) + 0.07 * t * t
        half = np.float32(0.016 / a.rib_spacing)

        def ribs(offset, count: int, weight):
            phase = (self.ya - a.rib_top - offset) * np.float32(1.0 / a.rib_spacing)
            index = np.floor(phase + 0.5)
            frac = (phase - index) * np.float32(1.0 / half)
            band = np.clip(1.6 * (1.0 - frac * frac), 0.0, 1.0)  # a flat-topped bar
            return band * ((index >= 0) & (index < count)) * weight

        inside = (d > 0.03) & (d < lateral)
        bones = ribs(arch, 10, (0.6 + 0.4 * t) * inside)
        back = np.clip((lateral - d) / (lateral - 0.14), 0.0, 1.0)
        front = 0.04 + 0.11 * back - 0.03 * np.sin(np.float32(np.pi) * back)
        bones += ribs(front, 9, 0.4 * ((d > 0.14) & (d < lateral)))
        tc = (d - 0.04) * np.float32(1.0 / 0.3)
        clavicle_y = (
            0.165
            - 0.075 * tc
            + 0.012 * np.sin(np.float32(2 * np.pi) * tc)
            + (0.01 if a.view == "AP" else 0.0)
        )
        across = (self.ya - clavicle_y) * np.float32(1.0 / 0.013)
        bones += 0.8 * np.clip(1.0 - across * across, 0.0, 1.0) * ((tc > 0) & (tc < 1))
        return bones

    def _markings(self, rng: np.random.Generator) -> np.ndarray:
        """Pulmonary vessels: one tree per hilum, picked from a cached library and moved onto the hilum."""
        a = self.anatomy
        library = _vessel_library(self.size)
        out = np.zeros((self.size, self.size), np.float32)
        for sign in (-1, 1):
            stamp = library[int(rng.integers(len(library)))]
            hx, hy = self.to_image(a.midline + sign * a.hilum_d, a.hilum_y(sign))
            ref_x = _LIBRARY_HILUM[0]
            if sign > 0:
                stamp = stamp[:, ::-1]  # the left tree is a mirrored right tree
                ref_x = 1.0 - ref_x
            shift_x = int(round((hx - ref_x) * self.size))
            shift_y = int(round((hy - _LIBRARY_HILUM[1]) * self.size))
            _add_shifted(out, stamp, shift_y, shift_x, a.marking_strength)
        return out


#: Where the library's trees start (image-frame normalised x, y of the patient's right hilum).
_LIBRARY_HILUM = (0.5 - 0.095, 0.45)


@functools.lru_cache(maxsize=2)
def _vessel_library(size: int) -> np.ndarray:
    """A fixed set of right-lung vessel trees at this image size (the same in every process)."""
    count = 48 if size <= 256 else 12 if size <= 1024 else 4  # bounded memory at large sizes
    canvas = Canvas(size, rotation=0.0, midline=0.5)
    trees = np.empty((count, size, size), np.float32)
    for index in range(count):
        rng = np.random.default_rng([20250, index])
        trees[index] = _vessel_tree(canvas, rng, 0.5 - _LIBRARY_HILUM[0], _LIBRARY_HILUM[1])
    trees.flags.writeable = False
    return trees


def _vessel_tree(canvas: Canvas, rng: np.random.Generator, hilum_d: float, hilum_y: float) -> np.ndarray:
    """Branching vessels from the right hilum, tapering towards the periphery (three generations)."""
    k = 12
    angle = np.linspace(-2.0, 1.35, k) + rng.normal(0.0, 0.1, k)
    length = (0.21 + 0.12 * np.clip(-np.sin(angle), 0.0, 1.0)) * rng.uniform(0.85, 1.1, k)
    strength = rng.uniform(0.8, 1.2, k)
    xa, y, w, d, heading = canvas.curves(
        -1,
        hilum_d + rng.normal(0.0, 0.006, k),
        hilum_y + rng.normal(0.0, 0.012, k),
        angle,
        length,
        rng.normal(0.0, 1.2, k),
        strength,
        0.4 * strength,
    )
    trunks = canvas.lines([(xa, y, w)], 0.7 * canvas.scale)
    curves = []
    for _generation in range(2):
        count = d.shape[0]
        parent = np.repeat(np.arange(count), 2)
        at = rng.uniform(0.25, 0.7, 2 * count)
        index = (at * (d.shape[1] - 1)).astype(int)
        fork = np.where(np.arange(2 * count) % 2 == 0, -1.0, 1.0) * rng.uniform(0.35, 0.8, 2 * count)
        start_weight = w[parent, index] * 0.8
        length = (1.0 - at) * length[parent] * rng.uniform(0.5, 0.8, 2 * count)
        xa, y, w, d, heading = canvas.curves(
            -1,
            d[parent, index],
            y[parent, index],
            heading[parent, index] + fork,
            length,
            rng.normal(0.0, 1.5, 2 * count),
            start_weight,
            0.3 * start_weight,
        )
        curves.append((xa, y, w))
    branches = canvas.lines(curves, 0.5 * canvas.scale)
    # Faint parenchymal texture, so that the lung is not a flat field between the vessels.
    texture = canvas.smooth_noise(rng, 0.005)
    return 0.1 * trunks + 0.11 * branches + 0.01 * texture


def _add_shifted(out: np.ndarray, stamp: np.ndarray, dy: int, dx: int, gain: float) -> None:
    """``out += gain * stamp`` moved by (dy, dx) pixels, dropping what falls outside."""
    size_y, size_x = out.shape
    ys, yd = (
        (slice(0, size_y - dy), slice(dy, size_y)) if dy >= 0 else (slice(-dy, size_y), slice(0, size_y + dy))
    )
    xs, xd = (
        (slice(0, size_x - dx), slice(dx, size_x)) if dx >= 0 else (slice(-dx, size_x), slice(0, size_x + dx))
    )
    out[yd, xd] += np.float32(gain) * stamp[ys, xs]


@functools.lru_cache(maxsize=64)
def _gamma_table(gamma: float) -> np.ndarray:
    return (np.linspace(0.0, 1.0, 4096) ** gamma * 255.0 + 0.5).astype(np.uint8)


def ramp(value, width: float):
    """A soft step from 0 to 1 over ``width`` around ``value == 0`` (cheaper than a logistic)."""
    return np.clip(value * np.float32(1.0 / width) + np.float32(0.5), 0.0, 1.0)


def hairline(value, width: float):
    """A thin line along ``value == 0``: 1 there, falling to 0 at ``|value| == width``."""
    return np.clip(1.0 - np.abs(value) * np.float32(1.0 / width), 0.0, 1.0)


def _fill_rows(mask: np.ndarray) -> np.ndarray:
    """Fill each row between its first and last set pixel (the thorax between the lungs' outer borders)."""
    from_left = np.logical_or.accumulate(mask, axis=1)
    from_right = np.logical_or.accumulate(mask[:, ::-1], axis=1)[:, ::-1]
    return from_left & from_right
