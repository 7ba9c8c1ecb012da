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


def _mixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets of a batch mixing datasets over the 19 harmonised labels: NIH rows know the 14
    CheXNet findings only, CheXpert-like rows leave some of those and some extras unknown, a PadChest-like row
    knows a few findings."""
    from cxreader.labels import FINDINGS, HARMONISED_LABELS

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (6, len(HARMONISED_LABELS)), generator=generator).float()
    labels[:2, len(FINDINGS) :] = float("nan")  # nih: no extra findings
    labels[2:4, [3, 4, 5, 10, 11, 12, 13]] = float("nan")  # chexpert: no Infiltration, Mass, Nodule, ...
    labels[2, 16] = float("nan")  # an uncertain label under the ignore policy
    labels[4:, ::3] = float("nan")  # padchest-like: some findings not mapped
    logits = torch.randn(labels.shape, generator=generator) * 3
    return logits, labels


def test_unknown_labels_of_a_mixed_batch_give_no_loss_and_no_gradient():
    logits, labels = _mixed_batch()
    known = ~torch.isnan(labels)
    assert 0 < int(known.sum()) < labels.numel()
    logits.requires_grad_(True)
    loss = masked_bce_with_logits(logits, labels)
    loss.backward()
    # The loss is the plain BCE over the known entries only ...
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits.detach()[known], labels[known])
    assert torch.allclose(loss.detach(), expected, rtol=0, atol=1e-6)
    # ... the unknown entries get exactly zero gradient, the known ones (sigmoid - y) / n_known.
    assert torch.all(logits.grad[~known] == 0)
    expected_grad = (torch.sigmoid(logits.detach()) - torch.nan_to_num(labels)) / known.sum()
    assert torch.allclose(logits.grad[known], expected_grad[known], atol=1e-7)
    assert torch.isfinite(logits.grad).all()


def test_logits_at_unknown_labels_do_not_change_the_loss():
    logits, labels = _mixed_batch()
    unknown = torch.isnan(labels)
    moved = torch.where(unknown, torch.full_like(logits, 1e4), logits)
    assert float(masked_bce_with_logits(moved, labels)) == float(masked_bce_with_logits(logits, labels))
