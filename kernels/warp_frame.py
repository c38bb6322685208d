"""``warp_frame`` as one Triton kernel: the network's fields applied to the frames' own pixels.

Semantics: ``deepwarp_fast.ops.warp_frame_reference`` (SPEC.md, "warp_frame"). One launch
covers every eye of a batch of frames: program (e, t) owns BLOCK pixels of eye e's
footprint box (computed on the host from its affine), reads the frame in its own dtype
(uint8 in, uint8 out: no float copy of the frame) and writes only the pixels whose
feather weight is positive and larger than every other eye's there.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import bilinear_rows, check_numel, clamped_corners, corner_offsets, pick_block

KERNEL_IDS = {"bilinear": 0, "bicubic": 1, "lanczos4": 2}
KERNEL_TAPS = {"bilinear": 2, "bicubic": 4, "lanczos4": 8}
DTYPES = (torch.uint8, torch.uint16, torch.float32, torch.float16)
# Per-eye tables (deepwarp_fast.ops.warp_frame_tables): params (E, 10) = the affine A (6),
# the inverse of its linear part (4); boxes (E, 5) = frame index, x0, y0, width, height.


@triton.jit
def _tap_weight(t, K: tl.constexpr, KERNEL: tl.constexpr):
    """Unnormalised weight of the tap floor(s) + K at the fraction t = s - floor(s)."""
    d = tl.abs(t - K)
    if KERNEL == 0:
        w = tl.maximum(1.0 - d, 0.0)
    elif KERNEL == 1:  # Keys' cubic, a = -0.75
        w = tl.where(d <= 1.0, (1.25 * d - 2.25) * d * d + 1.0,
                     tl.where(d < 2.0, ((-0.75 * d + 3.75) * d - 6.0) * d + 3.0, 0.0))
    else:  # Lanczos-4, exactly one-hot at t = 0
        pd = 3.141592653589793 * d
        safe = tl.where(d > 0.0, pd, 1.0)
        w = 4.0 * tl.sin(safe) * tl.sin(safe * 0.25) / (safe * safe)
        w = tl.where(d > 0.0, w, 1.0)
        w = tl.where(d < 4.0, w, 0.0)
        w = tl.where(t == 0.0, tl.where(d == 0.0, 1.0, 0.0), w)
    return w


@triton.jit
def _floor_frac(x):
    """(floor(x) as int32, x - floor(x)) for any sign of x."""
    f = tl.floor(x)
    return f.to(tl.int32), x - f


@triton.jit
def _feather_at(fptr, u, v, h, w, live):
    """Bilinear feather weight at patch position (u, v); taps outside the patch read 0."""
    u0, fu = _floor_frac(u)
    v0, fv = _floor_frac(v)
    inside = live & (u > -1.0) & (u < w) & (v > -1.0) & (v < h)
    iu0 = inside & (u0 >= 0) & (u0 < w)
    iu1 = inside & (u0 + 1 >= 0) & (u0 + 1 < w)
    iv0 = (v0 >= 0) & (v0 < h)
    iv1 = (v0 + 1 >= 0) & (v0 + 1 < h)
    f00 = tl.load(fptr + v0 * w + u0, mask=iu0 & iv0, other=0.0)
    f01 = tl.load(fptr + v0 * w + u0 + 1, mask=iu1 & iv0, other=0.0)
    f10 = tl.load(fptr + (v0 + 1) * w + u0, mask=iu0 & iv1, other=0.0)
    f11 = tl.load(fptr + (v0 + 1) * w + u0 + 1, mask=iu1 & iv1, other=0.0)
    val = (f00 * (1.0 - fu) + f01 * fu) * (1.0 - fv) + (f10 * (1.0 - fu) + f11 * fu) * fv
    return tl.where(inside, val, 0.0)


@triton.jit
def _bilinear_clamped(ptr, u, v, h, w, live):
    """Bilinear sample of an (h, w) float32 plane at (u, v), border replicate."""
    u0, v0, u1, v1, fu, fv = clamped_corners(u, v, h, w)
    o00, o01, o10, o11 = corner_offsets(u0, v0, u1, v1, w, 1)
    _, _, _, _, top, bottom = bilinear_rows(ptr, o00, o01, o10, o11, fu, live)
    return top * (1.0 - fv) + bottom * fv


@triton.jit
def _finish(old, val, fw, white, IS_INT: tl.constexpr):
    """old + fw (val - old), rounded half to even and clamped for integer frames."""
    new = old + fw * (val - old)
    if IS_INT:
        r = tl.floor(new + 0.5)
        odd = (r - 2.0 * tl.floor(r * 0.5)) == 1.0
        r = tl.where(((r - new) == 0.5) & odd, r - 1.0, r)
        new = tl.minimum(tl.maximum(r, 0.0), white)
    return new


@triton.jit
def _warp_frame_kernel(
    frames_ptr, out_ptr,  # (N, Hf, Wf, Ct), channels contiguous
    params_ptr,  # (E, 10) float32
    box_ptr,  # (E, 5) int32
    flow_ptr,  # (E, 2, h, w) float32 contiguous
    mask_ptr,  # (E, 1, h, w) float32 contiguous (read when HAS_MASK)
    feather_ptr,  # (E or 1, h, w) float32 contiguous
    E, Hf, Wf, h, w, s_n, s_h, s_w, feather_se, white,
    C: tl.constexpr, KERNEL: tl.constexpr, T: tl.constexpr, HAS_MASK: tl.constexpr, IS_INT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    e = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = tl.load(box_ptr + e * 5)
    x0 = tl.load(box_ptr + e * 5 + 1)
    y0 = tl.load(box_ptr + e * 5 + 2)
    bw = tl.load(box_ptr + e * 5 + 3)
    bh = tl.load(box_ptr + e * 5 + 4)
    live = offs < bw * bh
    x = x0 + offs % bw
    y = y0 + offs // bw
    xf = x.to(tl.float32)
    yf = y.to(tl.float32)
    p = params_ptr + e * 10
    u = tl.load(p + 0) * xf + tl.load(p + 1) * yf + tl.load(p + 2)
    v = tl.load(p + 3) * xf + tl.load(p + 4) * yf + tl.load(p + 5)
    hw = h * w
    fw = _feather_at(feather_ptr + e * feather_se, u, v, h, w, live)
    keep = live & (fw > 0.0)
    # Overlapping footprints: the larger feather weight wins, ties go to the later eye.
    for j in range(0, E):
        nj = tl.load(box_ptr + j * 5)
        if (nj == n) & (j != e):
            pj = params_ptr + j * 10
            uj = tl.load(pj + 0) * xf + tl.load(pj + 1) * yf + tl.load(pj + 2)
            vj = tl.load(pj + 3) * xf + tl.load(pj + 4) * yf + tl.load(pj + 5)
            fj = _feather_at(feather_ptr + j * feather_se, uj, vj, h, w, keep)
            keep = keep & ~((fj > fw) | ((fj == fw) & (j > e)))
    dx = _bilinear_clamped(flow_ptr + e * 2 * hw, u, v, h, w, keep)
    dy = _bilinear_clamped(flow_ptr + e * 2 * hw + hw, u, v, h, w, keep)
    sx = xf + tl.load(p + 6) * dx + tl.load(p + 7) * dy
    sy = yf + tl.load(p + 8) * dx + tl.load(p + 9) * dy
    fx, tx = _floor_frac(sx)
    fy, ty = _floor_frac(sy)
    swx = tl.zeros([BLOCK], dtype=tl.float32)
    swy = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(T):
        swx += _tap_weight(tx, k + 1 - T // 2, KERNEL)
        swy += _tap_weight(ty, k + 1 - T // 2, KERNEL)
    acc0 = tl.zeros([BLOCK], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK], dtype=tl.float32)
    frame = frames_ptr + n * s_n
    for ky in tl.static_range(T):
        wy = _tap_weight(ty, ky + 1 - T // 2, KERNEL)
        iy = tl.minimum(tl.maximum(fy + (ky + 1 - T // 2), 0), Hf - 1)
        for kx in tl.static_range(T):
            wgt = wy * _tap_weight(tx, kx + 1 - T // 2, KERNEL)
            ix = tl.minimum(tl.maximum(fx + (kx + 1 - T // 2), 0), Wf - 1)
            src = frame + iy * s_h + ix * s_w
            acc0 += wgt * tl.load(src, mask=keep, other=0.0).to(tl.float32)
            if C > 1:
                acc1 += wgt * tl.load(src + 1, mask=keep, other=0.0).to(tl.float32)
            if C > 2:
                acc2 += wgt * tl.load(src + 2, mask=keep, other=0.0).to(tl.float32)
            if C > 3:
                acc3 += wgt * tl.load(src + 3, mask=keep, other=0.0).to(tl.float32)
    norm = 1.0 / (swx * swy)
    m = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_MASK:
        m = _bilinear_clamped(mask_ptr + e * hw, u, v, h, w, keep)
    here = n * s_n + y * s_h + x * s_w
    ty_out = out_ptr.dtype.element_ty
    val = tl.minimum(tl.maximum(acc0 * norm, 0.0), white)
    val = val + m * (white - val)
    old = tl.load(frames_ptr + here, mask=keep, other=0.0).to(tl.float32)
    tl.store(out_ptr + here, _finish(old, val, fw, white, IS_INT).to(ty_out), mask=keep)
    if C > 1:
        val = tl.minimum(tl.maximum(acc1 * norm, 0.0), white)
        val = val + m * (white - val)
        old = tl.load(frames_ptr + here + 1, mask=keep, other=0.0).to(tl.float32)
        tl.store(out_ptr + here + 1, _finish(old, val, fw, white, IS_INT).to(ty_out), mask=keep)
    if C > 2:
        val = tl.minimum(tl.maximum(acc2 * norm, 0.0), white)
        val = val + m * (white - val)
        old = tl.load(frames_ptr + here + 2, mask=keep, other=0.0).to(tl.float32)
        tl.store(out_ptr + here + 2, _finish(old, val, fw, white, IS_INT).to(ty_out), mask=keep)
    if C > 3:
        val = tl.minimum(tl.maximum(acc3 * norm, 0.0), white)
        val = val + m * (white - val)
        old = tl.load(frames_ptr + here + 3, mask=keep, other=0.0).to(tl.float32)
        tl.store(out_ptr + here + 3, _finish(old, val, fw, white, IS_INT).to(ty_out), mask=keep)


def warp_frame(frames: torch.Tensor, params: torch.Tensor, boxes: torch.Tensor, largest: int, flow: torch.Tensor,
               mask: Optional[torch.Tensor], feather: torch.Tensor, white: float, kernel: str = "lanczos4",
               channels: Optional[int] = None, block: Optional[int] = None,
               out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``deepwarp_fast.ops.warp_frame_reference`` in one launch (frames on the kernel's device).

    The per-eye tables come from the caller (``deepwarp_fast.ops.warp_frame`` builds them
    with ``warp_frame_tables``, as for the extension): ``params`` (E, 10) float32 = the
    affine A and the inverse of its linear part, ``boxes`` (E, 5) int32 = frame index, x0,
    y0, width, height of each footprint, ``largest`` the largest box area, ``white`` the
    frames' white (255, 65535 or 1)."""
    if kernel not in KERNEL_IDS:
        raise ValueError(f"kernel must be one of {tuple(KERNEL_IDS)}, got {kernel!r}")
    if frames.dim() != 4:
        raise ValueError(f"frames must have shape (N, H, W, C), got {tuple(frames.shape)}")
    if frames.dtype not in DTYPES:
        raise TypeError(f"frames must be one of {[str(d) for d in DTYPES]} for the Triton backend, got {frames.dtype}")
    N, Hf, Wf, Ct = frames.shape
    C = Ct if channels is None else int(channels)
    if not 1 <= C <= min(Ct, 4):
        raise ValueError(f"channels must be in [1, {min(Ct, 4)}], got {C}")
    check_numel("frames", frames)
    if frames.stride(-1) != 1 and Ct != 1:
        frames, out = frames.contiguous(), None
    out = frames.clone() if out is None else out
    E, _, h, w = flow.shape
    if E == 0 or largest == 0:
        return out
    dev = frames.device
    flow_c = flow.detach().to(device=dev, dtype=torch.float32).contiguous()
    mask_c = mask.detach().to(device=dev, dtype=torch.float32).contiguous() if mask is not None else flow_c
    fe = feather.detach().to(device=dev, dtype=torch.float32)
    fe = fe.reshape(-1, h, w).contiguous()
    feather_se = 0 if fe.shape[0] == 1 else h * w
    BLOCK = pick_block(largest, 256, block)
    grid = (E, triton.cdiv(largest, BLOCK))
    _warp_frame_kernel[grid](
        frames, out, params.to(dev), boxes.to(dev), flow_c, mask_c, fe,
        E, Hf, Wf, h, w, frames.stride(0), frames.stride(1), frames.stride(2), feather_se, float(white),
        C=C, KERNEL=KERNEL_IDS[kernel], T=KERNEL_TAPS[kernel], HAS_MASK=mask is not None,
        IS_INT=not frames.dtype.is_floating_point, BLOCK=BLOCK,
    )
    return out
