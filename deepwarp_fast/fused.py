"""The fused ops of the accelerated model, each in two forms: ``<op>_reference`` in
PyTorch (the parity oracle, and the path when the extension does not run) and a
``torch.library`` custom op over the C++/CUDA extension (``deepwarp_fast._C``; CPU ops and
CUDA kernels in ``csrc/``), so that ``opcheck`` and ``torch.compile`` see a real op with a
fake-tensor implementation.

- ``conv_bias_relu``: a 'same' conv (stride 1) + bias (+ a precomputed map term) + ReLU;
- ``coarse_tail``: the coarse head, the nearest upsampling and the warp to O_c, writing the
  fine tower's image channels cat(eyes, O_c, U_c);
- ``fine_tail``: the fine head, the warp, the LCM's three 1x1 layers and the blend;
  ``fields_tail_reference`` stops before the warp (the native paste's flow and mask).

Outside ``torch.compile``, :func:`extension_ops` calls the extension directly: a custom
op's first call imports ``torch._dynamo`` (about a second), which every CLI run would pay.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import _ext, ops

Tensor = torch.Tensor


def conv_bias_relu_reference(x: Tensor, weight: Tensor, bias: Tensor, extra: Optional[Tensor] = None, relu: bool = True) -> Tensor:
    """'same' conv (stride 1) + bias, plus ``extra`` (B, Cout, H, W) when given, then ReLU."""
    out = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), padding=weight.shape[-1] // 2)
    if extra is not None:
        out = out + extra.to(out.dtype)
    return F.relu(out) if relu else out


def _head_reference(feat: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    h = F.relu(F.conv2d(feat, w1[:, :, None, None].to(feat.dtype), b1.to(feat.dtype)))
    return torch.tanh(F.conv2d(h, w2[:, :, None, None].to(feat.dtype), b2.to(feat.dtype)))


def pixel_scale(flow: Tensor, scale_x: float, scale_y: float) -> Tensor:
    return flow * flow.new_tensor([scale_x, scale_y]).view(1, 2, 1, 1)


def coarse_tail_reference(feat, w1, b1, w2, b2, eyes, scale_x: float, scale_y: float, backend: str = "reference") -> Tensor:
    """cat(eyes, O_c, U_c): the coarse head on ``feat`` (B, C, h, w) gives the flow F_c in
    normalised units; U_c = nearest-upsample(F_c) to the eyes' size; O_c = warp(eyes,
    (U_c_x * scale_x, U_c_y * scale_y))."""
    H, W = eyes.shape[-2:]
    up = F.interpolate(_head_reference(feat, w1, b1, w2, b2), size=(H, W), mode="nearest")
    coarse = ops.warp(eyes, pixel_scale(up, scale_x, scale_y), backend=backend)
    return torch.cat([eyes, coarse, up], dim=1)


def _lcm_logits_reference(feat_f: Tensor, feat_c: Tensor, lcm) -> Tensor:
    """The LCM's logits (B, 2, H, W) from cat(nearest-upsample(feat_c), feat_f) and its
    folded parameters ``lcm`` = (w1, b1, w2, b2, w3, b3)."""
    lw1, lb1, lw2, lb2, lw3, lb3 = (t.to(feat_f.dtype) for t in lcm)
    x = torch.cat([F.interpolate(feat_c, size=feat_f.shape[-2:], mode="nearest"), feat_f], dim=1)
    x = F.relu(F.conv2d(x, lw1[:, :, None, None], lb1))
    x = F.relu(F.conv2d(x, lw2[:, :, None, None], lb2))
    return F.conv2d(x, lw3[:, :, None, None], lb3)


def fields_tail_reference(feat_f, feat_c, up_c, w1, b1, w2, b2, lcm=None, scale_x: float = 1.0, scale_y: float = 1.0):
    """(flow, mask) of ``fine_tail_reference`` without the warp and the blend: flow =
    pixels(U_c + head(feat_f)); mask = sigmoid(l1 - l0), or None without ``lcm``."""
    flow = pixel_scale(up_c + _head_reference(feat_f, w1, b1, w2, b2), scale_x, scale_y)
    if lcm is None:
        return flow, None
    logits = _lcm_logits_reference(feat_f, feat_c, lcm)
    return flow, torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])


def fine_tail_reference(feat_f, feat_c, eyes, up_c, w1, b1, w2, b2, lcm=None, scale_x: float = 1.0, scale_y: float = 1.0,
                        intermediates: bool = False, backend: str = "reference"):
    """(output, fine, flow, mask): flow = pixels(U_c + head(feat_f)), fine = warp(eyes, flow);
    with ``lcm`` = (w1, b1, w2, b2, w3, b3), logits = LCM(cat(nearest-upsample(feat_c),
    feat_f)) and output = lcm_blend(fine, logits), mask = sigmoid(l1 - l0). Without
    ``intermediates`` fine, flow and mask are empty tensors."""
    H, W = eyes.shape[-2:]
    flow = pixel_scale(up_c + _head_reference(feat_f, w1, b1, w2, b2), scale_x, scale_y)
    fine = ops.warp(eyes, flow, backend=backend)
    mask = eyes.new_empty(0)
    out = fine
    if lcm is not None:
        logits = _lcm_logits_reference(feat_f, feat_c, lcm)
        out = ops.lcm_blend(fine, logits, backend=backend)
        if intermediates:
            mask = torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])
    if not intermediates:
        return out, eyes.new_empty(0), eyes.new_empty(0), eyes.new_empty(0)
    return out, fine, flow, mask


@torch.library.custom_op("deepwarp_fast::conv_bias_relu", mutates_args=())
def conv_bias_relu(x: Tensor, weight: Tensor, bias: Tensor, extra: Optional[Tensor] = None, relu: bool = True) -> Tensor:
    """The extension's ``conv_bias_relu`` (contract: :func:`conv_bias_relu_reference`)."""
    return _ext.require().conv_bias_relu(x, weight, bias, extra, relu)


@conv_bias_relu.register_fake
def _(x, weight, bias, extra=None, relu=True):
    return x.new_empty(x.shape[0], weight.shape[0], x.shape[2], x.shape[3])


@torch.library.custom_op("deepwarp_fast::coarse_tail", mutates_args=())
def coarse_tail(feat: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, eyes: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """The extension's ``coarse_tail`` (contract: :func:`coarse_tail_reference`)."""
    return _ext.require().coarse_tail(feat, w1, b1, w2, b2, eyes, scale_x, scale_y)


@coarse_tail.register_fake
def _(feat, w1, b1, w2, b2, eyes, scale_x, scale_y):
    B, C, H, W = eyes.shape
    return eyes.new_empty(B, 2 * C + 2, H, W)


@torch.library.custom_op("deepwarp_fast::fine_tail", mutates_args=())
def fine_tail(
    feat_f: Tensor, feat_c: Optional[Tensor], eyes: Tensor, up_c: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
    lcm_w1: Optional[Tensor], lcm_b1: Optional[Tensor], lcm_w2: Optional[Tensor], lcm_b2: Optional[Tensor],
    lcm_w3: Optional[Tensor], lcm_b3: Optional[Tensor], scale_x: float, scale_y: float, intermediates: bool,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The extension's ``fine_tail`` (contract: :func:`fine_tail_reference`)."""
    return _ext.require().fine_tail(feat_f, feat_c, eyes, up_c, w1, b1, w2, b2, lcm_w1, lcm_b1, lcm_w2, lcm_b2,
                                    lcm_w3, lcm_b3, scale_x, scale_y, intermediates)


@fine_tail.register_fake
def _(feat_f, feat_c, eyes, up_c, w1, b1, w2, b2, lcm_w1, lcm_b1, lcm_w2, lcm_b2, lcm_w3, lcm_b3, scale_x, scale_y, intermediates):
    B, C, H, W = eyes.shape
    out = eyes.new_empty(B, C, H, W)
    if not intermediates:  # three distinct empty tensors, as the extension returns
        return out, eyes.new_empty(0), eyes.new_empty(0), eyes.new_empty(0)
    mask = eyes.new_empty(B, 1, H, W) if lcm_w1 is not None else eyes.new_empty(0)
    return out, eyes.new_empty(B, C, H, W), eyes.new_empty(B, 2, H, W), mask


def extension_ops():
    """(conv_bias_relu, coarse_tail, fine_tail) to call: the custom ops while
    ``torch.compile`` traces, else the extension's functions themselves (same arguments,
    same results; no dispatcher, no ``torch._dynamo`` import on the first call)."""
    if torch.compiler.is_compiling():
        return conv_bias_relu, coarse_tail, fine_tail
    C = _ext.require()
    return C.conv_bias_relu, C.coarse_tail, C.fine_tail
