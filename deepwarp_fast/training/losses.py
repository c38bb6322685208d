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


def training_loss(out, target: torch.Tensor, cfg: LossConfig) -> Dict[str, torch.Tensor]:
    """The weighted sum of the switched-on terms: {"loss": total, "<term>": value, ...}.

    ``out`` is a DeepWarpOutput (output, coarse, fine, ...).
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
    if total is None:
        raise ValueError("every loss term is switched off: set loss.l2_output (or another term) to a weight > 0")
    terms["loss"] = total
    return terms


def normalized_error(output: torch.Tensor, input: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The paper's measure per sample: MSE(output, target) / MSE(input, target), shape (B,)."""
    return per_sample_mse(output, target) / per_sample_mse(input, target).clamp_min(eps)
