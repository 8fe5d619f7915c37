"""torchrun / DistributedDataParallel plumbing: gloo on CPU, nccl on GPU; rank 0 logs and checkpoints.

Launch: `torchrun --nproc_per_node=2 -m robo_hybrid.cli train algo=bc ...`. Every rank builds the same model from
the same seed; DDP broadcasts rank 0's parameters at wrap time and all-reduces (averages) gradients in backward.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def launched_rank() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun); readable before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun describes (env:// rendezvous); a no-op outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, backend)


def device_for(device: str, info: DistInfo) -> torch.device:
    """cuda:<local_rank> for GPU jobs (one GPU per rank), else the configured device."""
    if info.enabled and device.startswith("cuda"):
        return torch.device(f"cuda:{info.local_rank}")
    return torch.device(device)


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around `module` when distributed (parameters broadcast from rank 0), else as is."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

    params = list(module.parameters())
    ids = [info.local_rank] if params and params[0].is_cuda else None
    return DDP(module, device_ids=ids, find_unused_parameters=True)


def rank_slice(n: int, info: DistInfo) -> slice:
    """This rank's contiguous part of a global batch of n samples (n must divide by world_size)."""
    if n % info.world_size:
        raise ValueError(f"global batch {n} does not divide by {info.world_size} ranks; choose a multiple")
    per = n // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def _comm_device(info: DistInfo) -> torch.device:
    """Where small control tensors live for a collective: nccl reduces GPU tensors only."""
    return torch.device(f"cuda:{info.local_rank}") if info.backend == "nccl" else torch.device("cpu")


def all_mean(value: float, info: DistInfo) -> float:
    """Mean of a scalar over ranks (for logging the global loss)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device(info))
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_gradients(params, info: DistInfo) -> None:
    """Average the gradients of `params` over ranks in one flattened all-reduce (what DDP does per bucket).

    For updates whose control flow DDP's reducer cannot follow (PPO: several forward passes per backward, critic-
    only steps, data-dependent early stops); call it after backward() and before clipping / optimizer.step(),
    on every rank, for the same parameters (a parameter without a gradient contributes zeros)."""
    if not info.enabled:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers into every rank's `module` (same start everywhere)."""
    if not info.enabled:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def all_gather_cat(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenation over ranks (along dim 0) of equally shaped tensors."""
    if not info.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if `flag` is true on any (for decisions all ranks must take together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device(info))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
