"""A procedural renderer of eye-region image pairs: the same eye looking in two directions.

Each pair shares the eye, skin, lighting, crop and camera; only the gaze (and the
eyelids' response to it) differs. Everything is vectorised over the batch with
torch and rendered at ``supersample`` times the patch size, then area-downsampled.

Convention (SPEC.md):
  * the canonical eye is the one on the image's LEFT (the person's right eye, dlib
    36-41): outer corner (anchor 0) on the patch's left, inner corner (anchor 3, with
    the caruncle) on the right;
  * anchors are (x, y) in patch pixels, pixel centres at integers, 0..W-1 / 0..H-1:
    outer corner, two upper-lid points, inner corner, two lower-lid points (dlib
    36..41 order), then the pupil centre;
  * angles are (vertical, horizontal) degrees; vertical > 0 looks up (smaller y),
    horizontal > 0 looks towards the image's right (larger x). ``angles`` =
    target gaze - input gaze;
  * tilt is the head roll in degrees: the angle of the line from the outer to the
    inner corner, atan2(dy, dx) in image coordinates (y down), so tilt > 0 has the
    inner corner lower. "Hard" samples have |tilt| > 8 degrees.
  * crop: the corner distance is ``width / crop_scale`` pixels (crop_scale = 2.0, as
    DeepWarpConfig), jittered like real landmark noise; the corners' midpoint is near
    the patch centre; pixels are square.

Internally the eye lives in an "eye frame" (u, v): corners at (-1, 0) and (+1, 0),
v pointing down, one unit = half the corner distance. A pixel maps to the eye frame by
undoing the crop's translation, scale and roll.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Union

import torch
import torch.nn.functional as F

from .camera import apply_camera

ANATOMIES = ("v1", "anatomical")
# Iris-centre rotation radius in eye units (half the corner distance) for "anatomical":
# 12.5 mm / 15 mm = 0.833, jittered +-7%.
ROTATION_RADIUS = (0.78, 0.89)
HARD_TILT = 8.0  # degrees; |tilt| above this is a "hard" sample (the paper's split)

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


@dataclass(frozen=True)
class SynthOptions:
    """Rendering options; every field can be passed to :func:`render_pairs` by name."""

    supersample: int = 2            # render at this multiple of the patch size, then area-downsample
    crop_scale: float = 2.0         # patch width / corner distance (DeepWarpConfig.crop_scale)
    scale_jitter: float = 0.08      # relative std of the crop scale (landmark noise)
    center_jitter: float = 0.035    # std of the crop centre, in patch widths
    hard_tilt_max: float = 20.0     # |tilt| of hard samples is uniform in (8, hard_tilt_max)
    easy_tilt_std: float = 3.0      # tilt of easy samples: normal, clipped to +-8
    brow_prob: float = 0.45         # an eyebrow enters the top of the patch
    glasses_prob: float = 0.08      # a glasses frame crosses the patch
    makeup_prob: float = 0.1        # darker lash line
    camera: bool = True             # blur, noise, JPEG, exposure (off: the clean render)
    jpeg_prob: float = 0.6          # fraction of samples JPEG-compressed (quality 35..95)
    blur_max: float = 0.9           # max Gaussian blur sigma, output pixels
    noise_max: float = 0.03         # max sensor noise std
    return_layers: bool = False     # also return masks (for tests and previews)
    # "v1": the original eyeball (the iris centre turns on ~0.72 eye units, i.e. it moves
    # ~0.36 sin(angle) eye widths); "anatomical": the iris centre turns on a radius of
    # 12.5 mm in a ~30 mm eye opening (0.42 sin(angle) eye widths, issue 12), with the
    # same iris sizes. The default stays "v1" so held-out numbers stay comparable.
    anatomy: str = "v1"

    @classmethod
    def from_kwargs(cls, **kw) -> "SynthOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kw) - names)
        if unknown:
            raise TypeError(f"render_pairs got unknown option(s) {unknown}; known options: {sorted(names)}")
        opts = cls(**kw)
        if opts.supersample < 1 or int(opts.supersample) != opts.supersample:
            raise ValueError(f"supersample must be a positive integer, got {opts.supersample}")
        if opts.crop_scale <= 0:
            raise ValueError(f"crop_scale must be positive, got {opts.crop_scale}")
        if opts.anatomy not in ANATOMIES:
            raise ValueError(f"anatomy must be one of {ANATOMIES}, got {opts.anatomy!r}")
        return opts


# ----------------------------------------------------------------------------- sampling

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


# ----------------------------------------------------------------------------- geometry

def gaze_vector(g: torch.Tensor) -> torch.Tensor:
    """(..., 2) (vertical, horizontal) degrees -> unit vectors (..., 3) in camera axes
    (x right, y down, z towards the camera)."""
    v = torch.deg2rad(g[..., 0])
    h = torch.deg2rad(g[..., 1])
    return torch.stack([torch.cos(v) * torch.sin(h), -torch.sin(v), torch.cos(v) * torch.cos(h)], -1)


def _rot_xy(vec: torch.Tensor, ang: torch.Tensor) -> torch.Tensor:
    """Rotate the x, y components of (..., 3) vectors by ``ang`` radians (z unchanged)."""
    c, s = torch.cos(ang), torch.sin(ang)
    x, y = vec[..., 0], vec[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y, vec[..., 2]], -1)


def lid_heights(p, gaze_head: torch.Tensor):
    """Apex heights (eye units, positive = away from the corner line) of the upper and
    lower lids for head-frame gaze vectors (B, P, 3). The lids follow the vertical gaze:
    looking up raises both (the upper one a lot), looking down lowers them."""
    r = p["r_eye"].unsqueeze(1)
    dy = gaze_head[..., 1]  # < 0 looking up
    rise = -dy * r          # vertical iris displacement, > 0 up
    up = (p["up0"].unsqueeze(1) + p["up_follow"].unsqueeze(1) * rise).clamp(min=0.06)
    lo = (p["lo0"].unsqueeze(1) - p["lo_follow"].unsqueeze(1) * rise).clamp(min=0.04)
    # the lids never cross: keep a sliver of opening
    return up, lo


def _lid_shape(u, skew, pw):
    """Lid profile in [0, 1] through the corners u = +-1 (0 there, ~1 at the apex)."""
    base = (1 - u * u).clamp(min=0)
    return base.pow(pw) * (1 + skew * u)


def lid_curves(u, p, up, lo):
    """v of the upper (negative) and lower (positive) lid at eye-frame abscissae ``u``.
    u: (B, P|1, ...); up, lo: (B, P) apex heights."""
    extra = u.ndim - 2
    def e(t):
        return t.view(t.shape + (1,) * extra)
    v_up = -e(up) * _lid_shape(u, e(p["up_skew"].unsqueeze(1)), e(p["up_pow"].unsqueeze(1)))
    v_lo = e(lo) * _lid_shape(u, e(p["lo_skew"].unsqueeze(1)), e(p["lo_pow"].unsqueeze(1)))
    return v_up, v_lo


def anchors_from_params(p) -> torch.Tensor:
    """The seven anchors (B, 2, 7, 2) in patch pixels of both images of each pair (from
    :func:`derived_params`): lid points at u = -1, -1/3, 1/3, 1 (upper) and 1/3, -1/3
    (lower), then the pupil centre (the centre of the iris plane's disc)."""
    up, lo = p["up"], p["lo"]
    B, P = up.shape
    u = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3]).view(1, 1, 6).expand(B, P, 6)
    v_up, v_lo = lid_curves(u, p, up, lo)
    v = torch.cat([torch.zeros(B, P, 1), v_up[..., 1:3], torch.zeros(B, P, 1), v_lo[..., 4:6]], -1)
    gh = p["gaze_head"]
    cosa = torch.sqrt(1 - p["iris_frac"] ** 2).unsqueeze(1)
    r = p["r_eye"].unsqueeze(1)
    pu = p["ex"].unsqueeze(1) + r * cosa * gh[..., 0]
    pv = p["ey"].unsqueeze(1) + r * cosa * gh[..., 1]
    u = torch.cat([u, pu.unsqueeze(-1)], -1)
    v = torch.cat([v, pv.unsqueeze(-1)], -1)
    return eye_to_patch(p, u, v)


def eye_to_patch(p, u, v):
    """Eye-frame (u, v) (B, P, K) -> patch pixels (B, P, K, 2)."""
    t = torch.deg2rad(p["tilt"]).view(-1, 1, 1)
    c, s = torch.cos(t), torch.sin(t)
    sc = p["scale"].view(-1, 1, 1)
    x = p["cx"].view(-1, 1, 1) + sc * (c * u - s * v)
    y = p["cy"].view(-1, 1, 1) + sc * (s * u + c * v)
    return torch.stack([x, y], -1)


# ----------------------------------------------------------------------------- rendering

def _exp(x: torch.Tensor) -> torch.Tensor:
    """exp with the argument clamped at -40: results below ~1e-38 are denormal floats,
    which are ~100x slower on x86 CPUs (and invisible in an image)."""
    return torch.exp(x.clamp(min=-40.0))


def _sm(x):
    """Anti-aliased step: x is a signed distance in render pixels (> 0 inside)."""
    return (x + 0.5).clamp(0.0, 1.0)


def _v(p, k, nd=2):
    """A per-sample parameter (B,) -> (B, 1, 1, 1) for broadcasting over (B, P, h, w)."""
    t = p[k]
    return t.view(t.shape[0], 1, *([1] * nd))


def _eye_coords(p, X, Y):
    """Eye-frame coordinates (B, 1, h, w) of patch positions X (B, 1, 1, w) and Y (B, 1, h, 1)
    (patch pixels, pixel centres at integers)."""
    B = p["scale"].shape[0]
    t = torch.deg2rad(p["tilt"]).view(B, 1, 1, 1)
    c, sn = torch.cos(t), torch.sin(t)
    isc = 1.0 / p["scale"].view(B, 1, 1, 1)
    dx = (X - p["cx"].view(B, 1, 1, 1)) * isc
    dy = (Y - p["cy"].view(B, 1, 1, 1)) * isc
    return c * dx + sn * dy, -sn * dx + c * dy


def _grid(u, v, su, sv):
    """A grid_sample grid (B, h, w, 2) for eye-frame positions u, v (B, 1, h, w) on a field
    spanning u in [-su, su], v in [-sv, sv]."""
    B = u.shape[0]
    h, w = u.shape[-2:]
    g = torch.empty(B, h, w, 2, device=u.device, dtype=u.dtype)
    torch.mul(u.expand(B, 1, h, w)[:, 0], 1.0 / su, out=g[..., 0])
    torch.mul(v.expand(B, 1, h, w)[:, 0], 1.0 / sv, out=g[..., 1])
    return g


def _tex(noise, u, v, su, sv, grid=None):
    """Sample a low-resolution noise field (B, C, h, w) at eye-frame positions: the field
    spans u in [-su, su], v in [-sv, sv] (bilinear, border); or at a ready ``grid``."""
    if grid is None:
        grid = _grid(u, v, su, sv)
    return F.grid_sample(noise, grid, mode="bilinear", padding_mode="border", align_corners=False)


def render_skin(p, z, u, v, up_max, pxu):
    """The skin, shared by both images of a pair: (B, 3, h, w) colour and the diffuse
    shading (B, 1, h, w), at eye-frame positions u, v (B, 1, h, w); ``pxu`` is render
    pixels per eye unit (for anti-aliasing)."""
    B = u.shape[0]
    grid = _grid(u, v, 2.6, 2.2)
    t1 = _tex(z["skin1"], u, v, 2.6, 2.2, grid)
    tex = torch.add(t1[:, :1] * 0.35, _tex(z["skin2"], u, v, 2.6, 2.2, grid), alpha=0.3)
    tex.add_(_tex(z["skin3"], u, v, 2.6, 2.2, grid), alpha=0.4)
    # a height field (the eyeball's bulge under the lids, the sulcus under the brow),
    # shaded with the light
    uu = u * u
    v5 = v + 0.05
    gb = _exp(torch.add(uu * -0.55, v5 * v5, alpha=-1.6)).mul_(_v(p, "bulge"))
    vs = v + 1.05
    gs = _exp(torch.add(uu * -0.4, vs * vs, alpha=-6.0)).mul_(0.25)
    dhdu = torch.add(gb * -1.1, gs, alpha=-0.8).mul_(u)
    dhdv = torch.mul(gb, v5.mul_(-3.2)).addcmul_(gs, vs.mul_(-12.0))
    lx, ly, lz = _v(p, "lx"), _v(p, "ly"), _v(p, "lz")
    ndotl = (lz - dhdu * lx).sub_(dhdv * ly).mul_(torch.addcmul(dhdu * dhdu, dhdv, dhdv).add_(1).rsqrt_())
    amb = _v(p, "ambient")
    shade = ndotl.clamp_(min=0).mul_(1 - amb).add_(amb)
    # the lid crease above the highest lid position, wrinkles below and at the outer corner
    arc = (1 - uu * 0.72).clamp_(min=0).sqrt_()
    dc = torch.addcmul(v, up_max + _v(p, "crease_h"), arc).mul_(1.0 / 0.07)
    crease = _exp(-dc * dc).mul_(_v(p, "crease_dark")).mul_((1 - uu * 0.64).clamp_(min=0))
    fold = torch.sigmoid(dc).mul_(torch.sigmoid((v + 0.25) * -8.0))
    wd = torch.addcmul(v, _v(p, "lo0"), (1 - uu).clamp_(min=0), value=-1.0)
    wr = torch.cos(wd * _v(p, "wrinkle_freq") + _v(p, "wrinkle_phase")).mul_(torch.sigmoid((wd - 0.12) * 25)).mul_(_exp(uu * -0.5))
    cu = u + 1.2
    crow = torch.cos(torch.atan2(v, cu.clamp(max=-1e-3)).mul_(16.0)).mul_(_exp(torch.addcmul(cu * cu, v, v).mul_(-4.0)))
    crow.mul_(torch.sigmoid(cu * -12.0))
    wrinkle = wr.add_(crow, alpha=0.5).mul_(0.05 * _v(p, "wrinkles"))
    under = _exp(torch.add((u - 0.1).square_().mul_(-0.8), (v - 0.6).square_(), alpha=-5.0)).mul_(_v(p, "under_dark"))
    lum = torch.addcmul(wrinkle.add_(1), tex, _v(p, "skin_tex")).mul_(shade)
    lum.mul_(torch.add(crease.add_(under), fold, alpha=0.06).neg_().add_(1))
    red = t1[:, 1:2].clamp(min=0).mul_(0.05).mul_(lum)    # blotches of redness, never green
    rgb = p["skin_rgb"].view(B, 3, 1, 1)
    skin = torch.addcmul(lum * rgb, red, rgb * torch.tensor([1.0, -0.5, -0.5], device=u.device).view(1, 3, 1, 1))
    # eyebrow hair (a subset of samples)
    idx = (p["brow"] > 0).nonzero().flatten()
    if idx.numel():
        q = {k: p[k][idx] for k in ("brow_y", "brow_curve", "brow_slope", "brow_w", "brow_freq", "brow_dark", "skin_rgb")}
        bu, bv = u[idx], v[idx]
        yb = (_v(q, "brow_curve") * bu - _v(q, "brow_slope")).mul_(bu).sub_(_v(q, "brow_y"))
        db = (yb - bv).mul_(1.0 / _v(q, "brow_w"))
        hair = _tex(z["brow"][idx], bu, bv, 2.6, 2.2, grid[idx])
        strands = torch.addcmul(bv * 12, bu, _v(q, "brow_freq")).add_(hair, alpha=6.0).sin_().mul_(0.15).add_(0.85)
        ba = torch.sigmoid(db * 6 + 2).mul_(torch.sigmoid((1.6 - db) * 5)).mul_(strands)   # (0.7 + 0.3 (0.5 + 0.5 sin))
        ba.mul_(_v(q, "brow_dark")).mul_(torch.sigmoid((bu + 1.9) * 4))
        sk = skin[idx]
        skin[idx] = sk + ba * (q["skin_rgb"].view(-1, 3, 1, 1) * 0.25 * shade[idx] - sk)
    return skin, shade


def _pool(x: torch.Tensor, s: int) -> torch.Tensor:
    """Area reduction by s (B, C, h*s, w*s) -> (B, C, h, w)."""
    if s == 2:  # strided sums: faster than avg_pool2d or a 6-d mean for these sizes
        return (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.25
    return F.avg_pool2d(x, s)


def _bboxes(p, up, lo):
    """Per-sample boxes (output pixels, (B, 2) corners lo_xy, hi_xy) holding everything
    the gaze changes in either image of a pair: the opening, lids, lashes, 1 px margin."""
    B = up.shape[0]
    uu = torch.linspace(-1.06, 1.06, 13).view(1, 1, -1).expand(B, 2, -1)
    v_up, v_lo = lid_curves(uu, p, up, lo)
    lash = p["lash_len"].view(B, 1, 1) + 0.12
    pts = torch.cat([eye_to_patch(p, uu, v_up - lash), eye_to_patch(p, uu, v_lo + 0.12)], 2).view(B, -1, 2)
    return pts.min(1).values.floor() - 1, pts.max(1).values.ceil() + 1


def _window(p, up, lo, H, W):
    """A window size (hw, ww) common to the batch and per-sample offsets oy, ox (B,)
    (output pixels) covering each sample's :func:`_bboxes`."""
    lo_xy, hi_xy = _bboxes(p, up, lo)
    ww = int(min(W, (hi_xy[:, 0] - lo_xy[:, 0]).max().item() + 1))
    hw = int(min(H, (hi_xy[:, 1] - lo_xy[:, 1]).max().item() + 1))
    ox = lo_xy[:, 0].clamp(0, W - ww).long()
    oy = lo_xy[:, 1].clamp(0, H - hw).long()
    return hw, ww, oy, ox


def _iris_layer(p, s, ox, oy, hs, ws, pxu):
    """Iris and pupil of both images of each pair, rendered only in an (n x n) square
    around each iris of the window (B, 2, hs, ws). Returns (pa, ia, ilum, inner) as
    (B, 2, n * n) tensors: pupil alpha, iris alpha, iris luminance and the warmer ring
    around the pupil (the last two premultiplied by the iris alpha), and the squares'
    flat window indices idx (B, 2, n * n).

    The iris and pupil are discs in the plane at r*cos(a) along the gaze, seen through
    the cornea: orthographic rays are intersected with that plane, so they project as
    exact ellipses and the pupil anchor is the projection of the disc's centre."""
    B = ox.shape[0]
    device = ox.device
    r = _v(p, "r_eye")
    fi = _v(p, "iris_frac")
    ri = r * fi
    rad = int(math.ceil((p["r_eye"] * p["iris_frac"] * p["scale"]).max().item() * s)) + 2
    n = min(2 * rad + 1, hs, ws)
    # iris-plane centre of each image, in window render pixels
    gh = p["gaze_head"]                                              # (B, 2, 3)
    cosa = (1 - p["iris_frac"] ** 2).sqrt().view(B, 1)
    cu = p["ex"].view(B, 1) + p["r_eye"].view(B, 1) * cosa * gh[..., 0]
    cv = p["ey"].view(B, 1) + p["r_eye"].view(B, 1) * cosa * gh[..., 1]
    cxy = eye_to_patch(p, cu.unsqueeze(-1), cv.unsqueeze(-1))[..., 0, :]   # (B, 2, 2) patch px
    jx = (cxy[..., 0] - ox.view(B, 1).float() + 0.5) * s - 0.5
    jy = (cxy[..., 1] - oy.view(B, 1).float() + 0.5) * s - 0.5
    sx0 = (jx.round().long() - n // 2).clamp(0, ws - n)                     # (B, 2)
    sy0 = (jy.round().long() - n // 2).clamp(0, hs - n)
    ar = torch.arange(n, device=device, dtype=torch.float32)
    # every eye-frame quantity below is affine in the square's pixel (i, j): it is built
    # as f0 + fj * j + fi * i from per-image coefficients, one full-size add each
    X0 = ox.view(B, 1, 1, 1).float() + (sx0.view(B, 2, 1, 1).float() + 0.5) / s - 0.5
    Y0 = oy.view(B, 1, 1, 1).float() + (sy0.view(B, 2, 1, 1).float() + 0.5) / s - 0.5
    u0, v0 = _eye_coords(p, X0, Y0)                                   # (B, 2, 1, 1) at pixel (0, 0)
    du0, dv0 = u0 - _v(p, "ex"), v0 - _v(p, "ey")
    t = torch.deg2rad(p["tilt"]).view(B, 1, 1, 1)
    step = 1.0 / (p["scale"].view(B, 1, 1, 1) * s)                   # eye units per render pixel
    c, sn = torch.cos(t) * step, torch.sin(t) * step
    uj, ui, vj, vi = c, sn, -sn, c                                    # d(u, v) / d(j, i)
    arj, ari = ar.view(1, 1, 1, n), ar.view(1, 1, n, 1)

    def affine(alpha, beta, gamma):
        """alpha * du + beta * dv + gamma over the square (B, 2, n, n)."""
        f0 = alpha * du0 + beta * dv0 + gamma
        return (f0 + (alpha * uj + beta * vj) * arj) + (alpha * ui + beta * vi) * ari

    gx, gy, gz = (gh[..., i].view(B, 2, 1, 1) for i in range(3))
    gzc = gz.clamp(min=0.3)
    # the iris plane's depth zp = (r cos(a) - du gx - dv gy) / gz, and its in-plane basis
    # b1 = (gz, 0, -gx)/|.|, b2 = g x b1; qa, qb: in-plane coordinates in iris radii
    za, zb, zc = -gx / gzc, -gy / gzc, r * (1 - fi * fi).sqrt() / gzc
    nb = torch.rsqrt(gz * gz + gx * gx)
    b1x, b1z = gz * nb, -gx * nb
    b2x, b2y, b2z = gy * b1z, gz * b1x - gx * b1z, -gy * b1x
    iri = 1.0 / ri
    qa = affine((b1x + b1z * za) * iri, b1z * zb * iri, b1z * zc * iri)
    qb = affine((b2x + b2z * za) * iri, (b2y + b2z * zb) * iri, b2z * zc * iri)
    qr = torch.hypot(qa, qb)                                         # 1 at the limbus
    theta = torch.atan2(qb, qa)
    grid = torch.stack([theta.mul_(1 / math.pi), qr.clamp(max=1.2).mul_(2 / 1.2).sub_(1)], -1)
    iz = torch.cat([p["iris_tex"], p["iris_tex"][..., :1]], -1)
    it = F.grid_sample(iz, grid.view(B, 2 * n, n, 2), mode="bilinear", padding_mode="border", align_corners=True)
    it = it.view(B, 2, 2, n, n)
    fib, hue = it[:, 0], it[:, 1]
    pf = _v(p, "pupil_frac")
    radial = ((qr - pf) * (1.0 / (1 - pf))).clamp_(0, 1)
    inner = _exp(radial.square_().mul_(-1 / 0.35 ** 2)).mul_(_v(p, "iris_inner"))
    lr = ((qr - 0.78) * (1 / 0.22)).clamp_(0, 1)
    limbal = lr.sqrt().mul_(lr).mul_(-_v(p, "limbus")).add_(1)       # 1 - limbus * lr^1.5
    nl = affine(_v(p, "lx") / r, _v(p, "ly") / r, _v(p, "lz") * 0.8)
    ilum = (fib * 0.28 + hue * 0.12 + 1).mul_(_v(p, "iris_bright")).mul_(limbal).mul_(nl.clamp_(0, 1).mul_(0.2).add_(0.8))
    front = (gz > 0.05).float()
    rpx = ri * pxu
    pa = _sm((pf - qr) * rpx).mul_(front)
    ia = _sm((1 - qr) * rpx).mul_(front)
    idx = (sy0.view(B, 2, 1, 1) + ar.long().view(1, 1, n, 1)) * ws + sx0.view(B, 2, 1, 1) + ar.long().view(1, 1, 1, n)
    m = n * n
    return pa.view(B, 2, m), ia.view(B, 2, m), ilum.mul_(ia).view(B, 2, m), inner.mul_(ia).view(B, 2, m), idx.view(B, 2, m)


def render_eye(p, z, u, v, up, lo, pxu, s, ox, oy, layers: bool = False):
    """The gaze-dependent layer at the window's eye-frame positions u, v (B, 1, h, w) for
    both images of each pair (up, lo: (B, 2) lid apex heights). Returns the skin's
    transmittance T (B, 2, h, w) and the premultiplied colour E (B, 3, 2, h, w) of
    everything in front of it (eyeball, lids' shadow, lashes), so that
    image = skin * T + E; and masks (B, 2, h, w).

    The window is composited without the iris (sclera everywhere behind the lids); the
    iris and pupil are then added as a correction inside the small squares that hold them."""
    B = u.shape[0]
    h, w = u.shape[-2:]
    r = _v(p, "r_eye")
    # shared by the pair (B, 1, h, w): the eyeball sphere's shading, corner darkening,
    # veins, caruncle, glint, the lid profiles, lash density
    ir = 1.0 / r
    nx, ny = (u - _v(p, "ex")).mul_(ir), (v - _v(p, "ey")).mul_(ir)
    lx, ly, lz = _v(p, "lx"), _v(p, "ly"), _v(p, "lz")
    nz = (1 - nx * nx - ny * ny).clamp_(min=0.02).sqrt_()
    sdotl = (nx.mul_(lx).add_(ny.mul_(ly))).add_(nz * lz).clamp_(min=0)
    au = u.abs()
    corner = (au - 0.35).clamp_(min=0).mul_(1 / 0.65).square_()
    amb = _v(p, "ambient")
    sc_lum = (sdotl * (1 - amb) + amb).mul_(1 - _v(p, "sclera_shade") * corner).mul_(nz.mul_(0.45 * 1.1).add_(0.55 * 1.1))
    vn = _tex(p["veins_tex"], u, v, 1.2, 0.8)
    vein = _exp(vn.square_().mul_(-120.0)).mul_(_v(p, "veins") * (corner.add_(0.2)))
    car = _exp(((u - _v(p, "caruncle_x")).square_() + (v * 1.6).square_()).mul_(-1.0 / _v(p, "caruncle_r") ** 2))
    gd2 = ((u - _v(p, "glint_u")).square_() + (v - _v(p, "glint_v")).square_()).mul_(1.0 / _v(p, "glint_r") ** 2)
    glint = _exp(gd2.square_().neg_()).mul_(_v(p, "glint"))
    open_u = _sm((1.0 - au) * pxu)
    shape_up = _lid_shape(u, _v(p, "up_skew"), _v(p, "up_pow"))
    shape_lo = _lid_shape(u, _v(p, "lo_skew"), _v(p, "lo_pow"))
    density = ((1 - au).clamp_(min=0).sqrt_() * (1.1 - 0.35 * u)).clamp_(max=1)
    lash_base = u * _v(p, "lash_freq") + _v(p, "lash_phase")
    car_lum = car * (sdotl.mul_(0.25).add_(0.75))
    ncar = 1 - car
    nglint = 1 - glint
    nv = -v
    # per image (B, 2, h, w): the lids. a_up: eye units above the upper lid; b_lo: eye
    # units above the lower lid; D_* = the same in render pixels + 0.5 (for _sm)
    upv = up.view(B, 2, 1, 1)
    lov = lo.view(B, 2, 1, 1)
    a_up = torch.addcmul(nv, upv, shape_up, value=-1.0)
    b_lo = torch.addcmul(nv, lov, shape_lo)
    D_up = (a_up * -pxu).add_(0.5)
    D_lo = (b_lo * pxu).add_(0.5)
    opening = D_up.clamp(0, 1).mul_(D_lo.clamp(0, 1)).mul_(open_u)
    # (|a_up| / lid_shadow_w stays below ~30 in the window: no denormal exp)
    shadow = (a_up * (1.0 / _v(p, "lid_shadow_w"))).clamp_(max=0).exp_().mul_(-_v(p, "lid_shadow")).add_(1)
    shadow.mul_((b_lo * 3.125).add_(0.75).clamp_(0.75, 1))         # 1 - 0.25 clamp(1 - 12.5 b_lo, 0, 1)
    strands = torch.add(lash_base, a_up, alpha=12.0).sin_().mul_(0.5).add_(0.5).square_()
    la = (a_up * (-1.0 / _v(p, "lash_line"))).add_(1).clamp_(0, 1).mul_((2.0 - D_up).clamp_(0, 1))
    la.addcmul_(strands.mul_((a_up * (-1.0 / _v(p, "lash_len"))).add_(1).clamp_(0, 1)), (1 - D_up).clamp_(0, 1))
    la = la.mul_(density).clamp_(max=1).mul_(_v(p, "lash_dark"))
    Wt = torch.empty(B, 6, 2, h, w, device=u.device)
    lla = torch.mul((b_lo * 25.0).add_(1).clamp_(0, 1).mul_((1.5 - D_lo).clamp_(0, 1)), density.mul_(0.35),
                    out=Wt[:, 5])                       # lower lash line
    # premultiplied weights of each colour, front to back
    nlla = 1 - lla
    q = (1 - la).mul_(nlla)
    M = opening * q
    T = q.sub_(M)
    Me = M * shadow.mul_(nglint)
    torch.mul(Me, car_lum, out=Wt[:, 3])                # caruncle
    Mn = Me.mul_(ncar)                                  # not the caruncle: the sclera (the iris comes later)
    torch.mul(Mn, sc_lum, out=Wt[:, 0])                 # sclera
    torch.mul(Wt[:, 0], vein, out=Wt[:, 1])             # vein tint (a negative colour)
    torch.mul(M, glint, out=Wt[:, 2])                   # glint
    torch.mul(la, nlla, out=Wt[:, 4])                   # lashes
    cols = p["eye_colours"]                             # (B, 9, 3)
    E = torch.bmm(cols[:, [0, 1, 6, 5, 7, 8]].transpose(1, 2), Wt.view(B, 6, -1)).view(B, 3, 2, h * w)
    # the iris and pupil: replace the sclera by them inside each image's square
    pa, ia, ilum, inner, idx = _iris_layer(p, s, ox, oy, h, w, pxu)
    m = idx.shape[-1]
    g = Wt.view(B, 6, 2, h * w)
    w0 = g[:, 0].gather(2, idx)
    w1 = g[:, 1].gather(2, idx)
    mn = Mn.view(B, 2, h * w).gather(2, idx)
    f = pa * ia - pa - ia                               # (1 - pa)(1 - ia) - 1
    mr = mn - mn * pa                                   # behind the pupil: the iris (or the sclera)
    dW = torch.stack([w0 * f, w1 * f, mr * ilum, mr * inner, mn * pa], 1)  # (B, 5, 2, m)
    dE = torch.bmm(cols[:, [0, 1, 2, 3, 4]].transpose(1, 2), dW.view(B, 5, 2 * m)).view(B, 3, 2, m)
    E.scatter_add_(3, idx.unsqueeze(1).expand(B, 3, 2, m), dE)
    E = E.view(B, 3, 2, h, w)
    masks = {}
    if layers:
        op = opening.view(B, 2, h * w)
        for k, a in (("pupil", pa), ("iris", ia)):
            full = torch.zeros(B, 2, h * w, device=u.device)
            full.scatter_(2, idx, a)
            masks[k] = (full * op).view(B, 2, h, w)
        masks = {"opening": opening, **masks}
    return T, E, masks


def render_batch(p: Dict[str, torch.Tensor], z: Dict[str, torch.Tensor], H: int, W: int, opts: SynthOptions,
                 device, layers: bool = False, derived: bool = False) -> Dict[str, torch.Tensor]:
    """Render one batch of pairs from its parameters (``derived``: already passed through
    :func:`derived_params`); returns images (B, 2, 3, H, W) (before
    the camera) and, with ``layers``, masks (B, 2, H, W) at the output resolution.

    The skin (shared by the pair) is rendered at the output resolution; the window that
    holds everything the gaze changes is rendered at ``supersample`` x and area-reduced."""
    B = p["scale"].shape[0]
    s = int(opts.supersample)
    if not derived:
        p = derived_params(p)
    up, lo = p["up"], p["lo"]
    hw, ww, oy, ox = _window(p, up, lo, H, W)
    p = {k: t.to(device) for k, t in p.items()}
    z = {k: t.to(device) for k, t in z.items()}
    oy, ox = oy.to(device), ox.to(device)
    up, lo = p["up"], p["lo"]
    up_max = torch.maximum(up[:, 0], up[:, 1]).view(B, 1, 1, 1)
    # skin at the output resolution
    X = torch.arange(W, device=device, dtype=torch.float32).view(1, 1, 1, W)
    Y = torch.arange(H, device=device, dtype=torch.float32).view(1, 1, H, 1)
    u, v = _eye_coords(p, X, Y)
    skin, shade = render_skin(p, z, u, v, up_max, (p["scale"]).view(B, 1, 1, 1))
    # the gaze-dependent window, supersampled
    js = (torch.arange(ww * s, device=device, dtype=torch.float32) + 0.5) / s - 0.5
    is_ = (torch.arange(hw * s, device=device, dtype=torch.float32) + 0.5) / s - 0.5
    Xw = ox.view(B, 1, 1, 1).float() + js.view(1, 1, 1, -1)
    Yw = oy.view(B, 1, 1, 1).float() + is_.view(1, 1, -1, 1)
    uw, vw = _eye_coords(p, Xw, Yw)
    p["iris_tex"], p["veins_tex"] = z["iris"], z["veins"]
    T, E, masks = render_eye(p, z, uw, vw, up, lo, (p["scale"] * s).view(B, 1, 1, 1), s, ox, oy, layers)
    if s > 1:
        T = _pool(T, s)
        E = _pool(E.reshape(B, 3 * 2, hw * s, ww * s), s)
    E = E.view(B, 3, 2, hw, ww).transpose(1, 2)
    # paste: image = skin * T + E inside the window
    iy = (oy.view(B, 1, 1) + torch.arange(hw, device=device).view(1, hw, 1))
    ix = (ox.view(B, 1, 1) + torch.arange(ww, device=device).view(1, 1, ww))
    flat = (iy * W + ix).view(B, 1, 1, hw * ww)
    skin_flat = skin.view(B, 1, 3, H * W)
    sk_w = skin_flat.gather(3, flat.expand(B, 1, 3, -1)).view(B, 1, 3, hw, ww)
    win = sk_w * T.unsqueeze(2) + E
    img = skin_flat.expand(B, 2, 3, H * W).clone()
    img.scatter_(3, flat.expand(B, 2, 3, -1), win.view(B, 2, 3, hw * ww))
    img = img.view(B, 2, 3, H, W)
    # glasses frame on top (a subset): the rim of an ellipse around the eye, output resolution
    idx = (p["glasses"] > 0).nonzero().flatten()
    if idx.numel():
        q = {k: p[k][idx] for k in ("gl_cx", "gl_cy", "gl_rx", "gl_ry", "gl_w", "gl_rgb", "scale")}
        gu, gv = u[idx], v[idx]
        e = ((gu - _v(q, "gl_cx")) / _v(q, "gl_rx")) ** 2 + ((gv - _v(q, "gl_cy")) / _v(q, "gl_ry")) ** 2
        dist = (e.sqrt() - 1) * torch.minimum(_v(q, "gl_rx"), _v(q, "gl_ry"))
        pxo = q["scale"].view(-1, 1, 1, 1)
        ga = _sm((_v(q, "gl_w") - dist.abs()) * pxo).unsqueeze(1)
        lens = (1 - 0.08 * _sm(-dist * pxo)).unsqueeze(1)
        gl = q["gl_rgb"].view(-1, 1, 3, 1, 1) * (0.7 + 0.3 * shade[idx]).unsqueeze(1)
        im = img[idx] * lens
        img[idx] = im + ga * (gl - im)
    img = img * p["light_rgb"].view(B, 1, 3, 1, 1)
    out = {"images": img}
    if layers:
        def paste(m):
            if s > 1:
                m = _pool(m, s)
            full = torch.zeros(B, 2, H * W, device=device)
            full.scatter_(2, flat.view(B, 1, -1).expand(B, 2, -1), m.reshape(B, 2, -1))
            return full.view(B, 2, H, W)
        for k, m in masks.items():
            out[k] = paste(m)
        full = torch.zeros(B, 2, H * W, device=device)
        full.scatter_(2, flat.view(B, 1, -1).expand(B, 2, -1), (1 - T).reshape(B, 2, -1))
        out["eye_region"] = full.view(B, 2, H, W)
    return out


def derived_params(p: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Quantities computed from the sampled parameters (CPU, small): gazes in head axes,
    lid heights, the light in head axes, the glint's position, the eye layer's colours."""
    p = dict(p)
    B = p["scale"].shape[0]
    tilt = torch.deg2rad(p["tilt"])
    gaze_cam = gaze_vector(torch.stack([p["g0"], p["g1"]], 1))
    p["gaze_head"] = _rot_xy(gaze_cam, -tilt.unsqueeze(1))
    p["up"], p["lo"] = lid_heights(p, p["gaze_head"])
    L = _rot_xy(p["light"], -tilt)
    p["lx"], p["ly"], p["lz"] = L[:, 0], L[:, 1], L[:, 2]
    # the corneal highlight sits where the eyeball's normal is the half vector between
    # the light and the view: it stays with the light, not with the iris
    hn = torch.rsqrt(2 + 2 * p["lz"])
    p["glint_u"] = p["ex"] + p["r_eye"] * 0.62 * p["lx"] * hn
    p["glint_v"] = p["ey"] + p["r_eye"] * 0.62 * p["ly"] * hn
    sk = p["skin_rgb"]
    p["eye_colours"] = torch.stack([
        p["sclera_rgb"],
        -p["sclera_rgb"] * torch.tensor([0.05, 0.4, 0.4]),
        p["iris_rgb"],
        torch.tensor([0.25, 0.15, 0.03]).expand(B, 3),
        torch.full((B, 3), 0.03),
        p["caruncle_rgb"],
        p["light_rgb"] / p["light_rgb"].max(1, keepdim=True).values,
        sk * 0.12,
        sk * 0.45,
    ], 1)
    return p


def render_pairs(n: int, seed: int, *, height: int = 41, width: int = 51, gaze_range: float = 30.0,
                 max_redirect: float = 30.0, hard_fraction: float = 0.25, device: Union[str, torch.device] = "cpu",
                 angles=None, tilt=None, input_gaze=None, chunk: int = 32, threads: int = 1,
                 **options) -> Dict[str, torch.Tensor]:
    """Render ``n`` pairs of eye patches of the same eye looking in two directions.

    Returns a dict of tensors on ``device``:
      input (n, 3, H, W), target (n, 3, H, W): float32 in [0, 1];
      anchors (n, 7, 2): the INPUT image's anchors, patch pixels (x, y) (SPEC.md order);
      target_anchors (n, 7, 2): the target's (the lids move with the gaze);
      angles (n, 2): redirection (vertical, horizontal) degrees = target gaze - input gaze;
      input_gaze, target_gaze (n, 2): the gazes themselves (degrees, camera axes);
      tilt (n,): head roll in degrees (see the module docstring); hard = |tilt| > 8.

    ``angles`` ((n, 2) or (2,)) fixes the redirections and ``tilt`` (scalar or (n,)) the
    tilts; the input gaze is then drawn so both gazes stay within +-gaze_range. Without
    them, redirections are uniform in +-max_redirect (clipped to the range) and a
    ``hard_fraction`` of tilts are hard. ``options`` are :class:`SynthOptions` fields.
    The same (n, seed, arguments) give the same pixels on a given device.

    ``threads`` (CPU): 1 (default) renders the chunks of ``chunk`` pairs one after another,
    each op using torch's intra-op threads (``torch.set_num_threads``: 2 threads give ~1.6x
    on 2 idle cores); k > 1 renders them in k Python threads of single-threaded ops, which
    scales less on idle cores but does not stall when other jobs share the cores (no thread
    barrier per op); torch's thread setting is restored afterwards. Pixels do not depend
    on either.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if height < 4 or width < 4:
        raise ValueError(f"height and width must be at least 4, got {height}x{width}")
    if gaze_range <= 0 or max_redirect < 0:
        raise ValueError(f"gaze_range must be > 0 and max_redirect >= 0, got {gaze_range}, {max_redirect}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    opts = SynthOptions.from_kwargs(**options)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed) & 0xFFFFFFFFFFFF)
    g0, g1 = sample_gazes(gen, n, gaze_range, max_redirect, angles, input_gaze)
    tl = sample_tilts(gen, n, hard_fraction, opts) if tilt is None else _as_n(tilt, n, "tilt")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    # every random choice first (per chunk of the sample order), then render in chunks of
    # similar window size: a chunk's window is its largest sample's, so sorting saves work
    ps, zs = [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        cg = torch.Generator().manual_seed((int(seed) * 1_000_003 + start * 7919 + 17) & 0xFFFFFFFFFFFF)
        sl = slice(start, start + m)
        ps.append(sample_params(cg, m, height, width, opts, g0[sl], g1[sl], tl[sl]))
        zs.append(sample_noise_fields(cg, m))
    p_all = {k: torch.cat([q[k] for q in ps]) for k in ps[0]}
    z_all = {k: torch.cat([q[k] for q in zs]) for k in zs[0]}
    d_all = derived_params(p_all)
    lo_xy, hi_xy = _bboxes(d_all, d_all["up"], d_all["lo"])
    size = hi_xy - lo_xy
    order = torch.argsort(size[:, 1] * 64 + size[:, 0], stable=True)
    res = {"input": torch.empty(n, 3, height, width, device=device), "target": torch.empty(n, 3, height, width, device=device)}
    layer_keys = ("opening", "pupil", "iris", "eye_region") if opts.return_layers else ()
    for k in layer_keys:
        res[k] = torch.empty(n, 2, height, width, device=device)
    order_dev = order.to(device)

    d_sorted = {k: t[order] for k, t in d_all.items()}
    z_sorted = {k: t[order] for k, t in z_all.items()}

    def render_chunk(ci: int) -> None:
        sl = slice(ci * chunk, (ci + 1) * chunk)
        m = min(chunk, n - ci * chunk)
        p = {k: t[sl] for k, t in d_sorted.items()}
        z = {k: t[sl] for k, t in z_sorted.items()}
        r = render_batch(p, z, height, width, opts, device, layers=opts.return_layers, derived=True)
        img = r["images"]
        if opts.camera:
            ng = torch.Generator().manual_seed((int(seed) * 999_983 + ci * 104_729 + 5) & 0xFFFFFFFFFFFF)
            cam = {k: p[k].repeat_interleave(2).to(device) for k in ("exposure", "blur", "noise", "jpeg_q", "saturation")}
            noise = torch.randn(m, 1, 3, height, width, generator=ng).to(device).expand(m, 2, 3, height, width)
            img = apply_camera(img.reshape(m * 2, 3, height, width), cam, noise=noise.reshape(m * 2, 3, height, width))
            img = img.view(m, 2, 3, height, width)
        else:
            img = (img * p["exposure"].to(device).view(m, 1, 1, 1, 1)).clamp(0, 1)
        di = order_dev[sl]
        res["input"].index_copy_(0, di, img[:, 0])
        res["target"].index_copy_(0, di, img[:, 1])
        for k in layer_keys:
            res[k].index_copy_(0, di, r[k])

    n_chunks = (n + chunk - 1) // chunk
    workers = min(threads, n_chunks) if device.type == "cpu" else 1
    if workers == 1:
        for ci in range(n_chunks):
            render_chunk(ci)
    else:
        old = torch.get_num_threads()

        def work(ci):
            if torch.get_num_threads() != 1:   # this thread's intra-op setting
                torch.set_num_threads(1)
            render_chunk(ci)

        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="render_pairs") as ex:
                for f in [ex.submit(work, ci) for ci in range(n_chunks)]:
                    f.result()
        finally:
            torch.set_num_threads(old)
    anc = anchors_from_params(d_all)
    res["anchors"] = anc[:, 0].contiguous().to(device)
    res["target_anchors"] = anc[:, 1].contiguous().to(device)
    res["angles"] = (g1 - g0).to(device)
    res["input_gaze"] = g0.to(device)
    res["target_gaze"] = g1.to(device)
    res["tilt"] = tl.to(device)
    return res
