"""Helpers shared by the kernels and their launchers: ``@triton.jit`` index and bilinear math
(inlined into the kernels that call them), block sizes, argument checks, optional-argument
placeholders and nearest-upsampling tables."""
from __future__ import annotations

import functools
import os
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl



def triton_interpreter_enabled() -> bool:
    """Whether Triton runs its CPU interpreter (``TRITON_INTERPRET=1``, set before triton
    is imported). The kernels package imports nothing from deepwarp_fast: the package
    probes the kernels (``deepwarp_fast.backends``), not the other way round."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# Flat offsets are int32 inside the kernels.
_MAX_NUMEL = 2**31 - 1

# Launch options for the kernels that compute sample coordinates: no multiply-add contraction,
# so ``x + u * scale`` rounds exactly as the reference's separate multiply and add do. The
# warp's gradient with respect to the flow jumps where a coordinate crosses an integer; a
# fused multiply-add moves coordinates by an ulp, and on the GPU (the interpreter never
# fuses) that put a few of a million flow gradients on the other side of a jump, several
# units off (measured on an H200: fine warp fwd+bwd, B=1024). The arithmetic is a few
# instructions per pixel of a memory-bound kernel.
EXACT_COORDS = {"enable_fp_fusion": False}


@triton.jit
def program_pixels(N, H, W, BLOCK: tl.constexpr):
    """This program's BLOCK flat indices into a (B, H, W) grid of N = B * H * W pixels, x
    fastest: (x, y, b) and the mask of those below N."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = offs % W
    t = offs // W
    return x, t % H, t // H, offs < N


@triton.jit
def load_pair(ptr, b, y, x, s_b, s_c, s_h, s_w, mask):
    """Channels 0 and 1 of a (B, 2, H, W) tensor at (b, y, x), as float32."""
    p = ptr + b * s_b + y * s_h + x * s_w
    c0 = tl.load(p, mask=mask, other=0.0).to(tl.float32)
    c1 = tl.load(p + s_c, mask=mask, other=0.0).to(tl.float32)
    return c0, c1


@triton.jit
def bilinear_taps(x, y, u, v, scale_x, scale_y, H, W):
    """Where output pixel (x, y) samples for the flow (u, v) * scale: the unclamped coordinates
    (cx_raw, cy_raw), then for the coordinates clamped to [0, W-1] x [0, H-1] the corner
    indices x0 <= x1, y0 <= y1 (clamped to the border) and the fractions fx, fy."""
    cx_raw = x.to(tl.float32) + u * scale_x
    cy_raw = y.to(tl.float32) + v * scale_y
    x0, y0, x1, y1, fx, fy = clamped_corners(cx_raw, cy_raw, H, W)
    return cx_raw, cy_raw, x0, y0, x1, y1, fx, fy


@triton.jit
def clamped_corners(cx_raw, cy_raw, H, W):
    """For a sample point clamped to [0, W-1] x [0, H-1]: the corner indices x0 <= x1,
    y0 <= y1 (clamped to the border) and the fractions fx, fy."""
    cx = tl.minimum(tl.maximum(cx_raw, 0.0), W - 1.0)
    cy = tl.minimum(tl.maximum(cy_raw, 0.0), H - 1.0)
    # cx >= 0, so truncation is floor.
    x0 = cx.to(tl.int32)
    y0 = cy.to(tl.int32)
    fx = cx - x0.to(tl.float32)
    fy = cy - y0.to(tl.float32)
    x1 = tl.minimum(x0 + 1, W - 1)
    y1 = tl.minimum(y0 + 1, H - 1)
    return x0, y0, x1, y1, fx, fy


@triton.jit
def corner_offsets(x0, y0, x1, y1, s_h, s_w):
    """Offsets of the four bilinear corners (y0|y1, x0|x1) in a plane with strides (s_h, s_w)."""
    return y0 * s_h + x0 * s_w, y0 * s_h + x1 * s_w, y1 * s_h + x0 * s_w, y1 * s_h + x1 * s_w


@triton.jit
def bilinear_rows(plane, o00, o01, o10, o11, fx, mask):
    """The corners of ``plane`` and the two horizontal interpolations (top, bottom), float32."""
    i00 = tl.load(plane + o00, mask=mask, other=0.0).to(tl.float32)
    i01 = tl.load(plane + o01, mask=mask, other=0.0).to(tl.float32)
    i10 = tl.load(plane + o10, mask=mask, other=0.0).to(tl.float32)
    i11 = tl.load(plane + o11, mask=mask, other=0.0).to(tl.float32)
    top = i00 * (1.0 - fx) + i01 * fx
    bottom = i10 * (1.0 - fx) + i11 * fx
    return i00, i01, i10, i11, top, bottom


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


def check_bchw(name: str, t) -> None:
    """``t`` is a 4-D (B, C, H, W) tensor."""
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {getattr(t, 'shape', type(t).__name__)}")


def grid_1d(n: int, gpu_block: int, block: "int | None" = None) -> Tuple[Tuple[int], int]:
    """((programs,), BLOCK) for a kernel whose programs each own BLOCK of ``n`` flat items."""
    BLOCK = pick_block(n, gpu_block, block)
    return (triton.cdiv(n, BLOCK),), BLOCK


def or_placeholder(t: Optional[torch.Tensor], placeholder: torch.Tensor, ndim: int):
    """(pointer argument, strides) for an optional tensor: a kernel reads an absent one nowhere
    (its constexpr flag is off), so any tensor serves as its pointer and its strides are 0."""
    if t is None:
        return placeholder, (0,) * ndim
    return t, t.stride()


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
