"""Image files in and out, kept as they are: 8- or 16-bit, gray, RGB or RGBA.

Files are read with OpenCV (``IMREAD_UNCHANGED``: no conversion of depth, channels
or alpha), after Pillow has decoded them once to catch truncated or damaged files,
which OpenCV would otherwise pad silently. Outputs are written to a temporary file
beside the target and renamed into place, so a failed write never leaves half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
_LOSSY = {".jpg", ".jpeg", ".webp"}
_HIGH_DEPTH = {".png", ".tif", ".tiff", ".ppm", ".pgm", ".pnm"}


class InputError(Exception):
    """An input file is missing, unreadable, truncated or damaged."""


def media_kind(path) -> str:
    """"image" or "video", from the file name's extension."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise ValueError(f"{path}: unknown file type {ext or '(no extension)'!r}; images: "
                     f"{' '.join(sorted(IMAGE_EXTS))}; videos: {' '.join(sorted(VIDEO_EXTS))}")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path} is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")


def read_image(path, color: str = "rgb") -> np.ndarray:
    """The image at ``path`` as stored: (H, W) gray, or (H, W, 3|4) in ``color`` order
    ("rgb" or "bgr", alpha last), uint8 or uint16 (or float32 for float TIFFs)."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    _check_color(color)
    path = Path(path)
    _check_readable(path)
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        pass  # a format Pillow does not know; OpenCV may still read it
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} is truncated or damaged ({exc})") from exc
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path} is not a readable image (unknown format, or damaged)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and color == "rgb":
        img = np.ascontiguousarray(img[..., [2, 1, 0, 3][: img.shape[2]]])
    return img


def write_image(path, image: np.ndarray, color: str = "rgb", jpeg_quality: int = 95) -> List[str]:
    """Write ``image`` (as :func:`read_image` returns it) to ``path``; returns warnings
    about what the format could not hold (a lossy format, 16 bits, alpha)."""
    import cv2

    _check_color(color)
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTS:
        raise ValueError(f"{path}: cannot write an image as {ext!r}; use one of {' '.join(sorted(IMAGE_EXTS))}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    warnings: List[str] = []
    img = image
    if img.ndim == 3 and color == "rgb":
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]
    if img.dtype == np.uint16 and ext not in _HIGH_DEPTH:
        warnings.append(f"{ext} holds 8 bits per channel: the 16-bit image is written as 8-bit")
        img = (img >> 8).astype(np.uint8)
    if img.dtype.kind == "f":
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        warnings.append("the float image is written as 8-bit")
    if img.ndim == 3 and img.shape[2] == 4 and ext in {".jpg", ".jpeg", ".bmp", ".ppm", ".pnm"}:
        warnings.append(f"{ext} has no alpha channel: alpha is dropped")
        img = img[..., :3]
    if ext in _LOSSY:
        warnings.append(f"{ext} is lossy: pixels outside the eyes change slightly on re-encoding (use .png to keep them exactly)")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in {".jpg", ".jpeg"} else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
    if not ok:
        raise OSError(f"OpenCV could not encode the image as {ext}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=ext + ".part", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return warnings


def _check_color(color: str) -> None:
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr' (the channel order of the array), got {color!r}")


def image_format(image) -> Tuple[float, int]:
    """(maxval, channels) of an image array, or a clear error naming what is wrong."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (H, W) or (H, W, C), got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image is too small: {image.shape}")
    if image.dtype == np.uint8:
        maxval = 255.0
    elif image.dtype == np.uint16:
        maxval = 65535.0
    elif image.dtype in (np.float32, np.float64):
        maxval = 1.0
        lo, hi = float(np.min(image)), float(np.max(image))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
            raise ValueError(f"a float image must hold finite values in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    else:
        raise TypeError(f"image dtype must be uint8, uint16, float32 or float64, got {image.dtype}")
    return maxval, 1 if image.ndim == 2 else image.shape[2]
