"""The training losses: L2 / L1 on the output, L2 on the coarse image, and the
registration-tolerant L2 of the paper's section 4.5.

Every loss returns a scalar averaged over the batch and all pixels (per-pixel mean).
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from .config import LossConfig


def l2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(output, target)


def per_sample_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of each sample over channels and pixels."""
    return (output - target).pow(2).flatten(1).mean(1)


def enlarge_target(target: torch.Tensor, k: int) -> torch.Tensor:
    """The target enlarged by ``k`` pixels on each side (border replicated): (B, C, H+2k, W+2k).

    Used when the data source provides only an H x W target; a source that renders
    the larger window can pass it to :func:`registration_tolerant_l2` directly.
    """
    if k == 0:
        return target
    return F.pad(target, (k, k, k, k), mode="replicate")


def registration_tolerant_l2(output: torch.Tensor, target: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Section 4.5: per sample, the least L2 over the (2k+1)^2 integer shifts of the target.

    Convention: output (B, C, H, W); target either (B, C, H, W) (then enlarged with
    :func:`enlarge_target`) or already enlarged, (B, C, H+2k, W+2k). Shift (dy, dx)
    compares ``output`` with ``target_big[:, :, k+dy : k+dy+H, k+dx : k+dx+W]``. The
    minimum is taken per sample, then averaged over the batch; its gradient flows
    through the best shift only. k = 0 is plain L2.
    """
    B, C, H, W = output.shape
    if target.shape[-2:] == (H, W):
        target = enlarge_target(target, k)
    if tuple(target.shape) != (B, C, H + 2 * k, W + 2 * k):
        raise ValueError(f"target must have shape {(B, C, H, W)} or {(B, C, H + 2 * k, W + 2 * k)} for k={k}, got {tuple(target.shape)}")
    errs = []
    for dy in range(2 * k + 1):
        for dx in range(2 * k + 1):
            errs.append(per_sample_mse(output, target[:, :, dy : dy + H, dx : dx + W]))
    return torch.stack(errs, 0).min(0).values.mean()


def _luma(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)


def flow_iris_loss(flow: torch.Tensor, iris: torch.Tensor, anchors: torch.Tensor, target_anchors: torch.Tensor) -> torch.Tensor:
    """Mean over the target's (visible) iris pixels of |flow - (input pupil - target pupil)|^2
    (pixels^2). flow (B, 2, H, W) backward flow; iris (B, 1, H, W) soft mask of the
    target's iris; anchors / target_anchors (B, 7, 2)."""
    d = (anchors[:, 6] - target_anchors[:, 6]).view(-1, 2, 1, 1)
    err = (flow - d).pow(2).sum(1, keepdim=True)
    return (err * iris).sum() / iris.sum().clamp_min(1.0)


def flow_points_loss(flow: torch.Tensor, anchors: torch.Tensor, target_anchors: torch.Tensor, idx=(0, 1, 2, 3, 4, 5)) -> torch.Tensor:
    """Mean over the target's lid points of |flow(target point) - (input point - target point)|^2,
    the flow sampled bilinearly at the (sub-pixel) target points."""
    B, _, H, W = flow.shape
    ta = target_anchors[:, list(idx)]
    grid = torch.stack([2 * ta[..., 0] / (W - 1) - 1, 2 * ta[..., 1] / (H - 1) - 1], -1).unsqueeze(1)  # (B, 1, K, 2)
    f = F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]  # (B, 2, K)
    d = (anchors[:, list(idx)] - ta).permute(0, 2, 1)
    return (f - d).pow(2).sum(1).mean()


def weighted_tv(flow: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(w * (|dx flow| + |dy flow|)) / sum(w), w (B, 1, H, W) taken at the pair's pixels."""
    gx = (flow[..., :, 1:] - flow[..., :, :-1]).abs().sum(1, keepdim=True)
    gy = (flow[..., 1:, :] - flow[..., :-1, :]).abs().sum(1, keepdim=True)
    wx = 0.5 * (weight[..., :, 1:] + weight[..., :, :-1])
    wy = 0.5 * (weight[..., 1:, :] + weight[..., :-1, :])
    return ((gx * wx).sum() + (gy * wy).sum()) / (wx.sum() + wy.sum()).clamp_min(1.0)


def training_loss(out, target: torch.Tensor, cfg: LossConfig, batch=None) -> Dict[str, torch.Tensor]:
    """The weighted sum of the switched-on terms: {"loss": total, "<term>": value, ...}.

    ``out`` is a DeepWarpOutput (output, coarse, fine, flow, coarse_flow, ...); ``batch``
    the training batch, needed by the flow terms ("anchors", "target_anchors" and the
    renderer's masks "iris", "opening", "eye_region", each (B, 2, H, W): input, target).
    """
    terms: Dict[str, torch.Tensor] = {}
    total = None

    def add(name, weight, value):
        nonlocal total
        terms[name] = value.detach()
        total = weight * value if total is None else total + weight * value

    if cfg.l2_output:
        if cfg.registration_tolerant:
            add("l2_output_rt", cfg.l2_output, registration_tolerant_l2(out.output, target, cfg.registration_k))
        else:
            add("l2_output", cfg.l2_output, l2(out.output, target))
    if cfg.l2_coarse:
        add("l2_coarse", cfg.l2_coarse, l2(out.coarse, target))
    if cfg.l2_fine:
        add("l2_fine", cfg.l2_fine, l2(out.fine, target))
    if cfg.l1_output:
        add("l1_output", cfg.l1_output, l1(out.output, target))
    if cfg.flow_iris or cfg.flow_lids or cfg.tv_eye or cfg.tv_lids:
        need = ["anchors", "target_anchors"] + (["iris"] if cfg.flow_iris else []) + (
            ["opening", "eye_region"] if (cfg.tv_eye or cfg.tv_lids) else [])
        missing = [k for k in need if batch is None or k not in batch]
        if missing:
            raise KeyError(f"the flow loss terms need batch keys {missing} (render with return_layers=True)")
        a, ta = batch["anchors"], batch["target_anchors"]
        if cfg.flow_iris:
            m = batch["iris"][:, 1:2]
            add("flow_iris", cfg.flow_iris, flow_iris_loss(out.flow, m, a, ta) + 0.5 * flow_iris_loss(out.coarse_flow, m, a, ta))
        if cfg.flow_lids:
            add("flow_lids", cfg.flow_lids, flow_points_loss(out.flow, a, ta) + 0.5 * flow_points_loss(out.coarse_flow, a, ta))
        if cfg.tv_eye or cfg.tv_lids:
            opening = batch["opening"][:, 1:2]
            if cfg.tv_eye:
                add("tv_eye", cfg.tv_eye, weighted_tv(out.flow, opening * (1 - _luma(target))))
            if cfg.tv_lids:
                region = torch.maximum(batch["eye_region"][:, 0:1], batch["eye_region"][:, 1:2])
                add("tv_lids", cfg.tv_lids, weighted_tv(out.flow, (region - opening).clamp_min(0)))
    if total is None:
        raise ValueError("every loss term is switched off: set loss.l2_output (or another term) to a weight > 0")
    terms["loss"] = total
    return terms


def normalized_error(output: torch.Tensor, input: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The paper's measure per sample: MSE(output, target) / MSE(input, target), shape (B,)."""
    return per_sample_mse(output, target) / per_sample_mse(input, target).clamp_min(eps)
