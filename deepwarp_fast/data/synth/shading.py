"""What each pixel looks like, at eye-frame positions: the skin (texture, a shaded
height field, crease, wrinkles, eyebrow hair) shared by both images of a pair, and the
gaze-dependent eye layer in front of it (sclera, veins, caruncle, glint, lids, lid
shadow, lashes; the iris and pupil as discs seen through the cornea)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .geometry import _eye_coords, _lid_shape, eye_to_patch


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
