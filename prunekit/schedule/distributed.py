"""Distributed data-parallel plumbing for runs started by torchrun (gloo on CPU, NCCL on GPU).

A run is distributed when torchrun's WORLD_SIZE > 1; the same config then trains with each rank
drawing its own batches (`train_batches(seed, rank, world_size)`) and DDP averaging gradients.
Rank 0 alone writes files; decisions that must agree (the pruning plan) are broadcast from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_kind: str) -> tuple[Dist, bool]:
    """Join the process group torchrun describes (if any). Returns (Dist, whether we created the group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), False
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))), False
    backend = "nccl" if device_kind == "cuda" else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local), True


def wrap(module: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DDP-wrap a module when distributed (identity otherwise)."""
    if not d.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def all_reduce_mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if not d.enabled:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / d.world_size


def all_finite(ok: bool, d: Dist, device: torch.device) -> bool:
    """True only if every rank's loss is finite (so all ranks stop together)."""
    if not d.enabled:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's `obj` on every rank."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
