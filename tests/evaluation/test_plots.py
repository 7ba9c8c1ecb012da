from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxreader.evaluation.plots import plot_reliability, plot_roc_curves
from cxreader.labels import NUM_FINDINGS


def _data(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, NUM_FINDINGS)) < 0.2).astype(float)
    probs = np.clip(rng.random((n, NUM_FINDINGS)) * 0.7 + 0.3 * labels, 0, 1)
    return labels, probs


def test_writes_one_png_and_no_temporary_files(tmp_path):
    labels, probs = _data()
    labels[:, 13] = 0.0  # a finding without positives still gets its (empty) panel
    out = tmp_path / "plots" / "roc.png"
    written = plot_roc_curves(labels, probs, out, title="ROC curves (synthetic)")
    assert written == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        width, height = image.size
    assert width > 800 and height > 800
    assert [path.name for path in out.parent.iterdir()] == ["roc.png"]


def test_replaces_an_existing_file(tmp_path):
    labels, probs = _data(seed=1)
    out = tmp_path / "roc.png"
    out.write_bytes(b"old")
    plot_roc_curves(labels, probs, out, title="t")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_rejects_wrong_shapes(tmp_path):
    labels, probs = _data()
    with pytest.raises(ValueError, match="expected the 14 findings"):
        plot_roc_curves(labels[:, :3], probs[:, :3], tmp_path / "roc.png", title="t")
    assert not any(tmp_path.iterdir())


def test_reliability_diagram_is_one_png_even_with_a_finding_without_labels(tmp_path):
    labels, probs = _data(seed=2)
    labels[:, 13] = np.nan  # no known label: an empty panel, not a crash
    labels[:, 12] = 0.0
    out = tmp_path / "plots" / "reliability.png"
    assert plot_reliability(labels, probs, out, title="Reliability (synthetic)") == out
    with Image.open(out) as image:
        assert image.format == "PNG" and min(image.size) > 800
    assert [path.name for path in out.parent.iterdir()] == ["reliability.png"]
    with pytest.raises(ValueError, match="expected the 14 findings"):
        plot_reliability(labels[:, :3], probs[:, :3], tmp_path / "r.png", title="t")
