import math

import torch

from cxreader.training.losses import masked_bce_with_logits


def test_matches_bce_when_all_known():
    logits, labels = torch.randn(4, 14), torch.randint(0, 2, (4, 14)).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert torch.allclose(masked_bce_with_logits(logits, labels), expected)


def test_unknown_labels_do_not_count():
    logits = torch.zeros(1, 14)
    labels = torch.full((1, 14), float("nan"))
    labels[0, 0] = 1.0
    assert math.isclose(float(masked_bce_with_logits(logits, labels)), math.log(2), rel_tol=1e-6)
    assert float(masked_bce_with_logits(logits, torch.full((1, 14), float("nan")))) == 0.0


def test_is_multilabel_not_softmax():
    # Two positives can both be predicted confidently: the loss goes to zero, impossible under softmax.
    labels = torch.zeros(1, 14)
    labels[0, :2] = 1
    logits = torch.where(labels > 0, torch.tensor(20.0), torch.tensor(-20.0))
    assert float(masked_bce_with_logits(logits, labels)) < 1e-6
