"""Helpers shared by the launchers: block sizes, argument checks, nearest-upsampling tables."""
from __future__ import annotations

import functools
from typing import Tuple

import torch

from deepwarp_fast.backends import triton_interpreter_enabled

# Flat offsets are int32 inside the kernels.
_MAX_NUMEL = 2**31 - 1


def pick_block(n: int, gpu_block: int, block: "int | None" = None) -> int:
    """The BLOCK for ``n`` work items: ``block`` if given, else ``gpu_block`` on a GPU and, under
    the interpreter (~10 ms per program instance), one big block that covers up to 8192 items."""
    if block is not None:
        if block <= 0 or block & (block - 1):
            raise ValueError(f"BLOCK must be a positive power of two, got {block}")
        return block
    if triton_interpreter_enabled():
        return max(16, min(8192, 1 << max(0, (n - 1).bit_length())))
    return gpu_block


def check_numel(name: str, t: torch.Tensor) -> None:
    if t.numel() > _MAX_NUMEL:
        raise ValueError(f"{name} has {t.numel()} elements; the Triton kernels index with int32 (at most {_MAX_NUMEL}): split the batch")


def check_float(name: str, t: torch.Tensor) -> None:
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{name} must be float32, float16 or bfloat16 for the Triton backend, got {t.dtype}")


def check_device(name: str, t: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} must be on the same device as {ref_name}, got {t.device} and {ref.device}")


@functools.lru_cache(maxsize=64)
def _nearest_tables_cpu(n_in: int, n_out: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
    # PyTorch's mode="nearest": src = min(floor(dst * float32(in / out)), in - 1), computed in
    # float32 as ATen does (exact shortcuts for out == in and out == 2 * in agree with it).
    if n_out == n_in:
        src = torch.arange(n_out, dtype=torch.int64)
    elif n_out == 2 * n_in:
        src = torch.arange(n_out, dtype=torch.int64) // 2
    else:
        scale = torch.tensor(n_in, dtype=torch.float32) / n_out
        src = (torch.arange(n_out, dtype=torch.float32) * scale).floor().to(torch.int64).clamp(max=n_in - 1)
    # The map is non-decreasing, so the output indices that read input i form the run
    # [start[i], start[i + 1]).
    counts = torch.bincount(src, minlength=n_in)
    start = torch.zeros(n_in + 1, dtype=torch.int64)
    start[1:] = torch.cumsum(counts, 0)
    return src.to(torch.int32), start.to(torch.int32), int(counts.max())


_device_tables = {}


def nearest_tables(n_in: int, n_out: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """(src (n_out,) int32, start (n_in + 1,) int32, longest run) for nearest upsampling n_in -> n_out."""
    key = (n_in, n_out, str(device))
    hit = _device_tables.get(key)
    if hit is None:
        src, start, run = _nearest_tables_cpu(n_in, n_out)
        hit = (src.to(device), start.to(device), run)
        _device_tables[key] = hit
    return hit
