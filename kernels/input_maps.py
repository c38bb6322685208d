"""The network's input stack (SPEC.md "Architecture") written by one Triton kernel.

Channels: the eye image (3), the anchor maps of eq. (5) (channel 2k = x - x_k,
2k + 1 = y - y_k, 14 for 7 anchors) and the angle embedding broadcast over the patch
(D = 16), stored straight into the tensor the first convolution reads. With ``pool=2``
the kernel writes ``avg_pool2d(stack, 2)`` (the coarse tower's input) without the
full-size stack ever existing; ``fine_inputs`` writes the fine tower's 38-map input
``cat(stack, O_c, U_c)`` in one buffer: the stack here, then the coarse warp into the
last 5 channels. Values are computed in float32 and stored in the eyes' dtype.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import check_bchw, check_device, check_float, grid_1d, or_placeholder, pick_block, program_pixels
from .warp import normalized_scale, warp_bwd, warp_fwd


@triton.jit
def _input_maps_fwd_kernel(
    eyes_ptr,  # (B, C_EYES, Ho * POOL.., Wo * POOL..) (unused when C_EYES == 0)
    anchors_ptr,  # (B, K, 2): (x, y) in pixels
    emb_ptr,  # (B, D) (unused when D == 0)
    out_ptr,  # (B, C_EYES + 2K + D, Ho, Wo)
    N, Ho, Wo,  # N = B * Ho * Wo
    ey_sb, ey_sc, ey_sh, ey_sw,
    an_sb, an_sk, an_sp,
    em_sb, em_sd,
    out_sb, out_sc, out_sh, out_sw,
    C_EYES: tl.constexpr,
    K: tl.constexpr,
    D: tl.constexpr,
    POOL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    x, y, b, m = program_pixels(N, Ho, Wo, BLOCK)
    out = out_ptr + b * out_sb + y * out_sh + x * out_sw
    for c in tl.static_range(C_EYES):
        e = eyes_ptr + b * ey_sb + c * ey_sc
        if POOL == 1:
            val = tl.load(e + y * ey_sh + x * ey_sw, mask=m, other=0.0).to(tl.float32)
        else:
            # avg_pool2d's order: rows, then columns, then one division.
            val = tl.zeros([BLOCK], dtype=tl.float32)
            for py in tl.static_range(POOL):
                for px in tl.static_range(POOL):
                    val += tl.load(e + (y * POOL + py) * ey_sh + (x * POOL + px) * ey_sw, mask=m, other=0.0).to(tl.float32)
            val = val / (POOL * POOL)
        tl.store(out + c * out_sc, val.to(out_ptr.dtype.element_ty), mask=m)
    xf = x.to(tl.float32)
    yf = y.to(tl.float32)
    for k in tl.static_range(K):
        a = anchors_ptr + b * an_sb + k * an_sk
        ax = tl.load(a, mask=m, other=0.0).to(tl.float32)
        ay = tl.load(a + an_sp, mask=m, other=0.0).to(tl.float32)
        if POOL == 1:
            vx = xf - ax
            vy = yf - ay
        else:
            vx = tl.zeros([BLOCK], dtype=tl.float32)
            vy = tl.zeros([BLOCK], dtype=tl.float32)
            for py in tl.static_range(POOL):
                for px in tl.static_range(POOL):
                    vx += (xf * POOL + px) - ax
                    vy += (yf * POOL + py) - ay
            vx = vx / (POOL * POOL)
            vy = vy / (POOL * POOL)
        tl.store(out + (C_EYES + 2 * k) * out_sc, vx.to(out_ptr.dtype.element_ty), mask=m)
        tl.store(out + (C_EYES + 2 * k + 1) * out_sc, vy.to(out_ptr.dtype.element_ty), mask=m)
    for d in tl.static_range(D):
        val = tl.load(emb_ptr + b * em_sb + d * em_sd, mask=m, other=0.0)
        tl.store(out + (C_EYES + 2 * K + d) * out_sc, val.to(out_ptr.dtype.element_ty), mask=m)


# Backward for the embedding. Each angle map is E[b, d] broadcast (and an average of a
# constant is that constant), so dL/dE[b, d] = sum over the map's pixels of dL/dmap[b, d].
# One program per eye reduces its D x P gradient block: a gather, deterministic. The
# anchor maps get no gradient (the anchors are landmarks, not parameters); the eyes'
# gradient is the stack's first channels (through avg_pool2d's backward when pooled).
@triton.jit
def _input_maps_bwd_kernel(
    grad_ptr,  # (B, D, Ho, Wo): the gradient of the angle maps (a channel slice of the stack's)
    grad_emb_ptr,  # (B, D) float32, contiguous
    P, Wo,  # P = Ho * Wo
    g_sb, g_sc, g_sh, g_sw,
    D: tl.constexpr,
    D_PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    d = tl.arange(0, D_PAD)
    md = d < D
    acc = tl.zeros([D_PAD, BLOCK], dtype=tl.float32)
    base = grad_ptr + b * g_sb + d[:, None] * g_sc
    for start in range(0, P, BLOCK):
        p = start + tl.arange(0, BLOCK)
        ptrs = base + (p // Wo)[None, :] * g_sh + (p % Wo)[None, :] * g_sw
        acc += tl.load(ptrs, mask=md[:, None] & (p < P)[None, :], other=0.0).to(tl.float32)
    tl.store(grad_emb_ptr + b * D + d, tl.sum(acc, axis=1), mask=md)


def input_maps_fwd(eyes, anchors, embedding, out=None, pool: int = 1, block: Optional[int] = None, H=None, W=None):
    """Launch the forward; ``eyes`` or ``embedding`` may be None (no such channels).

    ``out`` may be a strided view (a channel slice of a larger stack). H, W are needed
    only when ``eyes`` is None.
    """
    B, K, _ = anchors.shape
    if eyes is not None:
        H, W = eyes.shape[2:]
    Ho, Wo = H // pool, W // pool
    C_EYES = eyes.shape[1] if eyes is not None else 0
    D = embedding.shape[1] if embedding is not None else 0
    if out is None:
        dtype = eyes.dtype if eyes is not None else anchors.dtype
        out = torch.empty(B, C_EYES + 2 * K + D, Ho, Wo, device=anchors.device, dtype=dtype)
    ey, eys = or_placeholder(eyes, anchors, 4)
    em, ems = or_placeholder(embedding, anchors, 2)
    N = B * Ho * Wo
    grid, BLOCK = grid_1d(N, 256, block)
    _input_maps_fwd_kernel[grid](
        ey, anchors, em, out, N, Ho, Wo,
        *eys, *anchors.stride(), *ems, *out.stride(),
        C_EYES=C_EYES, K=K, D=D, POOL=pool, BLOCK=BLOCK,
    )
    return out


def input_maps_bwd(grad_angle_maps: torch.Tensor, block: Optional[int] = None) -> torch.Tensor:
    """dL/dE (B, D) float32 from the gradient of the angle maps (B, D, Ho, Wo), any strides."""
    B, D, Ho, Wo = grad_angle_maps.shape
    grad_emb = torch.empty(B, D, device=grad_angle_maps.device, dtype=torch.float32)
    P = Ho * Wo
    BLOCK = pick_block(P, 128, block)
    _input_maps_bwd_kernel[(B,)](
        grad_angle_maps, grad_emb, P, Wo, *grad_angle_maps.stride(),
        D=D, D_PAD=triton.next_power_of_2(D), BLOCK=BLOCK,
    )
    return grad_emb


def _eyes_grad(grad_eyes_maps: torch.Tensor, eyes: torch.Tensor, pool: int) -> torch.Tensor:
    if pool == 1:
        return grad_eyes_maps.to(eyes.dtype)
    return torch.ops.aten.avg_pool2d_backward(grad_eyes_maps, eyes, [pool, pool], [pool, pool], [0, 0], False, True, None)


def _check_stack_args(eyes, anchors, embedding):
    check_bchw("eyes", eyes)
    B = eyes.shape[0]
    if not isinstance(anchors, torch.Tensor) or anchors.dim() != 3 or anchors.shape[0] != B or anchors.shape[2] != 2:
        raise ValueError(f"anchors must have shape ({B}, K, 2) to match eyes, got {getattr(anchors, 'shape', None)}")
    if not isinstance(embedding, torch.Tensor) or embedding.dim() != 2 or embedding.shape[0] != B:
        raise ValueError(f"embedding must have shape ({B}, D) to match eyes, got {getattr(embedding, 'shape', None)}")
    for name, t in (("eyes", eyes), ("anchors", anchors), ("embedding", embedding)):
        check_float(name, t)
    check_device("anchors", anchors, eyes, "eyes")
    check_device("embedding", embedding, eyes, "eyes")
    if anchors.requires_grad:
        raise ValueError("anchors must not require grad on the Triton backend: the anchor maps have no gradient path (detach them)")


def _check_stack_size(eyes, K, D, extra):
    B, C, H, W = eyes.shape
    if B * (C + 2 * K + D + extra) * H * W > 2**31 - 1:
        raise ValueError(f"eyes: a batch of {B} makes an input stack beyond int32 indexing; split the batch")


class InputMapsFunction(torch.autograd.Function):
    """cat(eyes, anchor_maps, angle_maps), average-pooled by ``pool``; gradients for the
    embedding (a gather, deterministic) and for eyes when they require grad."""

    @staticmethod
    def forward(ctx, eyes, anchors, embedding, pool, block):
        ctx.pool, ctx.block = pool, block
        ctx.C, ctx.K = eyes.shape[1], anchors.shape[1]
        ctx.emb_dtype = embedding.dtype
        ctx.save_for_backward(eyes if ctx.needs_input_grad[0] else None)
        return input_maps_fwd(eyes, anchors, embedding, pool=pool, block=block)

    @staticmethod
    def backward(ctx, grad):
        (eyes,) = ctx.saved_tensors
        first = ctx.C + 2 * ctx.K
        grad_emb = input_maps_bwd(grad[:, first:], ctx.block).to(ctx.emb_dtype) if ctx.needs_input_grad[2] else None
        grad_eyes = _eyes_grad(grad[:, : ctx.C], eyes, ctx.pool) if ctx.needs_input_grad[0] else None
        return grad_eyes, None, grad_emb, None, None


def input_maps(eyes, anchors, embedding, pool: int = 1, block: Optional[int] = None) -> torch.Tensor:
    """``ops.input_maps_reference`` on Triton, or with ``pool=p`` ``avg_pool2d(that, p)``."""
    _check_stack_args(eyes, anchors, embedding)
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    _check_stack_size(eyes, anchors.shape[1], embedding.shape[1], 0)
    return InputMapsFunction.apply(eyes, anchors, embedding.to(eyes.dtype), pool, block)


def anchor_maps(anchors: torch.Tensor, H: int, W: int, block: Optional[int] = None) -> torch.Tensor:
    """``ops.anchor_maps_reference`` on Triton (no gradient: anchors are landmarks)."""
    if not isinstance(anchors, torch.Tensor) or anchors.dim() != 3 or anchors.shape[2] != 2:
        raise ValueError(f"anchors must have shape (B, K, 2), got {getattr(anchors, 'shape', None)}")
    check_float("anchors", anchors)
    return input_maps_fwd(None, anchors.detach(), None, block=block, H=H, W=W)


class FineInputsFunction(torch.autograd.Function):
    """The fine tower's input ``cat(stack, O_c, U_c)`` with U_c = upsample(F_c) and
    O_c = warp(eyes, pixels(U_c)), written into one buffer by two kernels."""

    @staticmethod
    def forward(ctx, eyes, anchors, embedding, flow_c, block):
        B, C, H, W = eyes.shape
        K, D = anchors.shape[1], embedding.shape[1]
        S = C + 2 * K + D
        out = torch.empty(B, S + C + 2, H, W, device=eyes.device, dtype=eyes.dtype)
        input_maps_fwd(eyes, anchors, embedding, out=out[:, :S], block=block)
        scale = normalized_scale(H, W)
        warp_fwd(eyes, flow_c, None, scale, out=out[:, S : S + C], up_out=out[:, S + C :], block=block)
        ctx.S, ctx.C, ctx.K, ctx.scale, ctx.block = S, C, K, scale, block
        ctx.emb_dtype = embedding.dtype
        ctx.save_for_backward(eyes, flow_c)
        return out

    @staticmethod
    def backward(ctx, grad):
        eyes, flow_c = ctx.saved_tensors
        S, C, K = ctx.S, ctx.C, ctx.K
        grad_emb = None
        if ctx.needs_input_grad[2]:
            grad_emb = input_maps_bwd(grad[:, C + 2 * K : S], ctx.block).to(ctx.emb_dtype)
        need_eyes = ctx.needs_input_grad[0]
        grad_flow = None
        grad_eyes = None
        if ctx.needs_input_grad[3] or need_eyes:
            gi, gf, _ = warp_bwd(
                grad[:, S : S + C], eyes, flow_c, None, ctx.scale, need_eyes, grad_up=grad[:, S + C :], block=ctx.block
            )
            grad_flow = gf.to(flow_c.dtype)
            if need_eyes:
                grad_eyes = (grad[:, :C].float() + gi).to(eyes.dtype)
        return grad_eyes, None, grad_emb, grad_flow, None


def fine_inputs(eyes, anchors, embedding, flow_c, block: Optional[int] = None) -> torch.Tensor:
    """(B, C + 2K + D + C + 2, H, W): ``cat(input_maps, warp(eyes, pixels(U_c)), U_c)`` with
    ``U_c = F.interpolate(flow_c, (H, W), mode="nearest")``; flow_c (B, 2, h, w) normalised."""
    _check_stack_args(eyes, anchors, embedding)
    if not isinstance(flow_c, torch.Tensor) or flow_c.dim() != 4 or flow_c.shape[:2] != (eyes.shape[0], 2):
        raise ValueError(f"flow_c must have shape ({eyes.shape[0]}, 2, h, w), got {getattr(flow_c, 'shape', None)}")
    check_float("flow_c", flow_c)
    check_device("flow_c", flow_c, eyes, "eyes")
    _check_stack_size(eyes, anchors.shape[1], embedding.shape[1], eyes.shape[1] + 2)
    return FineInputsFunction.apply(eyes, anchors, embedding.to(eyes.dtype), flow_c, block)
