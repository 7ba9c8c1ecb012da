"""Heatmap overlays a clinician can read at a glance: the film in gray, the map in colour, the box, the words.

Design choices, each for readability:

* the radiograph is shown in its own aspect ratio and gray scale (0 = black, 1 = white, as displayed);
* the heatmap is drawn with a perceptually uniform colormap (:data:`COLORMAP`, ``inferno``; matplotlib's
  perceptual maps are monotonic in lightness, so brighter always means more salient) and an opacity that
  grows with the map value: below :data:`TRANSPARENT_BELOW` it is fully transparent, so the anatomy stays
  visible everywhere the model did not look;
* the box is outlined in cyan with a dark edge, visible on both bright bone and dark lung;
* the title names the finding, its probability and threshold; the description sentence follows;
* ``R``/``L`` markers show the patient's sides (frontal views: the patient's right is on the image's left);
* a red SYNTHETIC banner marks overlays of checkpoints trained on synthetic data; the project's disclaimer
  is printed at the bottom.

The figure is built with matplotlib's object API and its Agg canvas (no pyplot, no global backend state), so it is
headless and safe in a web server.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from cxreader import DISCLAIMER
from cxreader.data.transforms import resize_map
from cxreader.labels import display_name
from cxreader.localization.describe import LATERAL_VIEWS

#: Map values below this are not drawn at all.
TRANSPARENT_BELOW = 0.2
#: Opacity of the most salient pixels.
MAX_ALPHA = 0.6
COLORMAP = "inferno"
_WIDTH_INCHES = 6.0
_DPI = 110
_OUTLINE = [patheffects.withStroke(linewidth=3.5, foreground="black")]


def render_overlay(
    pixels: np.ndarray,
    heatmap: np.ndarray,
    *,
    finding: str,
    probability: float,
    threshold: float | None = None,
    box: Sequence[float] | None = None,
    sentence: str | None = None,
    synthetic: bool = False,
    view: str | None = "PA",
    method: str = "cam",
) -> bytes:
    """Draw one overlay and return it as PNG bytes.

    Args:
        pixels: The radiograph, ``(H, W)`` float in [0, 1] (or uint8), at any size.
        heatmap: The finding's map in [0, 1] on any grid (resized to the image).
        threshold: Its operating threshold (shown, and decides the POSITIVE/negative word).
        box: ``[x, y, w, h]`` in the pixels of ``pixels``.
        sentence: A description sentence to print under the title.
        synthetic: Mark the figure as coming from a SYNTHETIC-trained checkpoint.
        view: View position; frontal views get R/L markers, lateral and unknown (None) get none.
        method: Heatmap method, named in the legend.
    """
    image = np.asarray(pixels, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"pixels must be a 2-D grayscale image, got shape {image.shape}")
    if np.asarray(pixels).dtype == np.uint8:
        image = image / 255.0
    height, width = image.shape
    rgba = heatmap_rgba(heatmap, (width, height))

    text_lines = 3 + (1 if sentence else 0) + (1 if synthetic else 0)
    image_height = _WIDTH_INCHES * 0.82 * height / width
    figure = Figure(figsize=(_WIDTH_INCHES, image_height + 0.28 * text_lines + 0.3), dpi=_DPI)
    FigureCanvasAgg(figure)
    top = 1.0 - (0.28 * (text_lines - 1)) / figure.get_figheight()
    bottom = 0.3 / figure.get_figheight()
    axes = figure.add_axes((0.02, bottom, 0.82, top - bottom))
    axes.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="lanczos")
    axes.imshow(rgba, interpolation="bilinear")
    axes.set_axis_off()

    if box is not None:
        x, y, w, h = (float(v) for v in box)
        axes.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="black", linewidth=4.0))
        axes.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#00e5ff", linewidth=2.0))
    if view is not None and view.upper() not in LATERAL_VIEWS:
        for text, horizontal, position in (("R", "left", 0.02), ("L", "right", 0.98)):
            axes.text(
                position,
                0.97,
                text,
                transform=axes.transAxes,
                ha=horizontal,
                va="top",
                fontsize=15,
                fontweight="bold",
                color="white",
                path_effects=_OUTLINE,
            )

    # Colour bar for the saliency scale, with the transparent band explained by its label.
    bar_axes = figure.add_axes((0.87, bottom + 0.1 * (top - bottom), 0.03, 0.8 * (top - bottom)))
    scale = np.linspace(0.0, 1.0, 256)[:, None]
    bar_axes.imshow(scale, cmap=colormaps[COLORMAP], aspect="auto", origin="lower", extent=(0, 1, 0, 1))
    bar_axes.set_xticks([])
    bar_axes.yaxis.tick_right()
    bar_axes.set_yticks([0.0, 0.5, 1.0])
    bar_axes.set_yticklabels(["0", "0.5", "1"], fontsize=8)
    bar_axes.set_ylabel(f"{method.upper()} saliency (relative)", fontsize=8)
    bar_axes.yaxis.set_label_position("right")

    status = ""
    if threshold is not None:
        status = (
            f"  (threshold {threshold:.2f}: {'POSITIVE' if probability >= threshold else 'below threshold'})"
        )
    lines = [(f"{display_name(finding)}: probability {probability:.2f}{status}", 12, "bold", "black")]
    if sentence:
        lines.append((sentence, 10, "normal", "black"))
    if synthetic:
        lines.insert(
            0, ("SYNTHETIC: model trained on synthetic data, not for patients", 11, "bold", "#c00000")
        )
    y = 1.0 - 0.12 / figure.get_figheight()
    for text, size, weight, colour in lines:
        figure.text(0.02, y, text, fontsize=size, fontweight=weight, color=colour, va="top", ha="left")
        y -= 0.28 / figure.get_figheight()
    figure.text(0.02, 0.08 / figure.get_figheight(), DISCLAIMER, fontsize=7, color="#444444", va="bottom")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return buffer.getvalue()


def heatmap_rgba(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map in [0, 1] as float RGBA at ``size`` = ``(width, height)`` (bilinear), coloured by :data:`COLORMAP`:
    fully transparent below :data:`TRANSPARENT_BELOW`, more opaque the more salient (up to :data:`MAX_ALPHA`).
    """
    width, height = size
    values = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if values.shape != (height, width):
        values = np.clip(resize_map(torch.from_numpy(values), (height, width)).numpy(), 0.0, 1.0)
    rgba = colormaps[COLORMAP](values)
    rgba[..., 3] = MAX_ALPHA * np.clip((values - TRANSPARENT_BELOW) / (1.0 - TRANSPARENT_BELOW), 0.0, 1.0)
    return rgba


def heatmap_layer_png(heatmap: np.ndarray, size: tuple[int, int]) -> bytes:
    """The map alone as a transparent colour layer of ``size`` = ``(width, height)``, as PNG bytes: the
    overlay's colours and transparency rule, for a page to lay over the radiograph."""
    rgba = np.rint(heatmap_rgba(heatmap, size) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def map_to_png(heatmap: np.ndarray) -> bytes:
    """A heatmap as an 8-bit grayscale PNG, as the records store it (0 = not salient, 255 = most salient)."""
    values = np.rint(np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def map_from_png(path: str | Path | BinaryIO) -> np.ndarray:
    """Read a heatmap written by :func:`map_to_png` back as float32 in [0, 1]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255.0)
