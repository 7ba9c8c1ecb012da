"""CheXNet: a DenseNet-121 with one linear multi-label head (14-way by default) and sigmoid outputs.

Rajpurkar et al., "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep Learning", 2017,
built on Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, and trained on ChestX-ray14
(Wang et al., CVPR 2017).

The forward pass is split as in timm: :meth:`CheXNet.forward_features` returns the last convolutional feature
map (after the final batch norm and ReLU) and :meth:`CheXNet.forward_head` pools it and applies the linear
head. Class activation maps (Zhou et al., CVPR 2016) read that feature map and the head's weights directly.

Pooling. CheXNet pools by global average (``pooling="avg"``, the default). ``pooling="lse"`` is the
log-sum-exp pooling that Wang et al. (CVPR 2017) introduced on ChestX-ray14 for weakly supervised
localization: the head is applied at every position of the feature map first (the class activation map
``s_c(x, y) = w_c . f(x, y) + b_c``) and the logit is ``(1 / r) log mean exp(r s_c)``, which lies between the
map's mean (``r -> 0``) and its maximum (``r -> inf``). It rewards evidence that is strong somewhere rather
than weak everywhere, so the map points at the finding. The CAM is ``w_c . f(x, y)`` under either pooling;
under average pooling the logit is simply the mean of that map plus the bias.

Outputs. CheXNet predicts the 14 ChestX-ray14 findings (:data:`~cxreader.labels.FINDINGS`); a model trained on
several datasets predicts their harmonised label space (``num_classes`` outputs, in the order its checkpoint's
contract names, :data:`~cxreader.labels.HARMONISED_LABELS`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from cxreader.errors import CheckpointError
from cxreader.labels import NUM_FINDINGS
from cxreader.models._registry import register_model

logger = logging.getLogger(__name__)

POOLINGS = ("avg", "lse")
#: Sharpness ``r`` of log-sum-exp pooling (a hyperparameter in Wang et al. 2017; the choice is measured in
#: ``benchmarks/BENCHMARKS.md``).
DEFAULT_LSE_R = 10.0


class CheXNet(nn.Module):
    """A torchvision DenseNet backbone with a linear multi-label head.

    Args:
        backbone: A ``torchvision.models.DenseNet`` (its classifier is discarded).
        drop_rate: Dropout before the head.
        pooling: ``"avg"`` (CheXNet) or ``"lse"`` (Wang et al. 2017; module docstring).
        lse_r: Sharpness of log-sum-exp pooling.
        num_classes: Outputs of the head (14, :data:`~cxreader.labels.FINDINGS`, unless the model predicts
            another label space).
    """

    def __init__(
        self,
        backbone: torchvision.models.DenseNet,
        drop_rate: float = 0.0,
        pooling: str = "avg",
        lse_r: float = DEFAULT_LSE_R,
        num_classes: int = NUM_FINDINGS,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise CheckpointError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        if not lse_r > 0:
            raise CheckpointError(f"lse_r must be positive, got {lse_r}")
        if int(num_classes) < 1:
            raise CheckpointError(f"num_classes must be at least 1, got {num_classes}")
        self.features = backbone.features
        self.num_features = backbone.classifier.in_features
        self.drop_rate = drop_rate
        self.pooling = pooling
        self.lse_r = float(lse_r)
        self.num_classes = int(num_classes)
        self.classifier = nn.Linear(self.num_features, self.num_classes)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map, (B, C, h, w), after DenseNet's final norm and ReLU."""
        return F.relu(self.features(images), inplace=False)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooling, dropout, linear head: logits (B, K) (pooling rule in the module docstring)."""
        return self._head(features, with_maps=False)[0]

    def _head(self, features: torch.Tensor, *, with_maps: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pooling == "lse" or with_maps:
            if self.drop_rate > 0:
                features = F.dropout(features, p=self.drop_rate, training=self.training)
            # The head at every position (a 1x1 convolution): the class activation maps, (B, K, h, w).
            maps = torch.einsum("bchw,kc->bkhw", features, self.classifier.weight)
            maps = maps + self.classifier.bias[None, :, None, None]
            if self.pooling == "lse":
                flat = maps.flatten(2)
                logits = (torch.logsumexp(self.lse_r * flat, dim=-1) - math.log(flat.shape[-1])) / self.lse_r
            else:  # the head is linear: the mean of the position logits is the logit of the mean feature
                logits = maps.mean(dim=(2, 3))
            return logits, maps if with_maps else None
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        if self.drop_rate > 0:
            pooled = F.dropout(pooled, p=self.drop_rate, training=self.training)
        return self.classifier(pooled), None

    def forward(
        self, images: torch.Tensor, return_maps: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K); apply ``torch.sigmoid`` for probabilities (multi-label, never softmax).

        With ``return_maps``, also the head's logits at every position of the feature grid, (B, K, h, w)
        (the class activation maps before pooling; box supervision trains them,
        :mod:`cxreader.training.box_supervision`). Called through the module, so DDP syncs their gradients.
        Not keyword-only: the TorchScript ONNX exporter passes the defaults of ``forward`` positionally.
        """
        logits, maps = self._head(self.forward_features(images), with_maps=return_maps)
        return (logits, maps) if return_maps else logits


def _imagenet_densenet121() -> torchvision.models.DenseNet:
    weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    try:
        return torchvision.models.densenet121(weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a broken download raises RuntimeError
        raise CheckpointError(
            "cannot load the ImageNet DenseNet-121 weights through torchvision "
            f"({type(exc).__name__}: {exc}). This machine may be offline: download "
            f"{weights.url} elsewhere, then pass it with --weights FILE, or train from scratch with --init none"
        ) from None


def _chexnet(backbone: torchvision.models.DenseNet, weights: str | Path | None, options: dict) -> CheXNet:
    """A :class:`CheXNet` on ``backbone`` (``options``: its keyword arguments), then loaded from the local
    ``weights`` file when one is given."""
    model = CheXNet(backbone, **options)
    if weights is not None:
        load_pretrained_weights(model, weights)
    return model


@register_model
def chexnet_densenet121(*, init: str = "imagenet", weights: str | Path | None = None, **options) -> CheXNet:
    """CheXNet's DenseNet-121 (Rajpurkar et al. 2017) with a 14-way head.

    Args:
        init: ``"imagenet"`` (torchvision's IMAGENET1K_V1 weights, as CheXNet) or ``"none"`` (random).
        weights: A local file with DenseNet-121 or CheXNet weights (torchvision, timm-free DenseNet, or the
            public CheXNet checkpoint layouts); overrides ``init``.
        **options: ``drop_rate`` (dropout before the head), ``pooling`` and ``lse_r`` (:class:`CheXNet`;
            CheXNet itself averages), ``num_classes`` (outputs; 14 by default).
    """
    if weights is not None or init == "none":
        backbone = torchvision.models.densenet121(weights=None)
    elif init == "imagenet":
        backbone = _imagenet_densenet121()
    else:
        raise CheckpointError(f"unknown init {init!r}; use 'imagenet' or 'none'")
    return _chexnet(backbone, weights, options)


def _compact_densenet(init: str, weights: str | Path | None, options: dict, *, stride: int) -> CheXNet:
    if init not in ("none", "imagenet"):
        raise CheckpointError(f"unknown init {init!r}; use 'none'")
    if init == "imagenet" and weights is None:
        raise CheckpointError(
            "the compact DenseNets have no ImageNet weights; use --init none or chexnet_densenet121"
        )
    backbone = torchvision.models.DenseNet(growth_rate=16, block_config=(4, 8, 8), num_init_features=32)
    if stride == 8:
        # The last transition keeps its 1x1 convolution and drops its pooling: the third dense block (and so
        # the class activation map) works at twice the resolution for about 25% more compute.
        backbone.features.transition2.pool = torch.nn.Identity()
    return _chexnet(backbone, weights, options)


@register_model
def densenet_small(*, init: str = "none", weights: str | Path | None = None, **options) -> CheXNet:
    """A compact DenseNet (growth 16, blocks 4-8-8, 16× downsampling) of the same family as CheXNet's.

    It trains about 8× faster than DenseNet-121 on a CPU and keeps a finer feature map (8×8 at 128 px), so
    the tests train a real model on two CPU cores in seconds. It has no ImageNet weights. ``weights`` and
    ``options`` as for :func:`chexnet_densenet121`.
    """
    return _compact_densenet(init, weights, options, stride=16)


@register_model
def densenet_small_s8(*, init: str = "none", weights: str | Path | None = None, **options) -> CheXNet:
    """:func:`densenet_small` with 8× downsampling: a 16×16 feature map at 128 px, the recipe of ``cxreader
    demo``. Class activation maps (Zhou et al. 2016) are only as fine as the last feature map, and the
    synthetic nodules are 4–9 px: at 16× a whole nodule sits inside one map cell. No ImageNet weights."""
    return _compact_densenet(init, weights, options, stride=8)


# Old torchvision DenseNet checkpoints (and the CheXNet reference model) name layers "norm.1", "conv.2", ...
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def normalise_state_dict_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the public DenseNet/CheXNet checkpoint layouts onto :class:`CheXNet`'s key names.

    Accepted: torchvision DenseNet (``features.…``, ``classifier.…``), DDP-wrapped (``module.…``), the CheXNet
    reference implementations (``module.densenet121.features.…``, ``densenet121.classifier.0.…``), and the old
    ``norm.1``/``conv.2`` layer names of early torchvision releases.
    """
    result: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = key
        for prefix in ("module.", "model.", "densenet121."):
            if new_key.startswith(prefix):
                new_key = new_key[len(prefix) :]
        match = _OLD_DENSENET_KEY.match(new_key)
        if match:
            new_key = match.group(1) + match.group(2)
        new_key = new_key.replace("classifier.0.", "classifier.")
        result[new_key] = value
    return result


def load_pretrained_weights(model: CheXNet, path: str | Path) -> None:
    """Load backbone (and, if it has as many outputs as ``model``, head) weights from a local file.

    An ImageNet DenseNet (1000-way classifier) loads its backbone only; a CheXNet checkpoint loads all into a
    14-way model, its backbone only into a model of another label space.

    Raises:
        CheckpointError: the file is missing, unreadable, or its keys/shapes don't fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; report them as one line
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model"):  # a training checkpoint keeps the weights under one of these
        if isinstance(payload, Mapping) and isinstance(payload.get(wrapper), Mapping):
            payload = payload[wrapper]
            break
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path}: not a state dict")
    state = normalise_state_dict_keys(payload)
    head = state.get("classifier.weight")
    if head is not None and head.shape[0] != model.num_classes:
        logger.info("%s: %d-way classifier ignored; loading the backbone only", path, head.shape[0])
        state.pop("classifier.weight", None)
        state.pop("classifier.bias", None)
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in own if k not in state and not k.startswith("classifier."))
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    problems = {"missing": missing, "unexpected": unexpected, "with other shapes": mismatched}
    details = [f"{len(keys)} {what} (e.g. {keys[0]})" for what, keys in problems.items() if keys]
    if details:
        raise CheckpointError(f"{path}: keys don't fit this model: " + "; ".join(details))
    model.load_state_dict(state, strict=False)
