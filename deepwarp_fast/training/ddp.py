"""Distributed training helpers: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, and the
trainer wraps the model in DistributedDataParallel (gloo on CPUs, nccl on GPUs).

    torchrun --nproc_per_node=2 -m deepwarp_fast train --config configs/default.toml

Every process renders its own batch (its seed includes the rank), so the effective
batch is world_size x the configured batch. BatchNorm statistics are per process
(plain BN, as with one process per batch). Only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """The process's place in a torchrun job (world size 1 outside one)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device_type: str) -> DistInfo:
    """Start the process group when run under torchrun with WORLD_SIZE > 1."""
    info = env_dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def any_true(flag: bool, info: DistInfo, device) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
