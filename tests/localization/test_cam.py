"""CAM and Grad-CAM: shape, range, orientation, agreement with each other, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS
from cxreader.localization.cam import (
    class_activation_maps,
    grad_cams,
    heatmaps,
    resolve_findings,
    restrict_heatmap,
)
from cxreader.models import create_model


def _bright_square(size: int, rows: slice, cols: slice) -> torch.Tensor:
    image = torch.zeros(3, size, size)
    image[:, rows, cols] = 1.0
    return image


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_maps_are_at_input_size_in_unit_range_with_one_at_the_most_salient_pixel(toy_model, method):
    image = _bright_square(64, slice(40, 56), slice(8, 24))
    maps = heatmaps(toy_model, image, ["Effusion", "Nodule"], method)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.isclose(maps.reshape(2, -1).max(axis=1), 1.0).all()
    # Orientation: the peak sits where the bright square is (rows 40-56, columns 8-24): no flip, no transpose.
    row, col = np.unravel_index(int(maps[0].argmax()), maps[0].shape)
    assert 40 <= row < 56 and 8 <= col < 24


def test_a_batch_gives_one_map_per_image_and_finding(toy_model):
    batch = torch.stack(
        [_bright_square(64, slice(0, 16), slice(0, 16)), _bright_square(64, slice(48, 64), slice(48, 64))]
    )
    maps = heatmaps(toy_model, batch, None, "cam")
    assert maps.shape == (2, len(FINDINGS), 64, 64)
    first = np.unravel_index(int(maps[0, 0].argmax()), (64, 64))
    second = np.unravel_index(int(maps[1, 0].argmax()), (64, 64))
    assert first[0] < 16 and first[1] < 16 and second[0] >= 48 and second[1] >= 48


def test_a_flat_map_comes_back_as_zeros(toy_model):
    maps = heatmaps(toy_model, torch.full((3, 32, 32), 0.5), ["Mass"], "cam")
    assert (maps == 0).all()


def test_gradcam_equals_relu_cam_for_a_linear_head():
    # CheXNet's head is global average pooling + linear, so Grad-CAM's channel weights are w / (h * w):
    # Grad-CAM (captum) must equal ReLU(CAM) divided by the number of feature cells.
    torch.manual_seed(0)
    model = create_model("densenet_small", init="none").eval()
    images = torch.randn(1, 3, 48, 48)
    names = ["Atelectasis", "Pneumothorax"]
    cam = class_activation_maps(model, images, names)
    grad = grad_cams(model, images, names)
    cells = cam.shape[-1] * cam.shape[-2]
    assert torch.allclose(grad, torch.relu(cam) / cells, atol=1e-5, rtol=1e-4)


def test_the_model_mode_is_kept(toy_model):
    toy_model.train()
    heatmaps(toy_model, torch.rand(3, 32, 32), ["Mass"], "gradcam")
    assert toy_model.training


def test_finding_names_are_canonicalised_and_unknown_ones_refused(toy_model):
    assert resolve_findings(["infiltrate", "Pleural Thickening"]) == ["Infiltration", "Pleural_Thickening"]
    with pytest.raises(ConfigError, match="unknown finding 'Tumour'"):
        heatmaps(toy_model, torch.rand(3, 32, 32), ["Tumour"], "cam")
    with pytest.raises(ConfigError, match="not a finding"):
        resolve_findings("No Finding")


def test_unknown_method_and_bad_shape_are_refused(toy_model):
    with pytest.raises(ConfigError, match="unknown heatmap method 'lime'"):
        heatmaps(toy_model, torch.rand(3, 32, 32), ["Mass"], "lime")
    with pytest.raises(ConfigError, match="image_tensor must be"):
        heatmaps(toy_model, torch.rand(32, 32), ["Mass"], "cam")


def test_a_map_restricted_to_a_mask_is_rescaled_inside_and_left_alone_when_the_mask_holds_nothing():
    heatmap = np.zeros((16, 16), np.float32)
    heatmap[0, 0] = 1.0  # a border artefact, outside the mask
    heatmap[8, 8] = 0.5  # the finding, inside
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    restricted = restrict_heatmap(heatmap, mask)
    assert restricted[0, 0] == 0.0 and restricted[8, 8] == 1.0
    assert restricted.min() >= 0.0 and restricted.max() == 1.0
    empty = np.zeros((16, 16), bool)
    np.testing.assert_array_equal(restrict_heatmap(heatmap, empty), heatmap)
    with pytest.raises(ValueError, match="shape"):
        restrict_heatmap(heatmap, np.ones((8, 8), bool))
