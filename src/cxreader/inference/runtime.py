"""Where and how a PyTorch model runs: the device, the one AMP path, the memory format, the forward pass.

Training, validation, evaluation, prediction, captioning and screening all resolve their device and autocast
dtype here, so ``--device`` and ``--amp`` mean the same everywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import torch
import torch.nn as nn

from cxreader.errors import ConfigError


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA (this process's GPU) if available, else CPU; ``hpu`` needs Habana's bridge."""
    if requested == "hpu":
        if importlib.util.find_spec("habana_frameworks") is None:
            raise ConfigError(
                "--device hpu needs Habana's PyTorch bridge (habana_frameworks.torch), which is not installed"
            )
        import habana_frameworks.torch.core  # noqa: F401  (registers the hpu device)

        return torch.device("hpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available on this machine")
    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``auto`` → bf16 on CUDA where supported (else fp16) and on HPU; none on CPU."""
    explicit = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if amp in explicit:
        return explicit[amp]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "hpu":
        return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16, read from Linux's
    ``/proc/cpuinfo``; False elsewhere). There, bf16 autocast makes CPU training markedly faster; without
    those instructions bf16 is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """One AMP path (nanoGPT): autocast when a dtype is set, a no-op otherwise."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(setting: str, device: torch.device) -> bool:
    """Whether ``--channels-last on|off|auto`` asks for the channels-last layout (``auto``: on CUDA)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


@torch.no_grad()
def forward_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(B, K)`` (float32, on ``device``; one column per model output, in the label order of
    the model's contract) and the last feature maps ``(B, C, h, w)``.

    Probabilities are ``sigmoid(logits)``: each finding is an independent output (CheXNet, Rajpurkar et al.
    2017), never a softmax. The model is run through its split forward (``forward_features`` then
    ``forward_head``) so that the feature maps come back too: class activation maps are read from them with
    the head's weights (Zhou et al. 2016) without a second forward pass.
    """
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, amp_dtype):
        features = model.forward_features(images)
        logits = model.forward_head(features)
    return torch.sigmoid(logits.float()), features
