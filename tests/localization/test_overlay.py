"""Heatmap image files: the stored 8-bit map reads back within rounding; the page's layer is transparent
where the map is low."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cxreader.localization.overlay import MAX_ALPHA, heatmap_layer_png, map_from_png, map_to_png


def test_heatmap_png_round_trip():
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    np.testing.assert_allclose(map_from_png(io.BytesIO(map_to_png(values))), values, atol=0.5 / 255 + 1e-6)


def test_the_heatmap_layer_is_drawn_at_the_display_size_and_transparent_where_the_map_is_low():
    values = np.zeros((8, 8), dtype=np.float32)
    values[:, 4:] = 1.0
    with Image.open(io.BytesIO(heatmap_layer_png(values, (40, 20)))) as layer:
        rgba = np.asarray(layer)
    assert layer.mode == "RGBA" and rgba.shape == (20, 40, 4)
    assert rgba[:, :10, 3].max() == 0 and rgba[:, -10:, 3].min() == round(255 * MAX_ALPHA)
