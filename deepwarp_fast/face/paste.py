"""Paste-back: a redirected patch goes into the frame through the inverse crop
transform, blended with a feathered elliptical mask centred on the eye.

Only pixels where the mask is positive change; everywhere else the output is the
input, bit for bit (the blend is written with ``np.where``, never recomputed).
"""
from __future__ import annotations

import functools

import numpy as np

from .eyes import EyeCrop, footprint

# The mask's ellipse, as fractions of the patch's half-width / half-height, and the
# normalised radius where the feather starts: weight 1 inside it, 0 at the ellipse.
# With crop_scale 2 the ellipse reaches 0.8 R beside the eye centre (corners: 0.5 R).
MASK_AX = 0.80
MASK_AY = 0.85
FEATHER_FROM = 0.55


@functools.lru_cache(maxsize=8)
def feather_mask(height: int, width: int) -> np.ndarray:
    """(H, W) float32 weights in [0, 1]: 1 around the patch centre, a smooth (C1)
    falloff to exactly 0 well inside the patch border."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    r = np.hypot((xx - cx) / (MASK_AX * width / 2.0), (yy - cy) / (MASK_AY * height / 2.0))
    t = np.clip((1.0 - r) / (1.0 - FEATHER_FROM), 0.0, 1.0)
    m = t * t * (3.0 - 2.0 * t)
    m.setflags(write=False)
    return m.astype(np.float32)


def paste_patch(image: np.ndarray, patch: np.ndarray, crop: EyeCrop, maxval: float, channels: slice = slice(None)) -> None:
    """Blend ``patch`` (h, w, C) float in [0, 1], channels in the image's order, into
    ``image[..., channels]`` in place through the inverse of ``crop.A``.

    image: (H, W) or (H, W, C) of any dtype with values in [0, maxval].
    """
    import cv2

    h, w = patch.shape[:2]
    Hf, Wf = image.shape[:2]
    x0, y0, x1, y1 = footprint(crop.A, w, h, Wf, Hf, pad=1)
    if x1 <= x0 or y1 <= y0:
        return
    # Frame ROI pixel (i, j) -> patch pixel: A applied to (x0 + i, y0 + j).
    M = crop.A.copy()
    M[:, 2] += crop.A[:, :2] @ np.array([x0, y0], dtype=np.float64)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    m = cv2.warpAffine(feather_mask(h, w), M, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP  # bicubic like the extraction: a sharper round trip
    nz = m > 0
    if not nz.any():
        return
    src = cv2.warpAffine(np.ascontiguousarray(patch, dtype=np.float32), M, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    if image.ndim == 2:
        roi = image[y0:y1, x0:x1]
        if src.ndim == 3:
            src = src[..., 0]
    else:
        roi = image[y0:y1, x0:x1, channels]
        if src.ndim == 2:
            src = src[..., None]
        m = m[..., None]
        nz = nz[..., None]
    old = roi.astype(np.float32)
    new = old + m * (src * np.float32(maxval) - old)
    if np.issubdtype(image.dtype, np.integer):
        new = np.clip(np.rint(new), 0, maxval)
    else:
        new = np.clip(new, 0, maxval)
    blended = np.where(nz, new.astype(image.dtype), roi)
    if image.ndim == 2:
        image[y0:y1, x0:x1] = blended
    else:
        image[y0:y1, x0:x1, channels] = blended
