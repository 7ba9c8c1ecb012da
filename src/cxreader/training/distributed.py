"""One distributed helper that returns a value (the timm / nanoGPT pattern).

:func:`init_distributed` reads torchrun's variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``), initialises
the process group (NCCL on CUDA, gloo on CPU, HCCL on Habana HPU) and returns a frozen :class:`DistInfo`.
Without torchrun it returns a single-process ``DistInfo`` and initialises nothing. Only the primary process
logs and writes files.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn as nn

from cxreader.inference.runtime import resolve_device

# The differentiable all-reduce used by AllReduceBatchNorm2d warns on every call that it will move; its
# replacement in torch.distributed._functional_collectives has no autograd support yet.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_primary(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(
    requested_device: str = "auto",
    *,
    backend: str | None = None,
    timeout: datetime.timedelta = datetime.timedelta(minutes=30),
) -> DistInfo:
    """Initialise the process group when launched by torchrun; otherwise describe a single process.

    Args:
        requested_device: ``auto``, ``cpu``, ``cuda``...; under torchrun each rank gets its local accelerator.
        backend: The collective backend; default NCCL on CUDA, HCCL on HPU, gloo otherwise. Jobs that only
            exchange a few Python objects at the end (screening) ask for gloo.
        timeout: How long a collective waits for the slowest rank.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    if world_size <= 1:
        return DistInfo(0, 0, 1, device, None)
    backend = backend or {"cuda": "nccl", "hpu": "hccl"}.get(device.type, "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank, local_rank, world_size, device, backend)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.is_distributed:
        dist.barrier()


def all_gather_objects(info: DistInfo, value: object) -> list[object]:
    """Every rank's value, in rank order, on every rank."""
    if not info.is_distributed:
        return [value]
    gathered: list[object] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sum(info: DistInfo, values: list[float]) -> list[float]:
    """Sum a few scalars over ranks (float64)."""
    if not info.is_distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if info.backend == "nccl":
        tensor = tensor.to(info.device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def broadcast_module_state(info: DistInfo, module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (e.g. before validation and saving)."""
    if not info.is_distributed:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics are summed over every DDP process, on any backend.

    ``torch.nn.SyncBatchNorm`` only runs on GPUs; this layer does the same on CPU/gloo with a differentiable
    all-reduce (``torch.distributed.nn.functional.all_reduce``) of per-channel count, sum and sum of squares,
    so N processes with batch B/N compute exactly the statistics of one process with batch B (Ioffe & Szegedy
    2015, with the cross-device reduction of Peng et al., "MegDet", CVPR 2018).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Module's name)
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(input)
        channels = input.shape[1]
        # float64 sums: E[x²] − E[x]² in float32 loses digits to cancellation on ReLU activations.
        wide = input.double()
        count = torch.full((1,), input.numel() / channels, dtype=torch.float64, device=input.device)
        packed = torch.cat([wide.sum(dim=(0, 2, 3)), (wide * wide).sum(dim=(0, 2, 3)), count])
        packed = dist_nn.all_reduce(packed)
        total = packed[-1]
        mean = packed[:channels] / total
        var = (packed[channels : 2 * channels] / total - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                unbiased = var * (total / (total - 1).clamp_min(1))
                self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(unbiased.detach(), alpha=self.momentum)
                self.num_batches_tracked.add_(1)
        shape = (1, channels, 1, 1)
        mean, var = mean.to(input.dtype), var.to(input.dtype)
        output = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output


def convert_batchnorm_for_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """Swap every BatchNorm2d for a cross-process one: ``nn.SyncBatchNorm`` on GPUs, else ours."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _replace_batchnorm(module)


def _replace_batchnorm(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        replacement = AllReduceBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        replacement.load_state_dict(module.state_dict())
        return replacement
    for name, child in module.named_children():
        setattr(module, name, _replace_batchnorm(child))
    return module
