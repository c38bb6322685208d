"""Gaze metrics on real frames, independent of the pipeline's own pupil estimator.

    from deepwarp_fast.face.metrics import locate_iris, track_iris, eye_box, gain, sharpness, mean_change

* :func:`locate_iris` finds the iris centre by fitting a circle to the limbus edge at
  the frame's native resolution: a seed from the gradient field (the point that most
  image gradients point away from, Timm & Barth 2011), then rays cast from the seed,
  a sub-pixel dark-to-bright edge on each ray, and a RANSAC + least-squares circle fit,
  twice. It shares nothing with ``face/pupil.py`` (a darkness-weighted disc search).
* :func:`track_iris` follows an iris found in one image into another (the same eye
  after a redirection): the input's iris as a band-passed template, a robust sub-pixel
  translation fit. The move it measures is not the difference of two independent fits.
* :func:`gain`: iris displacement along the commanded axis, in eye widths (corner to
  corner), over the anatomical expectation 0.42 sin(angle) (the iris turns on a
  radius of ~12.5 mm in an eye opening of ~30 mm).
* :func:`eye_box`, :func:`sharpness`, :func:`mean_change`: the eye boxes of a face,
  the Laplacian energy ratio output/input in them, the mean absolute change in them.

Conventions: images are (H, W, 3) RGB (uint8, or float in [0, 1]); points are (x, y)
frame pixels with pixel centres at integers; ``side`` is "image_left" (dlib 36-41) or
"image_right" (dlib 42-47), as in the face pipeline.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

# Iris centre displacement per sin(angle), in eye widths: 12.5 mm / 30 mm.
EXPECTED_PER_SIN = 0.42
# Iris radius, in eye widths (corner to corner): ~5.9 mm of ~30 mm, with slack.
IRIS_RADIUS_RANGE = (0.15, 0.27)
EYE_LANDMARKS = {"image_left": tuple(range(36, 42)), "image_right": tuple(range(42, 48))}
_LUMA = np.array([0.299, 0.587, 0.114])
# Eyes narrower than this (pixels, corner to corner) are resampled up to it first.
UPSAMPLE_TO = 48.0
# Limbus edge points must lie this far (eye widths) inside the eyelid outline of the
# six landmarks (negative: may lie outside it, for landmarks that sit inside the lids).
MIN_INSIDE = 0.02
EDGE_REFINE = True
# The tracked template: the iris disc out to this many radii (inside the eye opening).
TRACK_RADIUS = 1.3
# ... and the share of its pixels that must match (within half the template's spread).
MIN_TRACK_INLIERS = 0.5


def expected_displacement(angle_deg: float) -> float:
    """Anatomical iris displacement (eye widths) for a gaze change of ``angle_deg``."""
    return EXPECTED_PER_SIN * math.sin(math.radians(angle_deg))


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    scale = 1.0 / 255.0 if img.dtype == np.uint8 else (1.0 / 65535.0 if img.dtype == np.uint16 else 1.0)
    img = img.astype(np.float64) * scale
    if img.ndim == 3:
        img = img[..., :3] @ _LUMA if img.shape[2] >= 3 else img[..., 0]
    return img


def eye_points(landmarks68: np.ndarray, side: str) -> np.ndarray:
    if side not in EYE_LANDMARKS:
        raise ValueError(f"side must be one of {sorted(EYE_LANDMARKS)}, got {side!r}")
    return np.asarray(landmarks68, dtype=np.float64)[list(EYE_LANDMARKS[side])]


def eye_axes(eye6: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """(horizontal unit vector from the image-left corner to the image-right corner,
    'up' unit vector perpendicular to it, eye width in pixels) from six eyelid points
    (either dlib order: the corners are the points with the least and largest x)."""
    e = np.asarray(eye6, dtype=np.float64)
    a, b = e[int(np.argmin(e[:, 0]))], e[int(np.argmax(e[:, 0]))]
    d = b - a
    w = float(np.hypot(*d))
    if not w > 0:
        raise ValueError("degenerate eye: its corners coincide")
    ex = d / w
    up = np.array([ex[1], -ex[0]])  # rotate by -90 degrees in image axes (y down): points up
    return ex, up, w


def eye_box(landmarks68: np.ndarray, side: str, shape: Optional[Sequence[int]] = None,
            margin_x: float = 0.35, margin_y: float = 0.6) -> Tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer box (x1, y1 exclusive) around one eye: the six points'
    bounding box grown by ``margin_x`` / ``margin_y`` eye widths; clipped to ``shape``
    (H, W, ...) when given. It holds the lids and the skin the warp may move."""
    e = eye_points(landmarks68, side)
    _, _, w = eye_axes(e)
    x0 = int(math.floor(e[:, 0].min() - margin_x * w))
    x1 = int(math.ceil(e[:, 0].max() + margin_x * w)) + 1
    y0 = int(math.floor(e[:, 1].min() - margin_y * w))
    y1 = int(math.ceil(e[:, 1].max() + margin_y * w)) + 1
    if shape is not None:
        H, W = int(shape[0]), int(shape[1])
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    return x0, y0, x1, y1


# ----------------------------------------------------------------------------- iris

def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    H, W = img.shape
    x = np.clip(x, 0, W - 1.000001)
    y = np.clip(y, 0, H - 1.000001)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def _polygon_mask(poly: np.ndarray, shape: Tuple[int, int], grow: float = 0.0) -> np.ndarray:
    """Pixels inside the polygon (float distance test; ``grow`` > 0 grows it by that many px)."""
    import cv2

    H, W = shape
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    yy, xx = np.mgrid[0:H, 0:W]
    pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    d = np.array([cv2.pointPolygonTest(contour, (float(px), float(py)), True) for px, py in pts])
    return (d >= -grow).reshape(H, W)


def _seeds(gray: np.ndarray, inside: np.ndarray, r: float, k: int = 3):
    """Timm & Barth's means of gradients: the centre c maximising the mean of
    (d_i . g_i)^2 over gradient pixels i (d_i = unit vector from c to i, g_i the unit
    gradient where it points outwards), weighted by the darkness at c (the iris is dark)."""
    import cv2

    sm = cv2.GaussianBlur(gray, (0, 0), max(0.6, 0.25 * r))
    gx = cv2.Sobel(sm, cv2.CV_64F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(sm, cv2.CV_64F, 0, 1, ksize=3) / 8.0
    mag = np.hypot(gx, gy)
    H, W = gray.shape
    yy, xx = np.mgrid[0:H, 0:W]
    band = inside & (mag > np.percentile(mag[inside], 50)) if inside.any() else inside
    if band.sum() < 4:
        return []
    px, py = xx[band].astype(float), yy[band].astype(float)
    ux, uy = gx[band] / mag[band], gy[band] / mag[band]
    wgt = mag[band]
    cand = inside
    cx, cy = xx[cand].astype(float), yy[cand].astype(float)
    dx = px[None, :] - cx[:, None]
    dy = py[None, :] - cy[:, None]
    dist = np.hypot(dx, dy)
    ok = (dist > 0.5 * r) & (dist < 1.6 * r)
    dot = np.where(ok, (dx * ux[None] + dy * uy[None]) / np.maximum(dist, 1e-9), 0.0)
    score = (np.clip(dot, 0, None) ** 2 * wgt[None]).sum(1) / max(1e-9, wgt.sum())
    dark = 1.0 - cv2.GaussianBlur(gray, (0, 0), max(0.8, 0.5 * r))[cand]
    score = score * dark * dark
    seeds = []
    for i in np.argsort(-score):
        c = np.array([cx[i], cy[i]])
        if all(np.hypot(*(c - q)) > 0.8 * r for q in seeds):
            seeds.append(c)
        if len(seeds) == k:
            break
    return seeds


def _daugman(gray: np.ndarray, seeds, w: float, poly: np.ndarray, n_ang: int = 64):
    """Coarse centre and radius: the circle (around a seed) with the largest mean
    dark-to-bright radial step over its visible part (inside the eyelid outline), the
    integro-differential operator of Daugman (1993) restricted to the visible arc."""
    import cv2

    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    H, W = gray.shape
    yy, xx = np.mgrid[0:H, 0:W]
    pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)
    dist = np.array([cv2.pointPolygonTest(contour, (float(a), float(b)), True) for a, b in pts]).reshape(H, W)
    step = max(0.5, w / 60.0)
    span = 0.2 * w
    offs = np.arange(-span, span + 1e-9, step)
    radii = np.arange(IRIS_RADIUS_RANGE[0] * w, IRIS_RADIUS_RANGE[1] * w + 1e-9, step)
    ang = np.linspace(0, 2 * np.pi, n_ang, endpoint=False)
    cs, sn = np.cos(ang), np.sin(ang)
    dlt = 0.8
    best, best_score = None, -np.inf
    for sd in seeds:
        cx = (sd[0] + offs)[:, None, None, None]
        cy = (sd[1] + offs)[None, :, None, None]
        r = radii[None, None, :, None]
        X, Y = cx + r * cs, cy + r * sn
        vis = (_bilinear(dist, X, Y) >= MIN_INSIDE * w).astype(np.float64)
        diff = _bilinear(gray, cx + (r + dlt) * cs, cy + (r + dlt) * sn) - _bilinear(gray, cx + (r - dlt) * cs, cy + (r - dlt) * sn)
        # the visible arc must include both sides
        left = (vis * (cs < -0.5)).sum(-1) > 0
        right = (vis * (cs > 0.5)).sum(-1) > 0
        score = (vis * diff).sum(-1) / np.sqrt(np.maximum(vis.sum(-1), n_ang / 4) * n_ang)
        score = np.where(left & right, score, -np.inf)
        i = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[i] > best_score:
            best_score = float(score[i])
            best = (np.array([sd[0] + offs[i[0]], sd[1] + offs[i[1]]]), float(radii[i[2]]))
    return best


def _edge_points(gray: np.ndarray, centre: np.ndarray, r: float, poly: np.ndarray, min_inside: float, n_rays: int = 48,
                 lo: float = 0.45, hi: float = 1.7):
    """Sub-pixel dark-to-bright edges along rays from ``centre``, radius 0.45r..1.7r.
    Rays whose edge lands outside the (slightly grown) eye opening are dropped (lid edges)."""
    t = np.linspace(lo * r, hi * r, max(12, int(round((hi - lo) * r / 0.2))))
    ang = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    cs, sn = np.cos(ang), np.sin(ang)
    X = centre[0] + cs[:, None] * t[None]
    Y = centre[1] + sn[:, None] * t[None]
    prof = _bilinear(gray, X, Y)
    d = np.gradient(prof, t, axis=1)
    import cv2

    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    pts, strength = [], []
    H, W = gray.shape
    for k in range(n_rays):
        dk = d[k]
        peak = dk.max()
        if peak <= 0:
            continue
        js = [j for j in range(1, len(t) - 1) if dk[j] >= dk[j - 1] and dk[j] > dk[j + 1] and dk[j] >= 0.3 * peak]
        for j in sorted(js, key=lambda j: -dk[j])[:2]:
            a, b, c = dk[j - 1], dk[j], dk[j + 1]
            den = a - 2 * b + c
            off = 0.5 * (a - c) / den if den < 0 else 0.0
            rr = t[j] + float(np.clip(off, -1, 1)) * (t[1] - t[0])
            x, y = centre[0] + cs[k] * rr, centre[1] + sn[k] * rr
            if cv2.pointPolygonTest(contour, (float(x), float(y)), True) < min_inside:
                continue
            pts.append((x, y))
            strength.append(b)
    return np.array(pts).reshape(-1, 2), np.array(strength)


def _fit_circle(pts: np.ndarray, w: Optional[np.ndarray] = None) -> Tuple[np.ndarray, float]:
    """Weighted algebraic (Kasa) circle fit, then a few Gauss-Newton steps on the
    geometric distance. Returns (centre, radius)."""
    x, y = pts[:, 0], pts[:, 1]
    w = np.ones(len(pts)) if w is None else w
    A = np.stack([x, y, np.ones_like(x)], 1) * w[:, None]
    b = (x * x + y * y) * w
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    c = np.array([sol[0] / 2, sol[1] / 2])
    r = math.sqrt(max(1e-9, sol[2] + c @ c))
    for _ in range(10):
        d = pts - c
        dist = np.hypot(d[:, 0], d[:, 1])
        dist = np.maximum(dist, 1e-9)
        res = (dist - r) * w
        J = np.stack([-d[:, 0] / dist, -d[:, 1] / dist, -np.ones_like(dist)], 1) * w[:, None]
        step, *_ = np.linalg.lstsq(J, -res, rcond=None)
        c = c + step[:2]
        r = r + step[2]
        if np.abs(step).max() < 1e-6:
            break
    return c, float(r)


def _fit_centre(pts: np.ndarray, r: float, c0: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Centre of a circle of radius ``r`` through ``pts`` (Gauss-Newton from ``c0``)."""
    c = np.asarray(c0, dtype=np.float64).copy()
    for _ in range(10):
        d = pts - c
        dist = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
        res = (dist - r) * w
        J = np.stack([-d[:, 0] / dist, -d[:, 1] / dist], 1) * w[:, None]
        step, *_ = np.linalg.lstsq(J, -res, rcond=None)
        c += step
        if np.abs(step).max() < 1e-6:
            break
    return c


def _fit_disc(gray: np.ndarray, c0: np.ndarray, r0: float, dist: np.ndarray, w: float, blur: float):
    """Sub-pixel refinement: a robust least-squares fit of a blurred dark disc on a
    brighter background, I(x) = a - b * sigmoid((r - |x - c|) / s), to the pixels
    inside the eyelid outline near the coarse circle. The soft-L1 loss ignores corneal
    highlights and lashes. Returns (centre, radius) or None."""
    from scipy.optimize import least_squares

    H, W = gray.shape
    yy, xx = np.mgrid[0:H, 0:W]
    sel = (dist >= MIN_INSIDE * w) & (np.hypot(xx - c0[0], yy - c0[1]) <= 1.9 * r0)
    if sel.sum() < 12:
        return None
    X, Y, I = xx[sel].astype(float), yy[sel].astype(float), gray[sel]
    inside = np.hypot(X - c0[0], Y - c0[1]) < r0
    if not inside.any() or inside.all():
        return None
    a0 = float(np.median(I[~inside]))
    b0 = max(0.02, a0 - float(np.median(I[inside])))

    def resid(q):
        cx, cy, r, a, b, ls, pb, pf = q
        s_ = np.exp(ls)
        d = np.hypot(X - cx, Y - cy)
        iris = 1 / (1 + np.exp(-np.clip((r - d) / s_, -30, 30)))
        pupil = 1 / (1 + np.exp(-np.clip((pf * r - d) / s_, -30, 30)))
        return a - b * iris - pb * pupil - I

    # a concentric darker pupil (pb, pf: its darkening and radius fraction) where one shows
    q0 = np.array([c0[0], c0[1], r0, a0, b0, math.log(blur), 0.01, 0.4])
    lo = [c0[0] - 0.35 * r0, c0[1] - 0.35 * r0, max(IRIS_RADIUS_RANGE[0] * w, 0.85 * r0), -1.0, 0.0, math.log(0.3 * blur), 0.0, 0.15]
    hi = [c0[0] + 0.35 * r0, c0[1] + 0.35 * r0, min(IRIS_RADIUS_RANGE[1] * w, 1.15 * r0), 2.0, 2.0, math.log(4 * blur), 1.0, 0.7]
    q0 = np.clip(q0, np.array(lo) + 1e-6, np.array(hi) - 1e-6)
    try:
        res = least_squares(resid, q0, bounds=(lo, hi), loss="soft_l1", f_scale=0.04, max_nfev=200)
    except Exception:
        return None
    cx, cy, r, a, b, ls, pb, pf = res.x
    if b < 0.03:
        return None
    return np.array([cx, cy]), float(r)


def _ransac_circle(pts: np.ndarray, strength: np.ndarray, rmin: float, rmax: float, tol: float,
                   rng: np.random.Generator, iters: int = 200):
    n = len(pts)
    if n < 5:
        return None
    best, best_score = None, -1.0
    for _ in range(iters):
        i = rng.choice(n, 3, replace=False)
        p1, p2, p3 = pts[i]
        A = np.array([p2 - p1, p3 - p1]) * 2
        if abs(np.linalg.det(A)) < 1e-6:
            continue
        bb = np.array([p2 @ p2 - p1 @ p1, p3 @ p3 - p1 @ p1])
        c = np.linalg.solve(A, bb)
        r = float(np.hypot(*(p1 - c)))
        if not rmin <= r <= rmax:
            continue
        res = np.abs(np.hypot(*(pts - c).T) - r)
        inl = res < tol
        score = float(strength[inl].sum())
        if score > best_score:
            best, best_score = inl, score
    if best is None or best.sum() < 5:
        return None
    c, r = _fit_circle(pts[best], np.sqrt(strength[best]))
    if not rmin <= r <= rmax:
        return None
    return c, r, best


def locate_iris(image_rgb: np.ndarray, eye_landmarks_6x2: np.ndarray, *, return_radius: bool = False,
                seed: Optional[Sequence[float]] = None):
    """The iris centre (x, y) in frame pixels (sub-pixel), or None where no limbus
    circle is found (a closed, tiny or blurred eye).

    image_rgb: (H, W, 3) RGB (uint8 or float in [0, 1]) or (H, W) gray, at native
    resolution; eye_landmarks_6x2: the eye's six eyelid points (dlib 36-41 or 42-47,
    any order), frame pixels. ``return_radius``: return ((x, y), radius) instead.
    ``seed``: a starting centre (default: found from the gradients)."""
    import cv2

    gray_full = _gray(image_rgb)
    eye = np.asarray(eye_landmarks_6x2, dtype=np.float64).reshape(-1, 2)
    if eye.shape[0] < 6 or not np.isfinite(eye).all():
        raise ValueError("eye_landmarks_6x2 must be six finite (x, y) points")
    _, _, w = eye_axes(eye)
    Hf, Wf = gray_full.shape
    pad = int(math.ceil(0.5 * w)) + 2
    x0 = max(0, int(math.floor(eye[:, 0].min())) - pad)
    x1 = min(Wf, int(math.ceil(eye[:, 0].max())) + pad + 1)
    y0 = max(0, int(math.floor(eye[:, 1].min())) - pad)
    y1 = min(Hf, int(math.ceil(eye[:, 1].max())) + pad + 1)
    if x1 - x0 < 5 or y1 - y0 < 5 or w < 6:
        return None
    gray = gray_full[y0:y1, x0:x1]
    off = np.array([x0, y0], dtype=np.float64)
    # small eyes are resampled (bicubic) so that the search grids and the ray samples
    # are fine enough; positions map back exactly (pixel centres at integers)
    f = int(min(4, max(1, math.ceil(UPSAMPLE_TO / w))))
    if f > 1:
        gray = cv2.resize(gray, (gray.shape[1] * f, gray.shape[0] * f), interpolation=cv2.INTER_CUBIC)
    poly = (eye - off + 0.5) * f - 0.5
    w = w * f
    r0 = 0.2 * w
    # the seed search stays inside the eyelid outline; edges may lie a little outside
    # the landmarks (dlib's points sit on the lid margin, the limbus meets it there)
    seed_mask = _polygon_mask(poly, gray.shape, grow=0.0)
    # edges must lie inside the eyelid outline (not on the lid margin, where the iris
    # meets the skin): the limbus is seen where the sclera is, at the sides
    min_inside = MIN_INSIDE * w
    seeds = [(np.asarray(seed, dtype=np.float64) - off + 0.5) * f - 0.5] if seed is not None else _seeds(gray, seed_mask, r0)
    coarse = _daugman(gray, seeds, w, poly)
    if coarse is None:
        return None
    c, r = coarse
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    H, W = gray.shape
    yy, xx = np.mgrid[0:H, 0:W]
    dist = np.array([cv2.pointPolygonTest(contour, (float(a), float(b)), True)
                     for a, b in zip(xx.ravel(), yy.ravel())]).reshape(H, W)
    best = None
    r_coarse = r
    for _ in range(2):
        fit = _fit_disc(gray, c, r_coarse, dist, w, blur=0.6 * f)
        if fit is None:
            break
        moved = float(np.hypot(*(fit[0] - c)))
        c, r = fit
        best = (c.copy(), r, 0.0)
        if moved < 0.02 * f:
            break
    if best is None:
        return None
    if EDGE_REFINE:
        # where the limbus edge is sharp on both sides, a circle through its sub-pixel
        # edge points is more precise than the disc model
        c_d, r_d = best[0], best[1]
        rng = np.random.default_rng(0)
        pts, strength = _edge_points(gray, c_d, r_d, poly, min_inside, lo=0.75, hi=1.25)
        fit = _ransac_circle(pts, strength, 0.85 * r_d, 1.15 * r_d, tol=max(0.3, 0.03 * w), rng=rng)
        if fit is not None:
            c_e, r_e, inl = fit
            ang = np.arctan2(*(pts[inl] - c_e).T[::-1])
            both = (np.cos(ang) > 0.3).sum() >= 3 and (np.cos(ang) < -0.3).sum() >= 3
            if both and np.hypot(*(c_e - c_d)) < 0.25 * r_d:
                best = (c_e, r_e, 0.0)
    c, rad, _ = best
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    if cv2.pointPolygonTest(contour, (float(c[0]), float(c[1])), True) < -0.15 * w:
        return None
    xy = (float((c[0] + 0.5) / f - 0.5 + x0), float((c[1] + 0.5) / f - 0.5 + y0))
    return (xy, float(rad) / f) if return_radius else xy


def track_iris(image_in: np.ndarray, image_out: np.ndarray, centre, radius: float, eye_landmarks_6x2: np.ndarray,
               *, max_move: float = 0.3, near=None, near_tol: float = 0.1):
    """Where the iris found at ``centre`` (radius ``radius``, frame pixels) in
    ``image_in`` went in ``image_out``: ``centre`` + the sub-pixel translation that best
    maps the input's iris onto the output, or None.

    The template is the input's iris disc and its limbus (out to TRACK_RADIUS radii)
    where it lies inside the input's eye opening (``eye_landmarks_6x2``), band-passed.
    A grid search over moves of up to ``max_move`` eye widths (truncated L1: where a lid
    moved over part of the iris, those pixels cost the same everywhere) is refined, with
    a brightness gain and offset, by robust least squares (soft-L1). With ``near``, a
    rough position of the iris in the output (e.g. :func:`locate_iris` on it), only moves
    that end within ``near_tol`` eye widths of it are searched, which rules out a distant
    lookalike when the lids hide much of the iris. None where fewer than
    MIN_TRACK_INLIERS of the template's pixels match.

    Unlike locating the iris in each image on its own, the two positions share one
    template, so their difference (what gain measures) is not the difference of two
    independent fits' errors."""
    import cv2
    from scipy.ndimage import map_coordinates, spline_filter
    from scipy.optimize import least_squares

    g_in, g_out = _gray(image_in), _gray(image_out)
    if g_in.shape != g_out.shape:
        raise ValueError(f"image_in and image_out differ in size: {g_in.shape} vs {g_out.shape}")
    eye = np.asarray(eye_landmarks_6x2, dtype=np.float64).reshape(-1, 2)
    _, _, w = eye_axes(eye)
    c = np.asarray(centre, dtype=np.float64)
    if not (np.isfinite(c).all() and radius > 0 and w > 0):
        return None
    step = min(0.5, w / UPSAMPLE_TO)  # template sampling: at least UPSAMPLE_TO samples per eye width
    R = TRACK_RADIUS * radius
    n = int(math.ceil(R / step))
    gx, gy = np.meshgrid(np.arange(-n, n + 1) * step, np.arange(-n, n + 1) * step)
    keep = np.hypot(gx, gy) <= R
    px, py = c[0] + gx[keep], c[1] + gy[keep]
    contour = eye.astype(np.float32).reshape(-1, 1, 2)
    inside = np.array([cv2.pointPolygonTest(contour, (float(a), float(b)), True) for a, b in zip(px, py)])
    sel = inside >= 0.03 * w
    if sel.sum() < 20:
        return None
    px, py = px[sel], py[sel]

    # work in a window around the eye, cubic-spline coefficients computed once
    M = max_move * w
    pad = int(math.ceil(M + R + 4))
    x0, y0 = max(0, int(c[0]) - pad), max(0, int(c[1]) - pad)
    x1, y1 = min(g_in.shape[1], int(c[0]) + pad + 1), min(g_in.shape[0], int(c[1]) + pad + 1)
    # matched on a band-pass of the images (less a blur of half an iris radius): the
    # limbus, pupil and highlights, not the broad darkness of lids and lashes
    sigma = max(1.0, 0.5 * radius)

    def band(g):
        g = g[y0:y1, x0:x1]
        return g - cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    coef_in = spline_filter(band(g_in), order=3, mode="nearest")
    coef_out = spline_filter(band(g_out), order=3, mode="nearest")
    px, py = px - x0, py - y0

    def sample(coef, x, y):
        return map_coordinates(coef, [y, x], order=3, mode="nearest", prefilter=False)

    tmpl = sample(coef_in, px, py)

    def resid(q):
        tx, ty, a, b = q
        return a * sample(coef_out, px + tx, py + ty) + b - tmpl

    # coarse: every move on a grid of ~0.5 px, each pixel's mismatch capped at tau (half
    # the template's spread), so that occluded pixels do not decide
    k = int(math.ceil(M / 0.5))
    tau = 0.5 * max(float(tmpl.std()), 1e-6)
    best, best_score = (0.0, 0.0), -np.inf
    for tx in np.linspace(-M, M, 2 * k + 1):
        for ty in np.linspace(-M, M, 2 * k + 1):
            if tx * tx + ty * ty > M * M:
                continue
            if near is not None and math.hypot(c[0] + tx - near[0], c[1] + ty - near[1]) > near_tol * w:
                continue
            r = sample(coef_out, px + tx, py + ty) - tmpl
            score = -float(np.minimum(np.abs(r), tau).sum())
            if score > best_score:
                best, best_score = (tx, ty), score
    q0 = np.array([best[0], best[1], 1.0, 0.0])
    # the refinement stays within a grid step or two of the coarse optimum
    lo = [best[0] - 1.0, best[1] - 1.0, 0.5, -0.5]
    hi = [best[0] + 1.0, best[1] + 1.0, 2.0, 0.5]
    q0 = np.clip(q0, np.array(lo) + 1e-6, np.array(hi) - 1e-6)
    res = least_squares(resid, q0, bounds=(lo, hi), loss="soft_l1", f_scale=tau, max_nfev=200)
    t = res.x[:2]
    # fewer than half of the template's pixels match anywhere near: the iris is mostly
    # hidden or changed beyond a move, and is not measured
    if not np.isfinite(t).all() or float(np.mean(np.abs(resid(res.x)) < tau)) < MIN_TRACK_INLIERS:
        return None
    return float(c[0] + t[0]), float(c[1] + t[1])


# ----------------------------------------------------------------------------- measures

def displacement(p_in, p_out, eye6: np.ndarray) -> Tuple[float, float]:
    """(horizontal, vertical) iris displacement in eye widths, in the eye's own axes:
    horizontal > 0 towards the image's right (along the corner line), vertical > 0 up."""
    ex, up, w = eye_axes(eye6)
    d = np.asarray(p_out, dtype=np.float64) - np.asarray(p_in, dtype=np.float64)
    return float(d @ ex / w), float(d @ up / w)


def gain(p_in, p_out, eye6: np.ndarray, vertical: float, horizontal: float) -> Tuple[float, float]:
    """(gain, cross) for one eye and one commanded redirection along ONE axis.

    gain = displacement along the commanded axis (eye widths) / (0.42 sin |angle|),
    signed so that moving the commanded way is positive; cross = displacement on the
    other axis over the same expectation (signed)."""
    if (vertical != 0) == (horizontal != 0):
        raise ValueError("gain() needs exactly one of vertical, horizontal non-zero")
    dh, dv = displacement(p_in, p_out, eye6)
    ang = vertical if vertical != 0 else horizontal
    exp = expected_displacement(abs(ang))
    along, other = (dv, dh) if vertical != 0 else (dh, dv)
    return float(math.copysign(1.0, ang) * along / exp), float(other / exp)


def _boxes(boxes) -> Iterable[Tuple[int, int, int, int]]:
    boxes = list(boxes)
    if boxes and np.isscalar(boxes[0]):
        boxes = [tuple(boxes)]
    return boxes


def _laplacian_energy(gray: np.ndarray) -> float:
    import cv2

    return float(np.mean(cv2.Laplacian(gray, cv2.CV_64F, ksize=1) ** 2))


def sharpness(inp: np.ndarray, out: np.ndarray, boxes) -> float:
    """Laplacian energy of ``out`` over that of ``inp`` in the eye boxes (summed over
    boxes): 1 = as sharp as the input, < 1 blurred, > 1 sharper (or noisier)."""
    gi, go = _gray(inp), _gray(out)
    e_in = e_out = 0.0
    for x0, y0, x1, y1 in _boxes(boxes):
        e_in += _laplacian_energy(gi[y0:y1, x0:x1])
        e_out += _laplacian_energy(go[y0:y1, x0:x1])
    return e_out / e_in if e_in > 0 else float("nan")


def mean_change(inp: np.ndarray, out: np.ndarray, boxes) -> float:
    """Mean absolute pixel change in the eye boxes, on a 0..255 scale (all channels)."""
    a, b = np.asarray(inp), np.asarray(out)
    s = 1.0 if a.dtype == np.uint8 else (255.0 / 65535.0 if a.dtype == np.uint16 else 255.0)
    tot, n = 0.0, 0
    for x0, y0, x1, y1 in _boxes(boxes):
        d = np.abs(a[y0:y1, x0:x1].astype(np.float64) - b[y0:y1, x0:x1].astype(np.float64)) * s
        tot += float(d.sum())
        n += d.size
    return tot / n if n else float("nan")
