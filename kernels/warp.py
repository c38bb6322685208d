"""The bilinear warp of SPEC.md eq. (1)-(2) as Triton kernels, with the model's flow plumbing fused.

``out[b, c, y, x] = bilinear(image[b, c], x + dx, y + dy)`` with the sample coordinates
clamped to [0, W-1] x [0, H-1] (border replicate; ``F.grid_sample(..., padding_mode=
"border", align_corners=True)``). The flow is read as

    (dx, dy) = (scale_x, scale_y) * (nearest_upsample(flow)[b, :, y, x] + resid[b, :, y, x])

so one kernel covers the plain pixel-flow warp (flow at full size, scale 1, no residual),
the coarse warp (the low-resolution normalised coarse flow F_c, upsampled inside the
kernel, scale = ((W-1)/2, (H-1)/2)) and the fine warp (F_c upsampled plus the full-size
residual F_r): the model never materialises a pixel flow, an upsampled flow or a sum.
Coordinates and accumulation are float32 for every storage dtype.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._common import (
    EXACT_COORDS,
    bilinear_rows,
    bilinear_taps,
    check_bchw,
    check_device,
    check_float,
    check_numel,
    corner_offsets,
    grid_1d,
    load_pair,
    nearest_tables,
    or_placeholder,
    program_pixels,
)


@triton.jit
def _warp_fwd_kernel(
    image_ptr,  # (B, C, H, W)
    flow_ptr,  # (B, 2, h, w): nearest-upsampled to H x W through row_src / col_src
    resid_ptr,  # (B, 2, H, W): added at full size (read when HAS_RESID)
    row_src_ptr,  # (H,) int32: the flow row that output row y reads
    col_src_ptr,  # (W,) int32: the flow column that output column x reads
    out_ptr,  # (B, C, H, W)
    up_ptr,  # (B, 2, H, W): the upsampled flow (written when WRITE_UP)
    N, C, H, W,  # N = B * H * W
    scale_x, scale_y,
    im_sb, im_sc, im_sh, im_sw,
    fl_sb, fl_sc, fl_sh, fl_sw,
    rs_sb, rs_sc, rs_sh, rs_sw,
    out_sb, out_sc, out_sh, out_sw,
    up_sb, up_sc, up_sh, up_sw,
    HAS_RESID: tl.constexpr,
    WRITE_UP: tl.constexpr,
    BLOCK: tl.constexpr,
):
    x, y, b, m = program_pixels(N, H, W, BLOCK)
    ry = tl.load(row_src_ptr + y, mask=m, other=0)
    rx = tl.load(col_src_ptr + x, mask=m, other=0)
    u, v = load_pair(flow_ptr, b, ry, rx, fl_sb, fl_sc, fl_sh, fl_sw, m)
    if WRITE_UP:
        up = up_ptr + b * up_sb + y * up_sh + x * up_sw
        tl.store(up, u.to(up_ptr.dtype.element_ty), mask=m)
        tl.store(up + up_sc, v.to(up_ptr.dtype.element_ty), mask=m)
    if HAS_RESID:
        ru, rv = load_pair(resid_ptr, b, y, x, rs_sb, rs_sc, rs_sh, rs_sw, m)
        u = u + ru
        v = v + rv
    _, _, x0, y0, x1, y1, fx, fy = bilinear_taps(x, y, u, v, scale_x, scale_y, H, W)
    o00, o01, o10, o11 = corner_offsets(x0, y0, x1, y1, im_sh, im_sw)
    img = image_ptr + b * im_sb
    out = out_ptr + b * out_sb + y * out_sh + x * out_sw
    for c in range(C):
        _, _, _, _, top, bottom = bilinear_rows(img, o00, o01, o10, o11, fx, m)
        o = top * (1.0 - fy) + bottom * fy
        tl.store(out + c * out_sc, o.to(out_ptr.dtype.element_ty), mask=m)
        img += im_sc


# Backward. With (cx, cy) the clamped coordinates, (x0, y0) = floor, (fx, fy) the
# fractions, I_ab = image[y0 + a, x0 + b] (indices clamped to the border) and
#   out = top (1 - fy) + bottom fy,   top = I00 (1 - fx) + I01 fx,   bottom = I10 (1 - fx) + I11 fx,
# the gradient of the loss L with respect to the full-size flow at (y, x) is
#   dL/ddx = scale_x [0 <= x + dx <= W-1] sum_c g_c ((1 - fy)(I01 - I00) + fy (I11 - I10))
#   dL/ddy = scale_y [0 <= y + dy <= H-1] sum_c g_c (bottom - top)
# with g = dL/dout (a clamped coordinate has zero gradient in that component, as
# torch.clamp's backward). It is the gradient of the residual as is (the sum D = U + R
# passes it to both terms) and, summed over the output pixels that read one flow pixel,
# the gradient of the low-resolution flow: nearest upsampling's backward. Each program
# owns low-resolution flow pixels and walks the run of output pixels that read each one
# (at most KH x KW), so the flow gradients are plain stores: no atomics, deterministic.
# The image gradient scatters g_c times the four bilinear weights onto (y0|y1, x0|x1):
#   dL/dI[y0, x0] += g (1 - fx)(1 - fy), dL/dI[y0, x1] += g fx (1 - fy), ...
# with float32 atomics, so its summation order (and last bits) can vary run to run.
@triton.jit
def _warp_bwd_kernel(
    image_ptr,  # (B, C, H, W)
    flow_ptr,  # (B, 2, h, w)
    resid_ptr,  # (B, 2, H, W) (read when HAS_RESID)
    grad_out_ptr,  # (B, C, H, W)
    grad_up_ptr,  # (B, 2, H, W): a further gradient of the upsampled flow (read when HAS_GRAD_UP)
    row_start_ptr,  # (h + 1,) int32: output rows [row_start[i], row_start[i + 1]) read flow row i
    col_start_ptr,  # (w + 1,) int32
    grad_flow_ptr,  # (B, 2, h, w) float32, contiguous
    grad_resid_ptr,  # (B, 2, H, W) float32, contiguous (written when HAS_RESID)
    grad_image_ptr,  # (B, C, H, W) float32, contiguous, zero-filled (accumulated when IMAGE_GRAD)
    N, C, H, W, h, w,  # N = B * h * w
    scale_x, scale_y,
    im_sb, im_sc, im_sh, im_sw,
    fl_sb, fl_sc, fl_sh, fl_sw,
    rs_sb, rs_sc, rs_sh, rs_sw,
    go_sb, go_sc, go_sh, go_sw,
    gu_sb, gu_sc, gu_sh, gu_sw,
    HAS_RESID: tl.constexpr,
    HAS_GRAD_UP: tl.constexpr,
    IMAGE_GRAD: tl.constexpr,
    KH: tl.constexpr,
    KW: tl.constexpr,
    BLOCK: tl.constexpr,
):
    j, i, b, m = program_pixels(N, h, w, BLOCK)
    u_lo, v_lo = load_pair(flow_ptr, b, i, j, fl_sb, fl_sc, fl_sh, fl_sw, m)
    y_begin = tl.load(row_start_ptr + i, mask=m, other=0)
    y_end = tl.load(row_start_ptr + i + 1, mask=m, other=0)
    x_begin = tl.load(col_start_ptr + j, mask=m, other=0)
    x_end = tl.load(col_start_ptr + j + 1, mask=m, other=0)
    acc_u = tl.zeros([BLOCK], dtype=tl.float32)
    acc_v = tl.zeros([BLOCK], dtype=tl.float32)
    img = image_ptr + b * im_sb
    for kh in tl.static_range(KH):
        y = y_begin + kh
        my = m & (y < y_end)
        for kw in tl.static_range(KW):
            x = x_begin + kw
            mm = my & (x < x_end)
            u = u_lo
            v = v_lo
            if HAS_RESID:
                ru, rv = load_pair(resid_ptr, b, y, x, rs_sb, rs_sc, rs_sh, rs_sw, mm)
                u = u + ru
                v = v + rv
            cx_raw, cy_raw, x0, y0, x1, y1, fx, fy = bilinear_taps(x, y, u, v, scale_x, scale_y, H, W)
            o00, o01, o10, o11 = corner_offsets(x0, y0, x1, y1, im_sh, im_sw)
            go = grad_out_ptr + b * go_sb + y * go_sh + x * go_sw
            g_x = tl.zeros([BLOCK], dtype=tl.float32)
            g_y = tl.zeros([BLOCK], dtype=tl.float32)
            for c in range(C):
                g = tl.load(go + c * go_sc, mask=mm, other=0.0).to(tl.float32)
                i00, i01, i10, i11, top, bottom = bilinear_rows(img + c * im_sc, o00, o01, o10, o11, fx, mm)
                g_x += g * ((1.0 - fy) * (i01 - i00) + fy * (i11 - i10))
                g_y += g * (bottom - top)
                if IMAGE_GRAD:
                    gi = grad_image_ptr + (b * C + c) * (H * W)
                    tl.atomic_add(gi + y0 * W + x0, g * (1.0 - fx) * (1.0 - fy), mask=mm)
                    tl.atomic_add(gi + y0 * W + x1, g * fx * (1.0 - fy), mask=mm)
                    tl.atomic_add(gi + y1 * W + x0, g * (1.0 - fx) * fy, mask=mm)
                    tl.atomic_add(gi + y1 * W + x1, g * fx * fy, mask=mm)
            g_x = tl.where((cx_raw >= 0.0) & (cx_raw <= W - 1.0), g_x, 0.0) * scale_x
            g_y = tl.where((cy_raw >= 0.0) & (cy_raw <= H - 1.0), g_y, 0.0) * scale_y
            if HAS_RESID:
                gr = grad_resid_ptr + b * (2 * H * W) + y * W + x
                tl.store(gr, g_x, mask=mm)
                tl.store(gr + H * W, g_y, mask=mm)
            if HAS_GRAD_UP:
                gu_x, gu_y = load_pair(grad_up_ptr, b, y, x, gu_sb, gu_sc, gu_sh, gu_sw, mm)
                g_x += gu_x
                g_y += gu_y
            acc_u += tl.where(mm, g_x, 0.0)
            acc_v += tl.where(mm, g_y, 0.0)
    gf = grad_flow_ptr + b * (2 * h * w) + i * w + j
    tl.store(gf, acc_u, mask=m)
    tl.store(gf + h * w, acc_v, mask=m)


def _check_flow(name: str, flow: torch.Tensor, image: torch.Tensor, full_size: bool) -> None:
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[0] != image.shape[0]:
        got = tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__
        raise ValueError(f"{name} must have shape ({image.shape[0]}, 2, h, w) to match image's batch, got {got}")
    if full_size and tuple(flow.shape[2:]) != tuple(image.shape[2:]):
        raise ValueError(f"{name} must have image's size {tuple(image.shape[2:])}, got {tuple(flow.shape[2:])}")
    check_float(name, flow)
    check_device(name, flow, image, "image")


def _check_image(image: torch.Tensor) -> None:
    check_bchw("image", image)
    check_float("image", image)
    check_numel("image", image)


def warp_fwd(
    image: torch.Tensor,
    flow: torch.Tensor,
    resid: Optional[torch.Tensor] = None,
    scale: Tuple[float, float] = (1.0, 1.0),
    out: Optional[torch.Tensor] = None,
    up_out: Optional[torch.Tensor] = None,
    block: Optional[int] = None,
) -> torch.Tensor:
    """Launch the forward: sample ``image`` at ``scale * (upsample(flow) + resid)``.

    ``out`` (B, C, H, W) and ``up_out`` (B, 2, H, W, receives the upsampled flow) may be
    strided views, e.g. channel slices of a larger input stack.
    """
    B, C, H, W = image.shape
    h, w = flow.shape[2:]
    if out is None:
        out = torch.empty_like(image, memory_format=torch.contiguous_format)
    row_src, _, _ = nearest_tables(h, H, image.device)
    col_src, _, _ = nearest_tables(w, W, image.device)
    r, rs = or_placeholder(resid, flow, 4)
    up, us = or_placeholder(up_out, out, 4)
    N = B * H * W
    grid, BLOCK = grid_1d(N, 256, block)
    _warp_fwd_kernel[grid](
        image, flow, r, row_src, col_src, out, up,
        N, C, H, W, float(scale[0]), float(scale[1]),
        *image.stride(), *flow.stride(), *rs, *out.stride(), *us,
        HAS_RESID=resid is not None, WRITE_UP=up_out is not None, BLOCK=BLOCK, **EXACT_COORDS,
    )
    return out


def warp_bwd(
    grad_out: torch.Tensor,
    image: torch.Tensor,
    flow: torch.Tensor,
    resid: Optional[torch.Tensor] = None,
    scale: Tuple[float, float] = (1.0, 1.0),
    need_image_grad: bool = False,
    grad_up: Optional[torch.Tensor] = None,
    block: Optional[int] = None,
):
    """Launch the backward: returns float32 (grad_image or None, grad_flow, grad_resid or None).

    ``grad_up`` (B, 2, H, W), if given, is a further gradient of the upsampled flow (e.g.
    from the input stack that holds it); it is added before the upsampling's backward.
    """
    B, C, H, W = image.shape
    h, w = flow.shape[2:]
    _, row_start, KH = nearest_tables(h, H, image.device)
    _, col_start, KW = nearest_tables(w, W, image.device)
    dev = image.device
    grad_flow = torch.empty(B, 2, h, w, device=dev, dtype=torch.float32)
    grad_resid = torch.empty(B, 2, H, W, device=dev, dtype=torch.float32) if resid is not None else None
    grad_image = torch.zeros(B, C, H, W, device=dev, dtype=torch.float32) if need_image_grad else None
    r, rs = or_placeholder(resid, flow, 4)
    gu, gus = or_placeholder(grad_up, grad_out, 4)
    N = B * h * w
    grid, BLOCK = grid_1d(N, 128, block)
    _warp_bwd_kernel[grid](
        image, flow, r, grad_out, gu, row_start, col_start,
        grad_flow, grad_resid if grad_resid is not None else grad_flow, grad_image if grad_image is not None else grad_flow,
        N, C, H, W, h, w, float(scale[0]), float(scale[1]),
        *image.stride(), *flow.stride(), *rs, *grad_out.stride(), *gus,
        HAS_RESID=resid is not None, HAS_GRAD_UP=grad_up is not None, IMAGE_GRAD=need_image_grad,
        KH=KH, KW=KW, BLOCK=BLOCK, **EXACT_COORDS,
    )
    return grad_image, grad_flow, grad_resid


class WarpFunction(torch.autograd.Function):
    """warp(image, scale * (upsample(flow) + resid)); gradients for flow and resid always
    (gathers, deterministic), for image only when it requires grad (float32 atomics: not
    bit-deterministic)."""

    @staticmethod
    def forward(ctx, image, flow, resid, scale_x, scale_y, block):
        ctx.scale = (scale_x, scale_y)
        ctx.block = block
        ctx.save_for_backward(image, flow, resid)
        return warp_fwd(image, flow, resid, (scale_x, scale_y), block=block)

    @staticmethod
    def backward(ctx, grad_out):
        image, flow, resid = ctx.saved_tensors
        gi, gf, gr = warp_bwd(grad_out, image, flow, resid, ctx.scale, ctx.needs_input_grad[0], block=ctx.block)
        gi = gi.to(image.dtype) if gi is not None else None
        gr = gr.to(resid.dtype) if gr is not None and ctx.needs_input_grad[2] else None
        gf = gf.to(flow.dtype) if ctx.needs_input_grad[1] else None
        return gi, gf, gr, None, None, None


def warp(image: torch.Tensor, flow: torch.Tensor, block: Optional[int] = None) -> torch.Tensor:
    """``warp_reference`` on Triton: ``flow`` (B, 2, H, W) in pixels (channel 0 = dx)."""
    _check_image(image)
    _check_flow("flow", flow, image, full_size=True)
    return WarpFunction.apply(image, flow, None, 1.0, 1.0, block)


def normalized_scale(H: int, W: int) -> Tuple[float, float]:
    """pixels(F) = (F_x (W-1)/2, F_y (H-1)/2) (SPEC.md)."""
    return ((W - 1) / 2.0, (H - 1) / 2.0)


def warp_normalized(
    image: torch.Tensor, flow: torch.Tensor, resid: Optional[torch.Tensor] = None, block: Optional[int] = None
) -> torch.Tensor:
    """``warp(image, pixels(nearest_upsample(flow, image size) + resid))`` in one kernel.

    flow: (B, 2, h, w) in the network's normalised units, any h x w (the coarse flow F_c);
    resid: None or (B, 2, H, W) normalised (the fine residual F_r). Equals
    ``ops.warp_reference(image, ops.flow_to_pixels(F.interpolate(flow, (H, W)) + resid))``.
    """
    _check_image(image)
    _check_flow("flow", flow, image, full_size=False)
    if resid is not None:
        _check_flow("resid", resid, image, full_size=True)
    H, W = image.shape[2:]
    sx, sy = normalized_scale(H, W)
    return WarpFunction.apply(image, flow, resid, sx, sy, block)
