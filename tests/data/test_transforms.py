import numpy as np
import torch

from cxreader.data.dataset import sample_generator
from cxreader.data.transforms import EvalPreset, TenCropPreset, TrainPreset, load_size_for


def test_eval_preset_shape_and_normalisation():
    image = np.full((50, 40), 255, dtype=np.uint8)
    out = EvalPreset(image_size=32)(image)
    assert out.shape == (3, 32, 32)
    assert torch.allclose(
        out[:, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


def test_train_preset_is_a_function_of_the_generator_seed():
    image = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    preset = TrainPreset(image_size=48)
    a = preset(image, sample_generator(1, 2, 3))
    b = preset(image, sample_generator(1, 2, 3))
    c = preset(image, sample_generator(1, 3, 3))
    assert a.shape == (3, 48, 48) and torch.equal(a, b) and not torch.equal(a, c)


def test_train_preset_never_flips_sides():
    image = np.zeros((64, 64), dtype=np.uint8)
    image[:, :20] = 255  # bright on the image's left (the patient's right)
    preset = TrainPreset(image_size=64, max_rotation_deg=7.0, jitter=0.0)
    for seed in range(20):
        out = preset(image, sample_generator(seed, 0, 0))[0]
        assert out[:, :16].mean() > out[:, -16:].mean()


def test_tencrop_and_load_size():
    assert load_size_for(224) == 256
    out = TenCropPreset(image_size=32)(np.zeros((40, 40), dtype=np.uint8))
    assert out.shape == (10, 3, 32, 32)
