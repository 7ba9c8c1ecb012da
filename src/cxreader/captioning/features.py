"""Encoder inputs and features for the captioner: one image rule for training, evaluation and prediction.

An image is decoded at the classifier's load size (``load_size_for(input_size)``, as the classifier's own
evaluation loader does) and passed through the encoder checkpoint's evaluation transform, so the captioner
sees what the classifier saw. With a frozen encoder the features of every image are computed once, kept in
float16 (half the memory; the decoder computes in float32), and reused by every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cxreader.data.io import read_image_uint8
from cxreader.data.transforms import EvalPreset, load_size_for
from cxreader.errors import CXReaderError, DataError
from cxreader.models.chexnet import CheXNet


def read_encoder_image(path: str | Path, input_size: int) -> np.ndarray:
    """The uint8 image the encoder's transform expects: decoded and resized to the classifier's load size.

    Raises:
        ImageReadError: the file cannot be read as an image.
    """
    return read_image_uint8(path, size=load_size_for(input_size))


def read_images(
    paths: Sequence[str | Path], input_size: int
) -> tuple[list[np.ndarray], dict[str | Path, int], list[str]]:
    """Read images, keeping going past unreadable ones.

    Returns:
        The images read, each readable path's row among them, and one ``file: reason`` per failure.

    Raises:
        DataError: none of the images could be read.
    """
    images, row_of, errors = [], {}, []
    for path in paths:
        try:
            images.append(read_encoder_image(path, input_size))
        except CXReaderError as exc:
            errors.append(str(exc))
            continue
        row_of[path] = len(images) - 1
    if not images:
        first = f" (first: {errors[0]})" if errors else ""
        raise DataError(paths[0] if paths else "pairs", f"none of the pairs' images could be read{first}")
    return images, row_of, errors


@torch.no_grad()
def encoder_features(
    encoder: CheXNet,
    images: Sequence[np.ndarray],
    transform: EvalPreset,
    *,
    device: torch.device,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float16,
) -> torch.Tensor:
    """Features (N, C, h, w) of grayscale images through a frozen encoder (eval mode), on the CPU.

    Args:
        encoder: The CheXNet model whose ``forward_features`` is used.
        images: uint8 or float [0, 1] grayscale arrays.
        transform: The encoder checkpoint's evaluation transform.
    """
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.stack([transform(image) for image in images[start : start + batch_size]])
            chunks.append(encoder.forward_features(batch.to(device)).to("cpu", dtype))
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)
