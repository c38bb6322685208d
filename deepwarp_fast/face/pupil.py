"""The pupil centre (the seventh anchor) from the image inside the eye contour.

The iris is the darkest disc inside the eyelids: darkness (1 - luminance) is averaged
over a disc-sized Gaussian with normalised convolution (only pixels inside the
contour count), the best disc centre is refined by a darkness-weighted centroid, and
the result is accepted only where the iris stands out from the rest of the eye. Where
it does not (a closed or tiny eye, a blurred or flat patch), the centre is the mean of
the six eyelid points, as SPEC.md says.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Iris radius as a fraction of the eye width (corner to corner): ~11.7 mm of ~30 mm.
IRIS_RADIUS = 0.2
# The iris must be this much darker (on a 0..1 scale) than the eye's average.
MIN_CONTRAST = 0.04


def eye_mask(eyelid: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) float32 mask, 1 inside the eyelid polygon (canonical six points)."""
    import cv2

    mask = np.zeros((height, width), dtype=np.uint8)
    pts = np.round(np.asarray(eyelid, dtype=np.float64) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(np.float32)


def estimate_pupil(patch: np.ndarray, eyelid: np.ndarray) -> Tuple[np.ndarray, bool]:
    """((x, y) in patch pixels, found) for an RGB float patch (H, W, 3) in [0, 1].

    ``found`` is False where the estimate fell back to the mean of the eyelid points.
    """
    import cv2

    eyelid = np.asarray(eyelid, dtype=np.float64)
    fallback = eyelid.mean(axis=0)
    H, W = patch.shape[:2]
    mask = eye_mask(eyelid, H, W)
    eye_w = float(np.hypot(*(eyelid[3] - eyelid[0])))
    radius = IRIS_RADIUS * eye_w
    if mask.sum() < max(6.0, 0.5 * radius * radius) or radius < 1.0:
        return fallback, False
    gray = patch.reshape(-1, 3) @ _LUMA if patch.ndim == 3 else patch.reshape(-1)
    dark = (1.0 - gray.reshape(H, W)).astype(np.float32)
    sigma = max(0.8, 0.6 * radius)
    num = cv2.GaussianBlur(dark * mask, (0, 0), sigma)
    den = cv2.GaussianBlur(mask, (0, 0), sigma)
    score = np.where((mask > 0) & (den > 0.15), num / np.maximum(den, 1e-6), -1.0)
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    inside = dark[mask > 0]
    contrast = float(score[iy, ix]) - float(inside.mean())
    if contrast < MIN_CONTRAST:
        return fallback, False
    # Refine: centroid of the pixels darker than the eye's median, within the disc.
    yy, xx = np.mgrid[0:H, 0:W]
    near = ((xx - ix) ** 2 + (yy - iy) ** 2) <= (1.5 * radius) ** 2
    w = np.clip(dark - np.median(inside), 0.0, None) * mask * near
    if w.sum() <= 1e-6:
        centre = np.array([ix, iy], dtype=np.float64)
    else:
        centre = np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    contour = eyelid.astype(np.float32).reshape(-1, 1, 2)
    if cv2.pointPolygonTest(contour, (float(centre[0]), float(centre[1])), True) < -1.0:
        return fallback, False
    return centre, True
