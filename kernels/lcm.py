"""The lightness-correction blend of SPEC.md eq. (6) as Triton kernels.

``(w0, w1) = softmax(l0, l1)``, ``out = image * w0 + w1`` (white palette) in one pass,
with float32 math for every storage dtype.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import check_bchw, check_device, check_float, check_numel, grid_1d, load_pair, program_pixels


@triton.jit
def _softmax2(l0, l1):
    """The blend weights (w0, w1) = softmax(l0, l1), shifted by the larger logit so exp cannot overflow."""
    top = tl.maximum(l0, l1)
    e0 = tl.exp(l0 - top)
    e1 = tl.exp(l1 - top)
    return e0 / (e0 + e1), e1 / (e0 + e1)


@triton.jit
def _lcm_blend_fwd_kernel(
    image_ptr,  # (B, C, H, W)
    logits_ptr,  # (B, 2, H, W)
    out_ptr,  # (B, C, H, W)
    N, C, H, W,  # N = B * H * W
    im_sb, im_sc, im_sh, im_sw,
    lg_sb, lg_sc, lg_sh, lg_sw,
    out_sb, out_sc, out_sh, out_sw,
    BLOCK: tl.constexpr,
):
    x, y, b, m = program_pixels(N, H, W, BLOCK)
    l0, l1 = load_pair(logits_ptr, b, y, x, lg_sb, lg_sc, lg_sh, lg_sw, m)
    w0, w1 = _softmax2(l0, l1)
    img = image_ptr + b * im_sb + y * im_sh + x * im_sw
    out = out_ptr + b * out_sb + y * out_sh + x * out_sw
    for c in range(C):
        i = tl.load(img + c * im_sc, mask=m, other=0.0).to(tl.float32)
        tl.store(out + c * out_sc, (i * w0 + w1).to(out_ptr.dtype.element_ty), mask=m)


# Backward. With g_c = dL/dout_c, the softmax Jacobian gives
#   dL/dw0 = sum_c g_c image_c,  dL/dw1 = sum_c g_c,
#   dL/dl0 = w0 w1 (dL/dw0 - dL/dw1) = -dL/dl1,   dL/dimage_c = g_c w0.
# Every output is owned by one pixel: no atomics, deterministic.
@triton.jit
def _lcm_blend_bwd_kernel(
    image_ptr,  # (B, C, H, W)
    logits_ptr,  # (B, 2, H, W)
    grad_out_ptr,  # (B, C, H, W)
    grad_image_ptr,  # (B, C, H, W) contiguous (written when IMAGE_GRAD)
    grad_logits_ptr,  # (B, 2, H, W) contiguous
    N, C, H, W,
    im_sb, im_sc, im_sh, im_sw,
    lg_sb, lg_sc, lg_sh, lg_sw,
    go_sb, go_sc, go_sh, go_sw,
    IMAGE_GRAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    x, y, b, m = program_pixels(N, H, W, BLOCK)
    l0, l1 = load_pair(logits_ptr, b, y, x, lg_sb, lg_sc, lg_sh, lg_sw, m)
    w0, w1 = _softmax2(l0, l1)
    img = image_ptr + b * im_sb + y * im_sh + x * im_sw
    go = grad_out_ptr + b * go_sb + y * go_sh + x * go_sw
    gw0 = tl.zeros([BLOCK], dtype=tl.float32)
    gw1 = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(C):
        g = tl.load(go + c * go_sc, mask=m, other=0.0).to(tl.float32)
        i = tl.load(img + c * im_sc, mask=m, other=0.0).to(tl.float32)
        gw0 += g * i
        gw1 += g
        if IMAGE_GRAD:
            tl.store(grad_image_ptr + (b * C + c) * (H * W) + y * W + x, (g * w0).to(grad_image_ptr.dtype.element_ty), mask=m)
    gl0 = w0 * w1 * (gw0 - gw1)
    gl = grad_logits_ptr + b * (2 * H * W) + y * W + x
    tl.store(gl, gl0.to(grad_logits_ptr.dtype.element_ty), mask=m)
    tl.store(gl + H * W, (-gl0).to(grad_logits_ptr.dtype.element_ty), mask=m)


def lcm_blend_fwd(image, logits, block: Optional[int] = None):
    B, C, H, W = image.shape
    out = torch.empty_like(image, memory_format=torch.contiguous_format)
    N = B * H * W
    grid, BLOCK = grid_1d(N, 512, block)
    _lcm_blend_fwd_kernel[grid](
        image, logits, out, N, C, H, W, *image.stride(), *logits.stride(), *out.stride(), BLOCK=BLOCK
    )
    return out


def lcm_blend_bwd(grad_out, image, logits, need_image_grad: bool, block: Optional[int] = None):
    """(grad_image or None, grad_logits) in the inputs' dtypes."""
    B, C, H, W = image.shape
    grad_logits = torch.empty(B, 2, H, W, device=image.device, dtype=logits.dtype)
    grad_image = torch.empty(B, C, H, W, device=image.device, dtype=image.dtype) if need_image_grad else None
    N = B * H * W
    grid, BLOCK = grid_1d(N, 512, block)
    _lcm_blend_bwd_kernel[grid](
        image, logits, grad_out, grad_image if need_image_grad else grad_logits, grad_logits,
        N, C, H, W, *image.stride(), *logits.stride(), *grad_out.stride(),
        IMAGE_GRAD=need_image_grad, BLOCK=BLOCK,
    )
    return grad_image, grad_logits


class LcmBlendFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image, logits, block):
        ctx.block = block
        ctx.save_for_backward(image, logits)
        return lcm_blend_fwd(image, logits, block)

    @staticmethod
    def backward(ctx, grad_out):
        image, logits = ctx.saved_tensors
        gi, gl = lcm_blend_bwd(grad_out, image, logits, ctx.needs_input_grad[0], ctx.block)
        return gi, gl if ctx.needs_input_grad[1] else None, None


def lcm_blend(image: torch.Tensor, logits: torch.Tensor, block: Optional[int] = None) -> torch.Tensor:
    """``ops.lcm_blend_reference`` on Triton: image (B, C, H, W), logits (B, 2, H, W)."""
    check_bchw("image", image)
    B, C, H, W = image.shape
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (B, 2, H, W):
        raise ValueError(f"logits must have shape ({B}, 2, {H}, {W}) to match image, got {getattr(logits, 'shape', None)}")
    check_float("image", image)
    check_float("logits", logits)
    check_device("logits", logits, image, "image")
    check_numel("image", image)
    return LcmBlendFunction.apply(image, logits, block)
