"""Every random choice of a pair, drawn on the CPU from a seeded generator in a fixed
order (so pixels do not depend on the device): the input and target gazes, the head tilts
(the easy/hard split), and the per-sample parameters of the eye, skin, lids, accessories,
light and camera, plus the low-resolution noise fields the renderer turns into textures."""
from __future__ import annotations

import math
from typing import Dict

import torch

from .options import HARD_TILT, ROTATION_RADIUS, SynthOptions

# Skin tones (linear-ish RGB in [0, 1]) from light to very dark; a sample interpolates.
_SKIN = torch.tensor([
    [0.97, 0.82, 0.72],
    [0.88, 0.68, 0.56],
    [0.74, 0.52, 0.39],
    [0.55, 0.36, 0.25],
    [0.36, 0.23, 0.15],
    [0.24, 0.15, 0.10],
])
# Iris base colours (outer, towards the limbus) and their weights.
_IRIS = torch.tensor([
    [0.22, 0.12, 0.06],  # dark brown
    [0.36, 0.21, 0.10],  # brown
    [0.13, 0.08, 0.05],  # very dark brown
    [0.42, 0.32, 0.15],  # hazel
    [0.30, 0.38, 0.24],  # green
    [0.30, 0.42, 0.56],  # blue
    [0.40, 0.46, 0.50],  # grey
])
_IRIS_W = torch.tensor([0.30, 0.20, 0.15, 0.10, 0.07, 0.11, 0.07])


def _u(gen, n, lo, hi):
    return torch.rand(n, generator=gen, dtype=torch.float64).float() * (hi - lo) + lo


def _n(gen, n, std=1.0):
    return torch.randn(n, generator=gen, dtype=torch.float64).float() * std


def _as_n2(x, n, name):
    t = torch.as_tensor(x, dtype=torch.float32).cpu()
    if t.ndim == 1 and t.shape[0] == 2:
        t = t.expand(n, 2)
    if t.shape != (n, 2):
        raise ValueError(f"{name} must have shape ({n}, 2) (vertical, horizontal degrees) or (2,), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t.clone()


def _as_n(x, n, name):
    t = torch.as_tensor(x, dtype=torch.float32).cpu()
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t.clone()


def sample_gazes(gen, n, gaze_range, max_redirect, angles=None, input_gaze=None):
    """Input and target gazes (n, 2) within +-gaze_range whose difference is ``angles``
    (sampled uniformly in +-max_redirect, clipped to what the range allows, when not given)."""
    R = float(gaze_range)
    if input_gaze is not None:
        g0 = _as_n2(input_gaze, n, "input_gaze")
        if angles is None:
            lo = torch.clamp(-R - g0, min=-max_redirect)
            hi = torch.clamp(R - g0, max=max_redirect)
            a = lo + (hi - lo) * torch.rand(n, 2, generator=gen, dtype=torch.float64).float()
        else:
            a = _as_n2(angles, n, "angles")
        return g0, g0 + a
    if angles is None:
        a = (torch.rand(n, 2, generator=gen, dtype=torch.float64).float() * 2 - 1) * min(max_redirect, 2 * R)
    else:
        a = _as_n2(angles, n, "angles")
        if (a.abs() > 2 * R + 1e-4).any():
            raise ValueError(f"angles must be within +-2*gaze_range = +-{2 * R:g} degrees so that both gazes fit in "
                             f"+-gaze_range; got max |angle| {a.abs().max().item():g}")
    lo = torch.clamp(-R - a, min=-R)
    hi = torch.clamp(R - a, max=R)
    g0 = lo + (hi - lo) * torch.rand(n, 2, generator=gen, dtype=torch.float64).float()
    return g0, g0 + a


def split_tilts(u: torch.Tensor, sign: torch.Tensor, hard: torch.Tensor, hard_tilt: float = HARD_TILT,
                max_tilt: float = 20.0) -> torch.Tensor:
    """Head tilts (degrees) from uniform draws ``u`` in [0, 1) and signs: "easy" pairs
    uniform in [-hard_tilt, hard_tilt), "hard" ones (``hard``) of magnitude uniform in
    [hard_tilt, max_tilt) with the given sign: the paper's split, as training
    (``training.sampler``) and evaluation (``evaluate.draw_angles_tilts``) draw it."""
    return torch.where(hard, sign * (hard_tilt + u * (max_tilt - hard_tilt)), (2 * u - 1) * hard_tilt)


def sample_tilts(gen, n, hard_fraction, opts: SynthOptions):
    hard = torch.rand(n, generator=gen, dtype=torch.float64) < hard_fraction
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    hard_t = sign * _u(gen, n, HARD_TILT + 0.25, max(opts.hard_tilt_max, HARD_TILT + 0.5))
    easy_t = (_n(gen, n, opts.easy_tilt_std)).clamp(-HARD_TILT + 0.25, HARD_TILT - 0.25)
    return torch.where(hard, hard_t, easy_t)


def _pick(gen, n, table, weights=None):
    if weights is None:
        idx = torch.randint(0, table.shape[0], (n,), generator=gen)
    else:
        idx = torch.multinomial(weights, n, replacement=True, generator=gen)
    return table[idx]


def sample_params(gen, n, H, W, opts: SynthOptions, g0, g1, tilt) -> Dict[str, torch.Tensor]:
    """Every per-sample random choice, drawn on the CPU in a fixed order (so pixels do not
    depend on the device), as a dict of (n, ...) float tensors."""
    p: Dict[str, torch.Tensor] = {}
    p["g0"], p["g1"], p["tilt"] = g0, g1, tilt
    # crop: pixels per eye unit (half the corner distance) and the corners' midpoint
    p["scale"] = (W / opts.crop_scale / 2.0) * (1 + _n(gen, n, opts.scale_jitter).clamp(-2.5 * opts.scale_jitter, 2.5 * opts.scale_jitter))
    p["cx"] = (W - 1) / 2 + _n(gen, n, opts.center_jitter * W).clamp(-0.08 * W, 0.08 * W)
    p["cy"] = (H - 1) / 2 + _n(gen, n, opts.center_jitter * W).clamp(-0.08 * W, 0.08 * W)
    # eyeball (eye units): radius, centre, iris and pupil
    p["r_eye"] = _u(gen, n, 0.76, 0.9)
    p["ex"] = _u(gen, n, -0.06, 0.08)
    p["ey"] = _u(gen, n, -0.12, 0.04)
    p["iris_frac"] = _u(gen, n, 0.46, 0.54)   # iris radius / eyeball radius
    if opts.anatomy == "anatomical":
        # keep the iris radius r_eye * iris_frac; set the rotation radius of the iris
        # plane's centre, r_eye * sqrt(1 - iris_frac^2), to ROTATION_RADIUS (mapped from
        # the same random draw, so the random stream is unchanged)
        ri = p["r_eye"] * p["iris_frac"]
        lo, hi = ROTATION_RADIUS
        rot = lo + (p["r_eye"] - 0.76) / 0.14 * (hi - lo)
        p["r_eye"] = torch.sqrt(rot * rot + ri * ri)
        p["iris_frac"] = ri / p["r_eye"]
    p["pupil_frac"] = _u(gen, n, 0.24, 0.5)   # pupil radius / iris radius
    p["iris_rgb"] = _pick(gen, n, _IRIS, _IRIS_W) * (1 + _n(gen, n * 3, 0.08).view(n, 3)).clamp(0.6, 1.4)
    p["iris_inner"] = _u(gen, n, 0.0, 1.0)     # strength of the lighter / warmer ring around the pupil
    p["iris_bright"] = _u(gen, n, 0.85, 1.35)
    p["limbus"] = _u(gen, n, 0.35, 0.8)        # darkening of the limbal ring
    p["sclera_rgb"] = torch.stack([_u(gen, n, 0.86, 0.95), _u(gen, n, 0.80, 0.88), _u(gen, n, 0.74, 0.84)], 1)
    p["sclera_shade"] = _u(gen, n, 0.35, 0.7)  # darkening towards the corners
    p["veins"] = _u(gen, n, 0.0, 0.6)
    # eyelids (eye units): apex heights at straight gaze, response to the vertical gaze, shapes
    p["up0"] = _u(gen, n, 0.36, 0.6)
    p["lo0"] = _u(gen, n, 0.22, 0.38)
    p["up_follow"] = _u(gen, n, 0.55, 0.85)     # upper lid moves this fraction of the iris's vertical motion
    p["lo_follow"] = _u(gen, n, 0.12, 0.3)
    p["up_skew"] = _u(gen, n, 0.0, 0.35)        # apex of the upper lid shifted to the inner side
    p["lo_skew"] = _u(gen, n, -0.35, 0.0)       # lowest point of the lower lid to the outer side
    p["up_pow"] = _u(gen, n, 0.55, 0.9)
    p["lo_pow"] = _u(gen, n, 0.7, 1.1)
    p["lid_shadow"] = _u(gen, n, 0.25, 0.6)
    p["lid_shadow_w"] = _u(gen, n, 0.08, 0.22)
    p["lash_len"] = _u(gen, n, 0.07, 0.2)
    p["lash_dark"] = _u(gen, n, 0.55, 0.95)
    p["lash_line"] = _u(gen, n, 0.03, 0.07) + (torch.rand(n, generator=gen) < opts.makeup_prob).float() * 0.04
    p["lash_freq"] = _u(gen, n, 28.0, 48.0)
    p["lash_phase"] = _u(gen, n, 0.0, 6.2832)
    p["caruncle_x"] = _u(gen, n, 0.8, 0.92)
    p["caruncle_r"] = _u(gen, n, 0.09, 0.15)
    p["caruncle_rgb"] = torch.stack([_u(gen, n, 0.72, 0.86), _u(gen, n, 0.42, 0.55), _u(gen, n, 0.42, 0.55)], 1)
    # skin
    t = _u(gen, n, 0.0, 1.0) ** 1.2 * (_SKIN.shape[0] - 1)
    i0 = t.floor().long().clamp(max=_SKIN.shape[0] - 2)
    f = (t - i0.float()).unsqueeze(1)
    skin = _SKIN[i0] * (1 - f) + _SKIN[i0 + 1] * f
    skin = skin * (1 + _n(gen, n * 3, 0.03).view(n, 3))
    p["skin_rgb"] = torch.cummin(skin, 1).values  # skin keeps R >= G >= B (no green or violet skin)
    p["skin_tex"] = _u(gen, n, 0.03, 0.09)
    p["wrinkles"] = _u(gen, n, 0.0, 1.0) ** 2
    p["wrinkle_freq"] = _u(gen, n, 9.0, 16.0)
    p["wrinkle_phase"] = _u(gen, n, 0.0, 6.2832)
    p["crease_h"] = _u(gen, n, 0.22, 0.45)   # crease height above the highest lid position
    p["crease_dark"] = _u(gen, n, 0.1, 0.35)
    p["under_dark"] = _u(gen, n, 0.0, 0.25)
    p["bulge"] = _u(gen, n, 0.2, 0.6)
    # eyebrow
    p["brow"] = (torch.rand(n, generator=gen) < opts.brow_prob).float()
    p["brow_y"] = _u(gen, n, 1.25, 1.7)
    p["brow_w"] = _u(gen, n, 0.18, 0.4)
    p["brow_curve"] = _u(gen, n, 0.05, 0.25)
    p["brow_slope"] = _u(gen, n, -0.15, 0.1)
    p["brow_dark"] = _u(gen, n, 0.35, 0.85)
    p["brow_freq"] = _u(gen, n, 30.0, 60.0)
    # glasses: an ellipse around the eye whose rim crosses the patch
    p["glasses"] = (torch.rand(n, generator=gen) < opts.glasses_prob).float()
    p["gl_cx"] = _u(gen, n, -0.4, 0.3)
    p["gl_cy"] = _u(gen, n, -0.2, 0.3)
    p["gl_rx"] = _u(gen, n, 1.7, 2.4)
    p["gl_ry"] = _u(gen, n, 1.1, 1.6)
    p["gl_w"] = _u(gen, n, 0.02, 0.07)
    p["gl_rgb"] = torch.where(torch.rand(n, 1, generator=gen) < 0.6, _u(gen, n, 0.03, 0.15).unsqueeze(1).expand(n, 3),
                              torch.stack([_u(gen, n, 0.4, 0.8)] * 3, 1))
    # light: direction (towards the light, camera at +z), colour, ambient
    az = _u(gen, n, -math.pi, math.pi)
    el = _u(gen, n, 0.15, 0.75)  # sine of the angle away from the view axis
    p["light"] = torch.stack([el * torch.cos(az), el * torch.sin(az) - 0.25 * el, torch.sqrt(1 - el ** 2)], 1)
    p["light"] = p["light"] / p["light"].norm(dim=1, keepdim=True)
    temp = _n(gen, n, 0.04)
    p["light_rgb"] = torch.stack([1 + temp, 1 + 0.2 * temp, 1 - temp], 1) * (1 + _n(gen, n * 3, 0.02).view(n, 3))
    p["ambient"] = _u(gen, n, 0.45, 0.75)
    p["glint"] = _u(gen, n, 0.5, 1.0)
    p["glint_r"] = _u(gen, n, 0.035, 0.07)
    # camera
    p["exposure"] = torch.exp2(_u(gen, n, -0.7, 0.45))
    p["blur"] = _u(gen, n, 0.0, opts.blur_max) if opts.camera else torch.zeros(n)
    p["noise"] = _u(gen, n, 0.002, opts.noise_max) if opts.camera else torch.zeros(n)
    p["jpeg_q"] = torch.where(torch.rand(n, generator=gen) < opts.jpeg_prob, _u(gen, n, 35.0, 95.0), torch.zeros(n))
    if not opts.camera:
        p["jpeg_q"] = torch.zeros(n)
    p["saturation"] = _u(gen, n, 0.65, 1.05)
    return p


def sample_noise_fields(gen, n) -> Dict[str, torch.Tensor]:
    """Low-resolution random fields that the renderer upsamples into textures."""
    return {
        "skin1": torch.randn(n, 2, 6, 8, generator=gen),
        "skin2": torch.randn(n, 1, 14, 18, generator=gen),
        "skin3": torch.randn(n, 1, 30, 38, generator=gen),
        "veins": torch.randn(n, 1, 7, 9, generator=gen),
        # iris in polar coordinates (radius x angle), the last angle column repeats the first
        "iris": torch.randn(n, 2, 5, 64, generator=gen),
        "lash": torch.randn(n, 1, 1, 48, generator=gen),
        "brow": torch.randn(n, 1, 6, 40, generator=gen),
    }
