"""Input checks shared by every model and backend: each error names the argument."""
from __future__ import annotations

import torch

from .config import DeepWarpConfig

_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _check_tensor(name: str, t, shape_desc: str, ndim: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_desc}, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_desc} ({ndim} dims), got shape {tuple(t.shape)}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float32, float16, bfloat16 or float64), got {t.dtype}")


def check_inputs(eyes, anchors, angles, config: DeepWarpConfig, check_values: bool = True,
                 check_range: bool = False) -> None:
    """Raise a clear error unless (eyes, anchors, angles) follow SPEC.md's "Tensors".

    ``check_values`` also checks the values (finite anchors/angles, eyes in [0, 1]),
    which reads the tensors back (a device sync on a GPU). ``check_range`` also
    rejects angles outside the trained range +-config.max_angle (inference; the face
    pipeline applies the same rule).
    """
    H, W, K = config.height, config.width, config.num_anchors
    _check_tensor("eyes", eyes, f"(B, 3, {H}, {W})", 4)
    _check_tensor("anchors", anchors, f"(B, {K}, 2)", 3)
    _check_tensor("angles", angles, "(B, 2)", 2)
    B = eyes.shape[0]
    if B == 0:
        raise ValueError("eyes is an empty batch (B = 0); pass at least one eye patch")
    if tuple(eyes.shape[1:]) != (3, H, W):
        raise ValueError(f"eyes must have shape (B, 3, {H}, {W}) (RGB patches of the model's size), got {tuple(eyes.shape)}")
    if tuple(anchors.shape) != (B, K, 2):
        raise ValueError(f"anchors must have shape ({B}, {K}, 2) to match eyes' batch of {B}, got {tuple(anchors.shape)}")
    if tuple(angles.shape) != (B, 2):
        raise ValueError(f"angles must have shape ({B}, 2) (vertical, horizontal degrees) to match eyes' batch of {B}, got {tuple(angles.shape)}")
    for name, t in (("anchors", anchors), ("angles", angles)):
        if t.device != eyes.device:
            raise ValueError(f"eyes and {name} must be on the same device, got eyes on {eyes.device} and {name} on {t.device}")
    if not check_values:
        return
    for name, t in (("anchors", anchors), ("angles", angles)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
    if check_range:
        worst = float(angles.detach().abs().max())
        if worst > config.max_angle:
            raise ValueError(f"angles holds {worst:g} degrees, outside the range the weights were trained for: "
                             f"[-{config.max_angle:g}, {config.max_angle:g}] (config.max_angle)")
    if not bool(torch.isfinite(eyes).all()):
        raise ValueError("eyes contains NaN or infinite values")
    lo, hi = float(eyes.min()), float(eyes.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"eyes must hold values in [0, 1] (scale 8-bit images by 1/255), got min {lo:.4g} and max {hi:.4g}")
