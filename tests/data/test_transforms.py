import numpy as np
import torch

from cxreader.data.dataset import sample_generator
from cxreader.data.transforms import (
    BatchTrainAugment,
    DeferredTrainPreset,
    EvalPreset,
    TenCropPreset,
    TrainPreset,
    load_size_for,
)


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


def _smooth_image(size: int = 96) -> np.ndarray:
    """A smooth gradient with a bright blob on the image's left: resampling differences stay small."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = 0.3 + 0.4 * y + 0.5 * np.exp(-(((x - 0.3) ** 2 + (y - 0.5) ** 2) / 0.02))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def test_batched_augmentation_matches_the_per_sample_preset():
    image = _smooth_image()
    preset = TrainPreset(image_size=64)
    generators = [sample_generator(7, 1, index) for index in range(8)]
    params = torch.stack([preset.draw(generator) for generator in generators])
    batched = BatchTrainAugment(preset)(torch.as_tensor(image)[None, None].expand(8, 1, -1, -1), params)
    single = torch.stack([preset(image, sample_generator(7, 1, index)) for index in range(8)])
    assert batched.shape == single.shape == (8, 3, 64, 64)
    # Same crop, angle and jitter per sample; only the resampling differs (integer crop origin, antialias).
    assert (batched - single).abs().mean() < 0.035
    assert not torch.allclose(batched[0], batched[1])  # each sample got its own values


def test_batched_augmentation_without_randomness_is_a_resize():
    image = _smooth_image(64)
    preset = TrainPreset(image_size=64, crop_scale=(1.0, 1.0), max_rotation_deg=0.0, jitter=0.0)
    params = torch.tensor([[1.0, 1.0, 0.5, 0.5, 0.0, 1.0, 1.0]])
    out = BatchTrainAugment(preset)(torch.as_tensor(image)[None, None], params)
    assert torch.allclose(out[0], EvalPreset(image_size=64)(image), atol=1e-5)


def test_batched_augmentation_never_flips_sides_and_defers_uint8():
    image = np.zeros((64, 64), dtype=np.uint8)
    image[:, :20] = 255
    preset = TrainPreset(image_size=64, jitter=0.0)
    deferred = DeferredTrainPreset(preset=preset)
    samples = [deferred(image, sample_generator(seed, 0, 0)) for seed in range(20)]
    assert all(
        sample["image"].dtype == torch.uint8 and sample["image"].shape == (1, 64, 64) for sample in samples
    )
    out = BatchTrainAugment(preset)(
        torch.stack([sample["image"] for sample in samples]), torch.stack([s["augment"] for s in samples])
    )
    assert (out[:, 0, :, :16].mean(dim=(1, 2)) > out[:, 0, :, -16:].mean(dim=(1, 2))).all()


def test_box_masks_are_warped_exactly_as_their_images():
    """A mask drawn as an image and the same mask warped as a mask come out alike, whatever the crop."""
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[30:50, 5:25] = 255
    preset = TrainPreset(image_size=64, jitter=0.0)
    params = torch.stack([preset.draw(sample_generator(3, 0, index)) for index in range(6)])
    images = BatchTrainAugment(preset)(torch.as_tensor(mask)[None, None].expand(6, 1, -1, -1), params)
    as_image = images[:, :1] * torch.tensor(preset.std[0]) + torch.tensor(preset.mean[0])  # undo normalising
    masks = torch.as_tensor(mask / 255.0)[None, None].expand(6, 1, -1, -1)
    warped = BatchTrainAugment(preset).warp(masks, params, (64, 64))
    assert warped.shape == (6, 1, 64, 64)
    assert (warped - as_image).abs().max() < 1e-4
    # and at another mask resolution the warp lands in the same place (a 32 x 32 mask of the 64 px image)
    small = BatchTrainAugment(preset).warp(torch.nn.functional.avg_pool2d(masks.float(), 2), params, (64, 64))
    assert (torch.nn.functional.avg_pool2d(warped, 2) - small).abs().mean() < 0.03
