"""The ops the face pipeline needs, in NumPy: no PyTorch import (SPEC.md, "NumPy backend").

``import torch`` alone takes ~1.2 s on a 2-core CPU, ten times the work of redirecting
one photo. The one-photo CLI therefore runs the network (``numpy_model``), BlazeFace
(``face.blazeface_numpy``) and the frame warp below in NumPy; each is checked against
its PyTorch reference (tests/test_numpy_backend.py). Semantics: the ``*_reference`` ops
of ``deepwarp_fast.ops``, of which these are line-for-line ports.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

FRAME_KERNELS = ("bilinear", "bicubic", "lanczos4")
KERNEL_TAPS = {"bilinear": 2, "bicubic": 4, "lanczos4": 8}
BICUBIC_A = -0.75  # Keys' cubic convolution with OpenCV's INTER_CUBIC parameter


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``ops.warp_reference``: bilinear sampling of (B, C, H, W) ``image`` at (x + dx, y + dy),
    flow (B, 2, H, W) in pixels, coordinates clamped to the patch (border replicate)."""
    B, C, H, W = image.shape
    cx = np.clip(np.arange(W, dtype=np.float32) + flow[:, 0], 0, W - 1)
    cy = np.clip(np.arange(H, dtype=np.float32)[:, None] + flow[:, 1], 0, H - 1)
    x0, y0 = np.minimum(np.floor(cx), W - 1), np.minimum(np.floor(cy), H - 1)
    fx, fy = (cx - x0)[:, None], (cy - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    flat = image.reshape(B, C, H * W)

    def gather(yi, xi):
        return np.take_along_axis(flat, (yi * W + xi).reshape(B, 1, H * W), axis=2).reshape(B, C, H, W)

    top = gather(y0, x0) * (1 - fx) + gather(y0, x1) * fx
    bottom = gather(y1, x0) * (1 - fx) + gather(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def frame_kernel_weights(t: np.ndarray, kernel: str) -> np.ndarray:
    """``ops.frame_kernel_weights``: (..., T) weights of the taps floor(s) + k, k = 1 - T/2 .. T/2."""
    T = KERNEL_TAPS[kernel]
    k = np.arange(1 - T // 2, T // 2 + 1, dtype=t.dtype)
    d = np.abs(t[..., None] - k)
    if kernel == "bilinear":
        w = np.maximum(1 - d, 0)
    elif kernel == "bicubic":
        a = t.dtype.type(BICUBIC_A)
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                     np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0)).astype(t.dtype)
    else:  # lanczos4: sinc(d) sinc(d / 4), |d| < 4
        pd = t.dtype.type(np.pi) * d
        safe = np.where(d > 0, pd, 1).astype(t.dtype)
        w = np.where(d > 0, 4 * np.sin(safe) * np.sin(safe / 4) / (safe * safe), 1).astype(t.dtype)
        w = np.where((d < 4) & ((d == 0) | (d != np.round(d))), w, 0).astype(t.dtype)
    return w / w.sum(-1, keepdims=True)


def bilinear_clamped(field: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(C, h, w) ``field`` sampled bilinearly at patch coordinates (u, v), border replicate."""
    C, h, w = field.shape
    u, v = np.clip(u, 0, w - 1), np.clip(v, 0, h - 1)
    u0, v0 = np.minimum(np.floor(u), w - 1), np.minimum(np.floor(v), h - 1)
    fu, fv = u - u0, v - v0
    u0, v0 = u0.astype(np.int64), v0.astype(np.int64)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    f = field.reshape(C, h * w)

    def g(vi, ui):
        return f[:, (vi * w + ui).reshape(-1)].reshape(C, *u.shape)

    return (g(v0, u0) * (1 - fu) + g(v0, u1) * fu) * (1 - fv) + (g(v1, u0) * (1 - fu) + g(v1, u1) * fu) * fv


def feather_at(feather: np.ndarray, A: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """One eye's feather weight at frame pixels (xs, ys): bilinear, zero outside the patch."""
    h, w = feather.shape
    u = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]
    v = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    padded = np.pad(feather.astype(np.float32), 1)[None]  # zero ring: taps outside the patch are 0
    wgt = bilinear_clamped(padded, u.astype(np.float32) + 1, v.astype(np.float32) + 1)[0]
    inside = (u > -1) & (u < w) & (v > -1) & (v < h)
    return np.where(inside, wgt, np.float32(0))


def frame_maxval(dtype) -> float:
    """The white of a frame's dtype: 255 for uint8, 65535 for uint16, 1 for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    raise TypeError(f"frames must be uint8, uint16 or floating point, got {dtype}")


def frame_tables(A: np.ndarray, frame_index: np.ndarray, h: int, w: int, frame_h: int, frame_w: int):
    """``ops.warp_frame_tables`` on arrays: (params (E, 10) float32, boxes (E, 5) int32,
    largest box area): per eye its affine and the inverse of its linear part, then its
    frame index and the footprint box (x0, y0, width, height), clipped to the frame, of
    the frame pixels whose patch position lies in [-0.5, w - 0.5] x [-0.5, h - 0.5]."""
    A64 = np.asarray(A, dtype=np.float64).reshape(-1, 2, 3)
    E = A64.shape[0]
    if E == 0:
        return np.zeros((0, 10), np.float32), np.zeros((0, 5), np.int32), 0
    Linv = np.linalg.inv(A64[:, :, :2])
    params = np.concatenate([A64.reshape(E, 6), Linv.reshape(E, 4)], axis=1).astype(np.float32)
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    pts = np.einsum("ekj,eij->eki", corners[None] - A64[:, None, :, 2], Linv)  # (E, 4, 2) frame points
    x0 = np.maximum(0, np.floor(pts[..., 0].min(1))).astype(np.int64)
    y0 = np.maximum(0, np.floor(pts[..., 1].min(1))).astype(np.int64)
    x1 = np.minimum(frame_w, np.ceil(pts[..., 0].max(1)).astype(np.int64) + 1)
    y1 = np.minimum(frame_h, np.ceil(pts[..., 1].max(1)).astype(np.int64) + 1)
    bw, bh = np.maximum(0, x1 - x0), np.maximum(0, y1 - y0)
    idx = np.asarray(frame_index, dtype=np.int64).reshape(E)
    boxes = np.stack([idx, x0, y0, bw, bh], axis=1).astype(np.int32)
    return params, boxes, int((bw * bh).max())


def warp_frame(frames: np.ndarray, frame_index: np.ndarray, A: np.ndarray, flow: np.ndarray,
               mask: Optional[np.ndarray], feather: np.ndarray, kernel: str = "lanczos4",
               channels: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``ops.warp_frame_reference`` on arrays: the fields applied to the frames' own pixels.

    frames (N, H, W, C) uint8, uint16 or float; frame_index (E,); A (E, 2, 3) frame pixel
    -> patch pixel; flow (E, 2, h, w) in patch pixels; mask (E, 1, h, w) or None; feather
    (h, w) or (E, h, w). Writes into ``out`` (a copy of ``frames``) when given.
    """
    if kernel not in FRAME_KERNELS:
        raise ValueError(f"kernel must be one of {FRAME_KERNELS}, got {kernel!r}")
    N, Hf, Wf, Ctot = frames.shape
    C = Ctot if channels is None else int(channels)
    E, _, h, w = flow.shape
    white = frame_maxval(frames.dtype)
    is_int = frames.dtype.kind in "ui"
    out = frames.copy() if out is None else out
    if E == 0:
        return out
    feathers = np.broadcast_to(feather, (E, h, w)) if feather.ndim == 2 else feather
    A64 = np.asarray(A, dtype=np.float64).reshape(E, 2, 3)
    _, boxes, _ = frame_tables(A64, frame_index, h, w, Hf, Wf)
    T = KERNEL_TAPS[kernel]
    vt = np.float64 if frames.dtype == np.float64 else np.float32
    for e in range(E):
        n, x0, y0, bw, bh = boxes[e].tolist()
        if bw == 0 or bh == 0:
            continue
        x1, y1 = x0 + bw, y0 + bh
        ys, xs = np.meshgrid(np.arange(y0, y1, dtype=np.float64), np.arange(x0, x1, dtype=np.float64), indexing="ij")
        fw = feather_at(feathers[e], A64[e], xs, ys)
        keep = fw > 0
        for j in range(E):  # overlaps: the larger weight wins, ties go to the later eye
            if j == e or int(boxes[j, 0]) != n:
                continue
            fj = feather_at(feathers[j], A64[j], xs, ys)
            keep &= ~((fj > fw) | ((fj == fw) & (j > e)))
        if not keep.any():
            continue
        Ae = A64[e].astype(np.float32)
        u = (Ae[0, 0] * xs + Ae[0, 1] * ys + Ae[0, 2]).astype(np.float32)
        v = (Ae[1, 0] * xs + Ae[1, 1] * ys + Ae[1, 2]).astype(np.float32)
        d = bilinear_clamped(flow[e].astype(np.float32), u, v)
        Linv = np.linalg.inv(A64[e, :, :2]).astype(np.float32)
        sx = xs.astype(np.float32) + Linv[0, 0] * d[0] + Linv[0, 1] * d[1]
        sy = ys.astype(np.float32) + Linv[1, 0] * d[0] + Linv[1, 1] * d[1]
        fx, fy = np.floor(sx), np.floor(sy)
        wx = frame_kernel_weights(sx - fx, kernel)  # (h', w', T)
        wy = frame_kernel_weights(sy - fy, kernel)
        k = np.arange(1 - T // 2, T // 2 + 1)
        ix = np.clip(fx.astype(np.int64)[..., None] + k, 0, Wf - 1)
        iy = np.clip(fy.astype(np.int64)[..., None] + k, 0, Hf - 1)
        src = frames[n, ..., :C]
        # separable: the T rows of taps weighted by wx first, then by wy
        rows = np.einsum("hwjic,hwi->hwjc", src[iy[..., :, None], ix[..., None, :]].astype(vt), wx.astype(vt))
        val = np.clip(np.einsum("hwjc,hwj->hwc", rows, wy.astype(vt)), 0, white)
        if mask is not None:
            m = bilinear_clamped(mask[e].astype(np.float32), u, v)[0][..., None].astype(vt)
            val = val + m * (white - val)
        old = frames[n, y0:y1, x0:x1, :C].astype(vt)
        new = old + fw.astype(vt)[..., None] * (val - old)
        if is_int:
            new = np.clip(np.round(new), 0, white)
        region = out[n, y0:y1, x0:x1, :C]
        region[...] = np.where(keep[..., None], new.astype(frames.dtype), region)
    return out


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray]) -> np.ndarray:
    """'same' convolution (odd kernels, stride 1) of NHWC ``x`` with (Cout, Cin, k, k)
    ``weight``: one im2col and one float32 matmul."""
    B, H, W, Cin = x.shape
    cout, _, k, _ = weight.shape
    if k == 1:
        y = x.reshape(-1, Cin) @ weight.reshape(cout, Cin).T
    else:
        p = k // 2
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        cols = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))  # (B, H, W, Cin, k, k)
        y = cols.reshape(B * H * W, Cin * k * k) @ weight.reshape(cout, Cin * k * k).T
    if bias is not None:
        y += bias
    return y.reshape(B, H, W, cout)


def nearest_up(x: np.ndarray, H: int, W: int, axes: Tuple[int, int] = (1, 2)) -> np.ndarray:
    """``F.interpolate(mode="nearest")`` to (H, W): output index i reads floor(i * in / out)."""
    h, w = x.shape[axes[0]], x.shape[axes[1]]
    iy = (np.arange(H) * h) // H
    ix = (np.arange(W) * w) // W
    return np.take(np.take(x, iy, axis=axes[0]), ix, axis=axes[1])
