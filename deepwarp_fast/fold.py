"""Weight folding for the accelerated model: BatchNorm folded into the convolutions, and the
first layer of each tower split into its image part and its input-map term.

The first layer's input maps are affine in the pixel position (anchor maps ``x - x_i``,
``y - y_i``) or constant (angle maps), so their convolution is ``P + A[b] @ inb``: ``P``
(from the anchor maps' ``x`` and ``y`` parts) and ``inb`` (which taps fall inside the zero
padding) are fixed when the model is built, ``A[b] = vec[b] @ M`` is a product per image
(``vec`` = cat(angle embedding, anchors' x, anchors' y)).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from . import ops
from .config import DeepWarpConfig

Tensor = torch.Tensor


def fused_path_supported(config: DeepWarpConfig) -> Tuple[bool, str]:
    """Whether the fused forward covers ``config`` (else the folded reference runs), and why not."""
    for name in ("coarse", "fine"):
        ks = getattr(config, f"{name}_kernels")
        if len(ks) < 2 or ks[-1] != 1:
            return False, f"the {name} tower must end in a 1x1 conv-BN-ReLU layer before its head, got kernels {ks}"
        if config.use_lcm and config.lcm_feature_layer != len(ks) - 2:
            return False, f"the LCM must read the {name} tower's last k x k layer (lcm_feature_layer={len(ks) - 2})"
    if config.use_lcm and len(config.lcm_channels) != 2:
        return False, f"the fused LCM has two hidden layers, got lcm_channels={config.lcm_channels}"
    return True, ""


def coordinate_maps(H: int, W: int, pool: bool) -> Tuple[Tensor, Tensor]:
    """The anchor maps' position parts x and y (float64), average-pooled 2x2 like the
    coarse tower's input when ``pool``."""
    xs = torch.arange(W, dtype=torch.float64).view(1, 1, 1, W).expand(1, 1, H, W)
    ys = torch.arange(H, dtype=torch.float64).view(1, 1, H, 1).expand(1, 1, H, W)
    if pool:
        xs, ys = F.avg_pool2d(xs, 2), F.avg_pool2d(ys, 2)
    return xs, ys


def split_first_layer(weight: Tensor, config: DeepWarpConfig, image_channels, pool: bool, H: int, W: int):
    """Split a first-layer folded weight (Cout, Cin, k, k) into the image part and the
    map term's fixed factors: (w_img, M (D+2K, Cout k^2), P (Cout, h w), inb (k^2, h w))."""
    K, D = config.num_anchors, config.angle_dim
    w = weight.double()
    Cout, _, k, _ = w.shape
    anchor_x = w[:, 3:3 + 2 * K:2]
    anchor_y = w[:, 4:3 + 2 * K:2]
    angle = w[:, 3 + 2 * K:3 + 2 * K + D]
    w_img = torch.cat([w[:, a:b] for a, b in image_channels], dim=1)
    # A[b] = vec[b] @ M with vec = cat(embedding, anchors_x, anchors_y).
    M = torch.cat([angle, -anchor_x, -anchor_y], dim=1).permute(1, 0, 2, 3).reshape(D + 2 * K, Cout * k * k)
    xs, ys = coordinate_maps(H, W, pool)
    p = k // 2
    P = F.conv2d(xs, anchor_x.sum(1, keepdim=True), padding=p) + F.conv2d(ys, anchor_y.sum(1, keepdim=True), padding=p)
    h, w_ = xs.shape[-2:]
    inb = F.unfold(torch.ones(1, 1, h, w_, dtype=torch.float64), k, padding=p)[0]
    dt = weight.dtype
    return w_img.to(dt), M.to(dt), P.reshape(Cout, h * w_).to(dt), inb.to(dt)


def folded(layer) -> Tuple[Tensor, Tensor]:
    if hasattr(layer, "bn"):
        w, b = ops.fold_bn(layer.conv.weight, layer.bn)
    else:  # already folded (DeepWarp.fuse_bn())
        w, b = layer.weight, layer.bias
    return w.detach(), b.detach()
