"""Learned captions of the positive findings of a screened image, for the records database.

The captioner (Shin et al., CVPR 2016, "Learning to Read Chest X-Rays: Recurrent Neural Cascade Model for
Automated Image Annotation"; :mod:`cxreader.captioning`) writes one MeSH-style annotation per finding that the
*screening model* calls positive (its probability at or above the screening checkpoint's threshold). Findings
the captioner has no token for get no caption: the record then carries the grounded description only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxreader.inference.predict import FilePrediction


def learned_captions(captioner, image: np.ndarray, positive: Sequence[str]) -> dict[str, str]:
    """``{finding: caption}`` for the positive findings that the captioner knows.

    Args:
        captioner: A loaded :class:`~cxreader.captioning.predict.CaptionPredictor`.
        image: The grayscale image (uint8, or float in [0, 1]); the captioner applies its own transform.
        positive: The findings the screening model calls positive (:func:`~cxreader.labels.positive_findings`).
    """
    from cxreader.vocabulary import to_token

    positive = [name for name in positive if to_token(name) in captioner.vocab]
    if not positive:
        return {}
    captions = captioner.describe(image, positive)
    return {name: caption.text for name, caption in zip(positive, captions, strict=True) if caption.text}


def caption_predictions(captioner, results: Sequence[FilePrediction]) -> None:
    """Attach the learned caption of each positive finding to each readable result (``predict --caption``).

    The findings are the classifier's positives, as in screening (:func:`learned_captions`); a finding the
    captioner has no token for is listed with ``text: None`` rather than silently dropped.

    Args:
        captioner: A loaded :class:`~cxreader.captioning.predict.CaptionPredictor` (``--caption``).
        results: Predictions that kept their images (``Predictor.predict_files(..., keep_images=True)``).
    """
    for result in results:
        if result.read:
            captions = learned_captions(captioner, result.image.pixels, result.positive)
            result.captions = [{"finding": name, "text": captions.get(name)} for name in result.positive]
