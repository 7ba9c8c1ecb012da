"""Class activation heatmaps for CheXNet-style models: CAM and Grad-CAM, at input size, in [0, 1].

* **CAM** (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016): the last feature
  map weighted by the linear head's weights of one class, ``M_c(x, y) = sum_k w_k^c f_k(x, y)``, exactly as
  CheXNet drew its heatmaps. Read directly from :meth:`CheXNet.forward_features` and ``classifier.weight``.
* **Grad-CAM** (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017): the feature map weighted by the spatially averaged gradient of the class logit,
  then a ReLU. Computed with captum's ``LayerGradCam`` (captum >= 0.7, pure PyTorch) on the post-ReLU
  feature map that :meth:`CheXNet.forward_features` returns; a wrapper passes that map through an identity
  module to expose it as a layer, because the final ReLU is a function call, not a module, in the model.

For a head made of global average pooling and one linear layer, Grad-CAM's channel weights are
``w_k^c / (h * w)``, so Grad-CAM equals ReLU(CAM) up to a constant factor; both are offered because Grad-CAM
also serves heads that are not linear.

What the maps mean (a project convention, pinned by a test): values in ``[0, 1]`` at the model's input size
(bilinear upsampling of the feature-resolution map), ``1`` = most salient pixel for that finding. CAM is
min-max scaled (its raw scores are logit contributions of any sign); Grad-CAM, already non-negative after its
ReLU, is divided by its maximum. A map without any variation (or an all-zero Grad-CAM) comes back as zeros.

Which row of the head a finding is: the model's label order, from its checkpoint's contract (``labels``; the 14
:data:`~cxreader.labels.FINDINGS` of a CheXNet model by default). A model whose head has another number of rows
than the labels it is given is refused, never read in the wrong order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from cxreader.data.transforms import resize_map
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS, NO_FINDING, UnknownFindingError, canonical_finding

#: Heatmap methods, in the order the CLI lists them.
METHODS = ("cam", "gradcam")


def resolve_findings(findings: str | Sequence[str] | None, labels: Sequence[str] = FINDINGS) -> list[str]:
    """Canonical names of the requested findings (``None`` or ``"all"`` = all of ``labels``, in their order).

    Args:
        findings: Finding names (any accepted spelling), one name, ``"all"`` or ``None``.
        labels: The model's label order (default: the 14 CheXNet findings).

    Raises:
        ConfigError: a name that is not one of ``labels`` (the message lists the valid names).
    """
    labels = tuple(labels)
    if findings is None or findings == "all":
        return list(labels)
    names = [findings] if isinstance(findings, str) else list(findings)
    resolved = []
    for name in names:
        try:
            canonical = canonical_finding(name)
        except UnknownFindingError as exc:
            raise ConfigError(str(exc)) from None
        if canonical == NO_FINDING or canonical not in labels:
            raise ConfigError(
                f"{name!r} is not a finding with a heatmap for this model; expected one of: {', '.join(labels)}"
            )
        resolved.append(canonical)
    return resolved


def check_head(model: nn.Module, labels: Sequence[str]) -> None:
    """Refuse a model whose linear head has another number of rows than ``labels`` (its rows could not be
    named: a map would be drawn for the wrong finding).

    Raises:
        ConfigError: naming both counts.
    """
    head = getattr(model, "classifier", None)
    rows = getattr(getattr(head, "weight", None), "shape", (None,))[0]
    if rows is not None and rows != len(labels):
        raise ConfigError(
            f"the model's head has {rows} outputs but {len(labels)} labels were given; pass the labels of its "
            "checkpoint's contract"
        )


def class_activation_maps(
    model: nn.Module, images: torch.Tensor, findings: Sequence[str], labels: Sequence[str] = FINDINGS
) -> torch.Tensor:
    """Raw CAMs (Zhou et al. 2016) at feature resolution.

    Args:
        model: A :class:`~cxreader.models.chexnet.CheXNet` (anything with ``forward_features`` and a linear
            ``classifier``).
        images: Normalised input batch ``(B, 3, H, W)``.
        findings: Canonical finding names (see :func:`resolve_findings` for any spelling).
        labels: The model's label order: row ``k`` of the head is ``labels[k]``.

    Returns:
        ``(B, F, h, w)`` float32: ``sum_k w_k^c f_k(x, y)`` per finding (the bias is a constant and omitted).
    """
    labels = tuple(labels)
    check_head(model, labels)
    indices = torch.tensor([labels.index(name) for name in findings], device=images.device)
    with torch.no_grad():
        features = model.forward_features(images).float()
        weights = model.classifier.weight.float()[indices]
        return torch.einsum("bchw,fc->bfhw", features, weights)


class _SplitForward(nn.Module):
    """``forward_head(forward_features(x))`` with the post-ReLU feature map passed through a hookable module
    (an identity), so that captum can hook it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.feature_layer = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.feature_layer(self.model.forward_features(images)))


def grad_cams(
    model: nn.Module, images: torch.Tensor, findings: Sequence[str], labels: Sequence[str] = FINDINGS
) -> torch.Tensor:
    """Raw Grad-CAMs (Selvaraju et al. 2017) at feature resolution, through captum's ``LayerGradCam``.

    Args:
        labels: The model's label order: output ``k`` is ``labels[k]``.

    Returns:
        ``(B, F, h, w)`` float32, non-negative (the method's ReLU applied).
    """
    from captum.attr import LayerGradCam  # imported here: only Grad-CAM needs captum

    labels = tuple(labels)
    check_head(model, labels)
    wrapper = _SplitForward(model)
    method = LayerGradCam(wrapper, wrapper.feature_layer)
    maps = []
    with torch.enable_grad():
        for name in findings:
            attribution = method.attribute(images, target=labels.index(name), relu_attributions=True)
            maps.append(attribution.detach().float()[:, 0])
    return torch.stack(maps, dim=1)


def normalise_maps(maps: torch.Tensor, method: str) -> torch.Tensor:
    """Scale each map of ``(..., H, W)`` into ``[0, 1]`` by the rule in the module docstring."""
    flat = maps.flatten(-2)
    high = flat.amax(dim=-1, keepdim=True)
    low = flat.amin(dim=-1, keepdim=True) if method == "cam" else torch.zeros_like(high)
    span = high - low
    scaled = torch.where(span > 1e-12, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.clamp_(0.0, 1.0).view_as(maps)


def restrict_heatmap(heatmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A ``(H, W)`` map in [0, 1] kept inside ``mask`` only (zero elsewhere), rescaled so that 1 is again the
    most salient pixel INSIDE the mask.

    Why: a weakly supervised CAM also scores the image border and the soft tissue outside the chest (zero
    padding and the collimation edge are strong, finding-independent features of a small model), and those
    scores can outrank the finding itself. Restricting the map to the thorax
    (:meth:`~cxreader.localization.geometry.ChestGeometry.thorax_mask`) before drawing boxes and describing
    places removes those spurious regions. A map with nothing inside the mask comes back unchanged, so an
    estimate of the thorax that is wrong never erases the only evidence there is.
    """
    values = np.asarray(heatmap, dtype=np.float32)
    keep = np.asarray(mask, dtype=bool)
    if keep.shape != values.shape:
        raise ValueError(f"mask shape {keep.shape} differs from the heatmap's {values.shape}")
    inside = np.where(keep, values, 0.0)
    peak = float(inside.max()) if inside.size else 0.0
    if not peak > 0.0:
        return values
    return np.clip(inside / peak, 0.0, 1.0).astype(np.float32)


def heatmaps(
    model: nn.Module,
    image_tensor: torch.Tensor,
    findings: str | Sequence[str] | None = None,
    method: str = "cam",
    *,
    labels: Sequence[str] = FINDINGS,
) -> np.ndarray:
    """Class activation heatmaps at input size, values in [0, 1], 1 = most salient.

    Args:
        model: A CheXNet in eval mode (the model is not modified; its mode is kept).
        image_tensor: One normalised image ``(3, H, W)`` or a batch ``(B, 3, H, W)``, as the checkpoint's
            evaluation preset produces it.
        findings: Finding names (any accepted spelling), one name, or ``None`` for all of ``labels``.
        method: ``"cam"`` (Zhou et al. 2016) or ``"gradcam"`` (Selvaraju et al. 2017).
        labels: The model's label order, from its checkpoint's contract (default: the 14 CheXNet findings).

    Returns:
        float32 ``(F, H, W)`` for one image, ``(B, F, H, W)`` for a batch, in the order of ``findings``.

    Raises:
        ConfigError: unknown method or finding name, or a head that does not have one row per label.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown heatmap method {method!r}; expected one of: {', '.join(METHODS)}")
    labels = tuple(labels)
    check_head(model, labels)
    names = resolve_findings(findings, labels)
    single = image_tensor.ndim == 3
    batch = image_tensor[None] if single else image_tensor
    if batch.ndim != 4:
        raise ConfigError(
            f"image_tensor must be (3, H, W) or (B, 3, H, W), got shape {tuple(image_tensor.shape)}"
        )
    parameter = next(model.parameters(), None)
    if parameter is not None:
        batch = batch.to(device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()  # dropout off and batch statistics frozen: maps must not depend on the batch
    try:
        raw = (
            class_activation_maps(model, batch, names, labels)
            if method == "cam"
            else grad_cams(model, batch, names, labels)
        )
    finally:
        model.train(was_training)
    upsampled = resize_map(raw.flatten(0, 1).cpu(), tuple(batch.shape[-2:])).unflatten(0, raw.shape[:2])
    result = normalise_maps(upsampled, method).numpy().astype(np.float32)
    return result[0] if single else result
