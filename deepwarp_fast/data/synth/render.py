"""One batch of pairs from its parameters: the skin at the output resolution, the
window that holds everything the gaze changes (sized from each sample's lids) rendered at
``supersample`` x and area-reduced, composited as skin * T + E, then the glasses frame
and the light's colour on top."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from .geometry import _eye_coords, derived_params, eye_to_patch, lid_curves
from .options import SynthOptions
from .shading import _sm, _v, render_eye, render_skin


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
