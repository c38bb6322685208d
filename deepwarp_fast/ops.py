"""The model's ops: pure-PyTorch references (the parity oracle) and their dispatchers.

Every op has ``<op>_reference`` written from SPEC.md and a public ``<op>(...,
backend="auto")`` that routes to a fast backend when one is available (see
``deepwarp_fast.backends``).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from .backends import resolve_backend as _resolve

# Backends that implement the single ops below (the extension fuses whole layers instead).
OP_BACKENDS = ("reference", "triton")


def resolve_backend(backend: str, device, what: str = "deepwarp_fast.ops") -> str:
    return _resolve(backend, device, choices=OP_BACKENDS, what=what)


# ----------------------------------------------------------------------------- warp
def warp_reference(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of ``image`` at ``(x + dx, y + dy)`` (SPEC.md eq. (1)-(2)).

    Convention:
        image: (B, C, H, W); flow: (B, 2, H, W), channel 0 = dx, channel 1 = dy, in
        pixels (any float dtype; coordinates are computed in at least float32). Pixel centres sit at integer coordinates (x = column, y = row);
        sample coordinates are clamped to [0, W-1] x [0, H-1] (border replicate),
        which equals ``F.grid_sample(..., mode="bilinear", padding_mode="border",
        align_corners=True)``. Clamped coordinates get zero gradient. Written as
        explicit gathers (not grid_sample) so that integer coordinates reproduce
        the input exactly.
    """
    B, C, H, W = image.shape
    # Coordinates in at least float32: bfloat16 cannot even hold x = 37.5 exactly.
    if flow.dtype in (torch.float16, torch.bfloat16):
        flow = flow.float()
    ys = torch.arange(H, device=flow.device, dtype=flow.dtype).view(1, H, 1)
    xs = torch.arange(W, device=flow.device, dtype=flow.dtype).view(1, 1, W)
    cx = (xs + flow[:, 0]).clamp(0, W - 1)
    cy = (ys + flow[:, 1]).clamp(0, H - 1)
    x0 = cx.detach().floor().clamp(max=W - 1)
    y0 = cy.detach().floor().clamp(max=H - 1)
    fx = (cx - x0).unsqueeze(1).to(image.dtype)
    fy = (cy - y0).unsqueeze(1).to(image.dtype)
    x0 = x0.long()
    y0 = y0.long()
    x1 = (x0 + 1).clamp(max=W - 1)
    y1 = (y0 + 1).clamp(max=H - 1)
    flat = image.reshape(B, C, H * W)

    def gather(yi, xi):
        idx = (yi * W + xi).view(B, 1, H * W).expand(B, C, H * W)
        return flat.gather(2, idx).view(B, C, H, W)

    top = gather(y0, x0) * (1 - fx) + gather(y0, x1) * fx
    bottom = gather(y1, x0) * (1 - fx) + gather(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def flow_to_pixels(flow_normalized: torch.Tensor) -> torch.Tensor:
    """``pixels(F) = (F_x (W-1)/2, F_y (H-1)/2)``: network units to pixels."""
    H, W = flow_normalized.shape[-2:]
    scale = flow_normalized.new_tensor([(W - 1) / 2.0, (H - 1) / 2.0]).view(1, 2, 1, 1)
    return flow_normalized * scale


def warp_normalized_reference(image: torch.Tensor, flow_c: torch.Tensor, resid: "torch.Tensor | None" = None) -> torch.Tensor:
    """The model's fine warp: ``warp(image, pixels(nearest-upsample(flow_c) + resid))`` with
    the coarse flow ``flow_c`` (B, 2, h, w) and the residual (B, 2, H, W) in normalised
    units (the Triton kernel ``kernels.warp_normalized`` fuses the upsampling and the sum)."""
    H, W = image.shape[-2:]
    up = F.interpolate(flow_c, size=(H, W), mode="nearest")
    return warp_reference(image, flow_to_pixels(up if resid is None else up + resid))


def warp(image: torch.Tensor, flow: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``warp_reference`` semantics (pixel flow) on the chosen backend."""
    be = resolve_backend(backend, image.device, "ops.warp")
    if be == "triton":
        from . import kernels

        return kernels.warp(image, flow)
    return warp_reference(image, flow)


# ------------------------------------------------------------------- anchor / angle maps
def anchor_maps_reference(anchors: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Eq. (5): (B, 2K, H, W) with channel 2i = x - x_i and channel 2i+1 = y - y_i.

    Convention: anchors (B, K, 2) hold (x, y) in patch pixels; x is the column.
    """
    B, K, _ = anchors.shape
    xs = torch.arange(W, device=anchors.device, dtype=anchors.dtype).view(1, 1, 1, W)
    ys = torch.arange(H, device=anchors.device, dtype=anchors.dtype).view(1, 1, H, 1)
    dx = (xs - anchors[..., 0].view(B, K, 1, 1)).expand(B, K, H, W)
    dy = (ys - anchors[..., 1].view(B, K, 1, 1)).expand(B, K, H, W)
    return torch.stack([dx, dy], dim=2).reshape(B, 2 * K, H, W)


def anchor_maps(anchors: torch.Tensor, H: int, W: int, backend: str = "auto") -> torch.Tensor:
    be = resolve_backend(backend, anchors.device, "ops.anchor_maps")
    if be == "triton":
        from . import kernels

        return kernels.anchor_maps(anchors, H, W)
    return anchor_maps_reference(anchors, H, W)


def angle_maps_reference(embedding: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """The (B, D) angle embedding broadcast to (B, D, H, W)."""
    B, D = embedding.shape
    return embedding.view(B, D, 1, 1).expand(B, D, H, W)


def input_maps_reference(eyes: torch.Tensor, anchors: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """The network's input stack: cat(eyes 3, anchor maps 2K, angle maps D) -> (B, 3+2K+D, H, W)."""
    H, W = eyes.shape[-2:]
    return torch.cat(
        [eyes, anchor_maps_reference(anchors.to(eyes.dtype), H, W), angle_maps_reference(embedding.to(eyes.dtype), H, W)],
        dim=1,
    )


def fine_inputs_reference(eyes: torch.Tensor, anchors: torch.Tensor, embedding: torch.Tensor, flow_c: torch.Tensor) -> torch.Tensor:
    """The fine tower's input cat(input maps, O_c, U_c) (B, 3 + 2K + D + 3 + 2, H, W): U_c =
    nearest-upsample(flow_c), O_c = warp(eyes, pixels(U_c)) (``kernels.fine_inputs`` fills it
    in one buffer)."""
    H, W = eyes.shape[-2:]
    up = F.interpolate(flow_c, size=(H, W), mode="nearest")
    x = input_maps_reference(eyes, anchors, embedding)
    return torch.cat([x, warp_reference(eyes, flow_to_pixels(up)), up], dim=1)


def input_maps(eyes: torch.Tensor, anchors: torch.Tensor, embedding: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    be = resolve_backend(backend, eyes.device, "ops.input_maps")
    if be == "triton":
        from . import kernels

        return kernels.input_maps(eyes, anchors, embedding)
    return input_maps_reference(eyes, anchors, embedding)


# ----------------------------------------------------------------------------- LCM
def lcm_blend_reference(image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Eq. (6) with a white palette: (w0, w1) = softmax(logits, dim=1); out = image*w0 + w1.

    Convention: image (B, C, H, W), logits (B, 2, H, W). Equivalently
    ``M = sigmoid(l1 - l0)``, ``out = image * (1 - M) + M``.
    """
    w = torch.softmax(logits, dim=1)
    return image * w[:, 0:1] + w[:, 1:2]


def lcm_blend(image: torch.Tensor, logits: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    be = resolve_backend(backend, image.device, "ops.lcm_blend")
    if be == "triton":
        from . import kernels

        return kernels.lcm_blend(image, logits)
    return lcm_blend_reference(image, logits)


# ------------------------------------------------------------------------ conv-BN
def fold_bn(weight: torch.Tensor, bn: torch.nn.BatchNorm2d, bias: "torch.Tensor | None" = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm2d into the preceding conv: returns (weight, bias).

    ``bn(conv(x)) = gamma (conv(x) + b - mu) / sqrt(var + eps) + beta``.
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    b0 = bias if bias is not None else torch.zeros_like(bn.running_mean)
    b = (b0 - bn.running_mean) * scale + bn.bias
    return w, b


# ----------------------------------------------------------------------- warp_frame
# Resampling kernels for the frame: name -> (taps per axis, weight function). The
# weights of one axis are w(t - k) for the taps k = 1 - T/2 .. T/2 around floor(s),
# t = s - floor(s), normalised to sum 1. Each is exactly (0, .., 1, .., 0) at t = 0,
# so a zero flow reproduces the frame bit for bit.
from .numpy_ops import BICUBIC_A, FRAME_KERNELS, KERNEL_TAPS as _KERNEL_TAPS  # noqa: E402 (shared with the NumPy port)


def frame_kernel_weights(t: torch.Tensor, kernel: str) -> torch.Tensor:
    """(..., T) weights of the taps floor(s) + k, k = 1 - T/2 .. T/2, at fractions ``t`` (...)."""
    T = _KERNEL_TAPS[kernel]
    k = torch.arange(1 - T // 2, T // 2 + 1, device=t.device, dtype=t.dtype)
    d = (t.unsqueeze(-1) - k).abs()
    if kernel == "bilinear":
        w = (1 - d).clamp(min=0)
    elif kernel == "bicubic":
        a = BICUBIC_A
        w = torch.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                        torch.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, torch.zeros_like(d)))
    else:  # lanczos4: sinc(d) sinc(d / 4), |d| < 4
        pd = torch.pi * d
        safe = torch.where(d > 0, pd, torch.ones_like(pd))
        w = torch.where(d > 0, 4 * torch.sin(safe) * torch.sin(safe / 4) / (safe * safe), torch.ones_like(d))
        # exact zeros at the other integers (sin(pi k) is not 0 in floating point) and beyond 4
        w = torch.where((d < 4) & ((d == 0) | (d != d.round())), w, torch.zeros_like(w))
    return w / w.sum(-1, keepdim=True)


def _bilinear_clamped(field: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(C, h, w) field sampled bilinearly at patch coordinates (u, v) (any shape), border
    replicate: returns (C, *u.shape)."""
    C, h, w = field.shape
    u = u.clamp(0, w - 1)
    v = v.clamp(0, h - 1)
    u0 = u.floor().clamp(max=w - 1)
    v0 = v.floor().clamp(max=h - 1)
    fu, fv = u - u0, v - v0
    u0, v0 = u0.long(), v0.long()
    u1, v1 = (u0 + 1).clamp(max=w - 1), (v0 + 1).clamp(max=h - 1)
    f = field.reshape(C, h * w)

    def g(vi, ui):
        return f[:, (vi * w + ui).reshape(-1)].reshape(C, *u.shape)

    return (g(v0, u0) * (1 - fu) + g(v0, u1) * fu) * (1 - fv) + (g(v1, u0) * (1 - fu) + g(v1, u1) * fu) * fv


def _feather_at(feather: torch.Tensor, A: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Feather weight of one eye at frame pixels (xs, ys): bilinear, zero outside the patch."""
    h, w = feather.shape
    u = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]
    v = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    padded = F.pad(feather.float(), (1, 1, 1, 1))[None]  # zero ring: taps outside the patch are 0
    wgt = _bilinear_clamped(padded, u.float() + 1, v.float() + 1)[0]
    inside = (u > -1) & (u < w) & (v > -1) & (v < h)
    return torch.where(inside, wgt, torch.zeros_like(wgt))


def warp_frame_weights(A: torch.Tensor, feather: torch.Tensor, frame_h: int, frame_w: int) -> torch.Tensor:
    """(E, frame_h, frame_w) float32: each eye's feather weight at every frame pixel, as
    warp_frame computes it (the pixels it may change are those where it is > 0)."""
    A = A.detach().double().cpu().reshape(-1, 2, 3)
    fes = feather.detach().cpu().expand(A.shape[0], *feather.shape[-2:])
    ys, xs = torch.meshgrid(torch.arange(frame_h, dtype=torch.float64), torch.arange(frame_w, dtype=torch.float64), indexing="ij")
    if A.shape[0] == 0:
        return torch.zeros(0, frame_h, frame_w)
    return torch.stack([_feather_at(f, a, xs, ys) for f, a in zip(fes, A)])


def frame_maxval(dtype: torch.dtype) -> float:
    """The white of a frame's dtype: 255 for uint8, 65535 for uint16, 1 for floats."""
    if dtype == torch.uint8:
        return 255.0
    if dtype == torch.uint16:
        return 65535.0
    if dtype.is_floating_point:
        return 1.0
    raise TypeError(f"frames must be uint8, uint16 or floating point, got {dtype}")


def warp_frame_reference(frames: torch.Tensor, frame_index: torch.Tensor, A: torch.Tensor, flow: torch.Tensor,
                         mask: "torch.Tensor | None", feather: torch.Tensor, kernel: str = "lanczos4",
                         channels: "int | None" = None, out: "torch.Tensor | None" = None) -> torch.Tensor:
    """DeepWarp's fields applied to the frames' own pixels (SPEC.md, "warp_frame").

    frames: (N, H, W, C) uint8, uint16 or float ([0, 1]); frame_index: (E,) which frame
    each eye is in; A: (E, 2, 3) frame pixel -> patch pixel affines; flow: (E, 2, h, w)
    the network's total backward flow in patch pixels; mask: (E, 1, h, w) the LCM mask
    M or None; feather: (h, w) or (E, h, w) blend weights in [0, 1], zero on the patch
    border; kernel: "lanczos4" (default), "bicubic" or "bilinear"; channels: how many
    leading channels are warped (the rest, e.g. alpha, are copied). Returns new frames, or
    ``out`` (a copy of ``frames``: only the pixels the eyes own are written) when given.

    For a frame pixel p with feather weight f = bilinear(feather, A p) > 0:
    q = A p, d = bilinear(flow, q), s = p + L^-1 d (L = A's linear part),
    v = clamp(kernel(frame, s), 0, white), m = bilinear(mask, q), v = v + m (white - v),
    out = p's value + f (v - p's value), rounded half to even and clamped for integer
    frames. Fields are sampled with border replicate, the frame too. Every eye reads
    the input frames. Where footprints overlap, the eye with the larger feather weight
    at p wins (ties: the later eye). Pixels with f = 0 keep their value bit for bit.
    """
    if kernel not in FRAME_KERNELS:
        raise ValueError(f"kernel must be one of {FRAME_KERNELS}, got {kernel!r}")
    N, Hf, Wf, Ctot = frames.shape
    C = Ctot if channels is None else int(channels)
    E, _, h, w = flow.shape
    white = frame_maxval(frames.dtype)
    is_int = not frames.dtype.is_floating_point
    out = frames.clone() if out is None else out
    if E == 0:
        return out
    feathers = feather.expand(E, h, w) if feather.dim() == 2 else feather
    A64 = A.detach().double().cpu()
    _, boxes, _ = warp_frame_tables(A64, frame_index, h, w, Hf, Wf)
    T = _KERNEL_TAPS[kernel]
    for e in range(E):
        n, x0, y0, bw, bh = boxes[e].tolist()
        if bw == 0 or bh == 0:
            continue
        x1, y1 = x0 + bw, y0 + bh
        ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64), torch.arange(x0, x1, dtype=torch.float64), indexing="ij")
        fw = _feather_at(feathers[e].cpu(), A64[e], xs, ys)
        keep = fw > 0
        for j in range(E):  # overlaps: the larger weight wins, ties go to the later eye
            if j == e or int(boxes[j, 0]) != n:
                continue
            fj = _feather_at(feathers[j].cpu(), A64[j], xs, ys)
            keep &= ~((fj > fw) | ((fj == fw) & (j > e)))
        if not bool(keep.any()):
            continue
        Ae = A64[e].float()
        u = (Ae[0, 0] * xs + Ae[0, 1] * ys + Ae[0, 2]).float()
        v = (Ae[1, 0] * xs + Ae[1, 1] * ys + Ae[1, 2]).float()
        d = _bilinear_clamped(flow[e].detach().float().cpu(), u, v)
        Linv = torch.linalg.inv(A64[e, :, :2]).float()
        sx = xs.float() + Linv[0, 0] * d[0] + Linv[0, 1] * d[1]
        sy = ys.float() + Linv[1, 0] * d[0] + Linv[1, 1] * d[1]
        fx, fy = sx.floor(), sy.floor()
        wx = frame_kernel_weights(sx - fx, kernel)  # (h', w', T)
        wy = frame_kernel_weights(sy - fy, kernel)
        k = torch.arange(1 - T // 2, T // 2 + 1)
        ix = (fx.long().unsqueeze(-1) + k).clamp(0, Wf - 1)
        iy = (fy.long().unsqueeze(-1) + k).clamp(0, Hf - 1)
        src = frames[n, ..., :C].cpu()
        # (h', w', T, T, C): rows iy, columns ix; values in float32 (float64 for float64 frames)
        vt = torch.float64 if frames.dtype == torch.float64 else torch.float32
        taps = src[iy.unsqueeze(-1), ix.unsqueeze(-2)].to(vt)
        val = (taps * (wy.unsqueeze(-1) * wx.unsqueeze(-2)).unsqueeze(-1).to(vt)).sum((2, 3)).clamp(0, white)
        if mask is not None:
            m = _bilinear_clamped(mask[e].detach().float().cpu(), u, v)[0].unsqueeze(-1).to(vt)
            val = val + m * (white - val)
        old = frames[n, y0:y1, x0:x1, :C].cpu().to(vt)
        new = old + fw.to(vt).unsqueeze(-1) * (val - old)
        if is_int:
            new = new.round().clamp(0, white)
        new = new.to(frames.dtype)
        region = out[n, y0:y1, x0:x1, :C]
        region.copy_(torch.where(keep.unsqueeze(-1).to(region.device), new.to(region.device), region))
    return out


WARP_FRAME_BACKENDS = ("reference", "triton", "cuda")
WARP_FRAME_KERNEL_IDS = {"bilinear": 0, "bicubic": 1, "lanczos4": 2}


def warp_frame_tables(A: torch.Tensor, frame_index: torch.Tensor, h: int, w: int, frame_h: int, frame_w: int):
    """(params (E, 10) float32, boxes (E, 5) int32, largest box area), on the CPU: per eye its
    affine, the inverse of its linear part, then its frame index and footprint box
    (x0, y0, width, height): the frame pixels, clipped to the frame, whose patch position
    lies in the patch's pixel area [-0.5, w - 0.5] x [-0.5, h - 0.5] (where a feather that
    is zero on the patch border can be positive; empty for an eye outside the frame).
    Every backend, the reference too, visits these boxes. In numpy, all eyes at once: this
    runs per frame in the video pipeline."""
    from .numpy_ops import frame_tables

    params, boxes, largest = frame_tables(A.detach().cpu().double().numpy(), frame_index.detach().cpu().numpy(),
                                          h, w, frame_h, frame_w)
    return torch.from_numpy(params), torch.from_numpy(boxes), largest


def check_warp_frame_args(frames, frame_index, A, flow, mask, feather, kernel, channels) -> int:
    """Validate warp_frame's arguments (errors name the argument); returns the channel count."""
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4:
        raise ValueError(f"frames must be a (N, H, W, C) tensor, got {getattr(frames, 'shape', type(frames).__name__)}")
    frame_maxval(frames.dtype)
    N, Hf, Wf, Ct = frames.shape
    if kernel not in FRAME_KERNELS:
        raise ValueError(f"kernel must be one of {FRAME_KERNELS}, got {kernel!r}")
    C = Ct if channels is None else int(channels)
    if not 1 <= C <= Ct:
        raise ValueError(f"channels must be in [1, {Ct}], got {channels}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must have shape (E, 2, h, w), got {tuple(flow.shape)}")
    E, _, h, w = flow.shape
    if A.shape != (E, 2, 3):
        raise ValueError(f"A must have shape ({E}, 2, 3), got {tuple(A.shape)}")
    if frame_index.shape != (E,):
        raise ValueError(f"frame_index must have shape ({E},), got {tuple(frame_index.shape)}")
    if E and (int(frame_index.min()) < 0 or int(frame_index.max()) >= N):
        raise ValueError(f"frame_index must lie in [0, {N}), got {frame_index.tolist()}")
    if mask is not None and tuple(mask.shape) != (E, 1, h, w):
        raise ValueError(f"mask must have shape ({E}, 1, {h}, {w}), got {tuple(mask.shape)}")
    if tuple(feather.shape) not in ((h, w), (E, h, w)):
        raise ValueError(f"feather must have shape ({h}, {w}) or ({E}, {h}, {w}), got {tuple(feather.shape)}")
    if E:
        lin = A.detach().double().cpu()[:, :, :2]
        det = lin[:, 0, 0] * lin[:, 1, 1] - lin[:, 0, 1] * lin[:, 1, 0]
        if bool((det == 0).any()) or not bool(torch.isfinite(det).all()):
            raise ValueError("A's linear part must be finite and invertible for every eye")
    return C


def warp_frame(frames: torch.Tensor, frame_index: torch.Tensor, A: torch.Tensor, flow: torch.Tensor,
               mask: "torch.Tensor | None", feather: torch.Tensor, kernel: str = "lanczos4",
               channels: "int | None" = None, backend: str = "auto", out: "torch.Tensor | None" = None) -> torch.Tensor:
    """``warp_frame_reference`` semantics on the chosen backend: "cuda" (the extension's CPU
    op or CUDA kernel), "triton" (one launch), "reference" or "auto" (the fastest here).
    The fast backends take uint8, uint16 and float32 frames; other dtypes run the reference.
    ``out``: a copy of ``frames`` (same dtype, shape, strides and device, not frames itself)
    that receives the result in place, saving a copy of the whole frame."""
    C = check_warp_frame_args(frames, frame_index, A, flow, mask, feather, kernel, channels)
    same_strides = out is not None and all(a == b for a, b, n in zip(out.stride(), frames.stride(), frames.shape) if n > 1)
    if out is not None and (out.shape != frames.shape or out.dtype != frames.dtype or out.device != frames.device
                            or not same_strides or out.data_ptr() == frames.data_ptr()):
        raise ValueError("out must be a separate tensor with frames' shape, dtype, strides and device")
    be = _resolve(backend, frames.device, choices=WARP_FRAME_BACKENDS, what="ops.warp_frame")
    fast_dtypes = (torch.uint8, torch.uint16, torch.float32)
    if be == "reference" or frames.dtype not in fast_dtypes or C > 4:
        return warp_frame_reference(frames, frame_index, A, flow, mask, feather, kernel=kernel, channels=C, out=out)
    E, _, h, w = flow.shape
    N, Hf, Wf, _ = frames.shape
    params, boxes, largest = warp_frame_tables(A, frame_index, h, w, Hf, Wf)
    if be == "triton":
        from . import kernels

        return kernels.warp_frame(frames, params, boxes, largest, flow, mask, feather, frame_maxval(frames.dtype),
                                  kernel=kernel, channels=C, out=out)
    from . import _ext

    dev = frames.device
    f32 = dict(device=dev, dtype=torch.float32)
    frames_c = frames if frames.stride(-1) == 1 or frames.shape[-1] == 1 else frames.contiguous()
    return _ext.require().warp_frame(
        frames_c, params.to(dev), boxes.to(dev), flow.detach().to(**f32).contiguous(),
        mask.detach().to(**f32).contiguous() if mask is not None else None,
        feather.detach().to(**f32).reshape(-1, h, w).contiguous(), WARP_FRAME_KERNEL_IDS[kernel], C, largest,
        out if frames_c is frames else None)
