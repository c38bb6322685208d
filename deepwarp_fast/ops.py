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
