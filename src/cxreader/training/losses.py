"""Multi-label loss: binary cross-entropy with logits, masked where a label is unknown (NaN).

Each of the 14 findings is an independent Bernoulli output (CheXNet, Rajpurkar et al. 2017), so the loss is
a sum of binary cross-entropies, never a softmax cross-entropy over classes. Unknown labels (NaN, the
torchxrayvision convention) contribute nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce_with_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the known (non-NaN) labels of the batch; 0 when none is known."""
    known = ~torch.isnan(labels)
    targets = torch.where(known, labels, torch.zeros_like(labels))
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    losses = losses * known
    return losses.sum() / known.sum().clamp_min(1)
