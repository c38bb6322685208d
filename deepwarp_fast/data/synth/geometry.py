"""The eye frame (u, v) and what is computed in it, on small per-sample tensors: gaze
vectors and their rotation into the head's axes, the lids' heights and curves, the
seven anchors in patch pixels, the maps between the eye frame and patch pixels, and
:func:`derived_params` (the quantities the renderer needs, computed once from the
sampled parameters)."""
from __future__ import annotations

from typing import Dict

import torch


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
