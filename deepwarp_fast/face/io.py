"""Image files in and out, kept as they are: 8- or 16-bit, gray, RGB or RGBA.

Files are read with OpenCV (``IMREAD_UNCHANGED``: no conversion of depth, channels
or alpha), after Pillow has decoded them once to catch truncated or damaged files,
which OpenCV would otherwise pad silently. The EXIF orientation tag (phone photos
store their pixels rotated) is applied on reading: the array is upright.

Outputs are written to a temporary file beside the target and renamed into place, so
a failed write never leaves half a file; a new file gets the usual permissions (0666
less the umask), an overwritten one keeps its mode. ``write_image(..., like=src)``
carries the source's metadata over into .png and .jpg outputs: EXIF (its orientation
set to 1, since the pixels are written upright), the ICC colour profile, XMP and DPI.
"""
from __future__ import annotations

import os
import re
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

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


EXIF_ORIENTATION = 0x0112


def _orientation(im) -> int:
    """The EXIF orientation (1-8) of an open Pillow image; 1 when absent or invalid."""
    try:
        o = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: the pixels are still readable
        return 1
    return o if 1 <= o <= 8 else 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels ``img`` (H, W[, C]) turned upright for an EXIF ``orientation``
    (1-8, as Pillow's ImageOps.exif_transpose)."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = np.swapaxes(img, 0, 1)
    elif orientation == 6:
        img = np.swapaxes(img, 0, 1)[:, ::-1]
    elif orientation == 7:
        img = np.swapaxes(img, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        img = np.swapaxes(img, 0, 1)[::-1]
    return np.ascontiguousarray(img)


def read_image(path, color: str = "rgb") -> np.ndarray:
    """The image at ``path``, upright (its EXIF orientation applied), depth and channels
    as stored: (H, W) gray, or (H, W, 3|4) in ``color`` order ("rgb" or "bgr", alpha
    last), uint8 or uint16 (or float32 for float TIFFs)."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    _check_color(color)
    path = Path(path)
    _check_readable(path)
    orientation = 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" and the like
            with Image.open(path) as im:
                im.load()
                orientation = _orientation(im)
    except UnidentifiedImageError:
        pass  # a format Pillow does not know; OpenCV may still read it
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path} is truncated or damaged ({type(exc).__name__}: {exc})") from exc
    try:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise InputError(f"{path} is not a readable image ({exc})") from exc
    if img is None or img.size == 0:
        raise InputError(f"{path} is not a readable image (unknown format, or damaged)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise InputError(f"{path} has {img.shape[2]} channels: only gray, RGB and RGBA images are supported")
    try:
        image_format(img)  # what the pipeline cannot take (1-pixel rows, HDR floats) is refused here
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path} cannot be processed: {exc}") from exc
    if img.ndim == 3 and color == "rgb":
        img = np.ascontiguousarray(img[..., [2, 1, 0, 3][: img.shape[2]]])
    return apply_orientation(img, orientation)


@dataclass
class ImageMetadata:
    """What an image file says about its pixels besides the pixels: EXIF (TIFF-format
    bytes, no "Exif" header; orientation already set to 1), the ICC profile, XMP
    (text) and the resolution in dots per inch."""

    exif: Optional[bytes] = None
    icc_profile: Optional[bytes] = None
    xmp: Optional[bytes] = None
    dpi: Optional[Tuple[float, float]] = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.exif, self.icc_profile, self.xmp, self.dpi))


def read_metadata(path) -> ImageMetadata:
    """The metadata of the image file ``path`` as :class:`ImageMetadata`, with the EXIF
    and XMP orientation set to 1 (``read_image`` returns the pixels upright). Metadata
    that cannot be parsed is left out."""
    from PIL import Image

    meta = ImageMetadata()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                info = dict(im.info)
                try:
                    exif = im.getexif()
                    if len(exif):
                        if EXIF_ORIENTATION in exif:
                            exif[EXIF_ORIENTATION] = 1
                        meta.exif = exif.tobytes()[6:]  # without b"Exif\0\0"
                except Exception:
                    meta.exif = None
    except Exception:
        return ImageMetadata()
    icc = info.get("icc_profile")
    meta.icc_profile = bytes(icc) if icc else None
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        xmp = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
        meta.xmp = re.sub(rb'(tiff:Orientation\s*=\s*["\'])[2-8](["\'])', rb"\g<1>1\g<2>",
                          re.sub(rb"(<tiff:Orientation>)\s*[2-8]\s*(</tiff:Orientation>)", rb"\g<1>1\g<2>", xmp))
    dpi = info.get("dpi")
    try:
        if dpi and len(dpi) == 2 and all(np.isfinite(float(d)) and 0 < float(d) < 1e6 for d in dpi):
            meta.dpi = (float(dpi[0]), float(dpi[1]))
    except (TypeError, ValueError):
        meta.dpi = None
    return meta


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_metadata(buf: bytes, meta: ImageMetadata) -> bytes:
    chunks = []
    if meta.icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(meta.icc_profile)))
    if meta.dpi:
        ppm = [int(round(d / 0.0254)) for d in meta.dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if meta.exif:
        chunks.append(_png_chunk(b"eXIf", meta.exif))
    if meta.xmp:
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + meta.xmp))
    # After the signature (8 bytes) and IHDR (25 bytes): iCCP and pHYs must precede IDAT.
    return buf[:33] + b"".join(chunks) + buf[33:]


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _jpeg_with_metadata(buf: bytes, meta: ImageMetadata) -> List[str]:
    """(bytes, warnings): ``buf`` (a JPEG from OpenCV: SOI, JFIF APP0, ...) with the
    metadata's segments after the APP0, and the DPI in the APP0."""
    warnings: List[str] = []
    head, rest = buf[:2], buf[2:]
    app0 = b""
    if rest[:2] == b"\xff\xe0":
        n = struct.unpack(">H", rest[2:4])[0]
        app0, rest = bytearray(rest[: 2 + n]), rest[2 + n:]
        if meta.dpi and app0[4:9] == b"JFIF\0":
            app0[11] = 1  # dots per inch
            app0[12:16] = struct.pack(">HH", *(min(65535, max(1, int(round(d)))) for d in meta.dpi))
        app0 = bytes(app0)
    segs = []
    for name, header, data in (("EXIF block", b"Exif\0\0", meta.exif),
                               ("XMP packet", b"http://ns.adobe.com/xap/1.0/\0", meta.xmp)):
        if not data:
            continue
        payload = header + data
        if len(payload) <= 65533:
            segs.append(_jpeg_segment(0xE1, payload))
        else:
            warnings.append(f"the {name} is larger than a JPEG segment holds: it is not carried over")
    if meta.icc_profile:
        step = 65519
        parts = [meta.icc_profile[i:i + step] for i in range(0, len(meta.icc_profile), step)]
        if len(parts) <= 255:
            for i, part in enumerate(parts):
                segs.append(_jpeg_segment(0xE2, b"ICC_PROFILE\0" + bytes([i + 1, len(parts)]) + part))
        else:
            warnings.append("the ICC profile is too large for JPEG: it is not carried over")
    return [head + app0 + b"".join(segs) + rest] + warnings


def _umask_mode() -> int:
    """The mode a new file gets here: 0666 less the process's umask."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it
    os.umask(mask)
    return 0o666 & ~mask


def write_image(path, image: np.ndarray, color: str = "rgb", jpeg_quality: int = 95, like=None) -> List[str]:
    """Write ``image`` (as :func:`read_image` returns it) to ``path``; returns warnings
    about what the format could not hold (a lossy format, 16 bits, alpha, metadata).

    like: a source image file (or an :class:`ImageMetadata`) whose EXIF, ICC profile,
    XMP and DPI are carried over (.png and .jpg outputs; others warn that they drop them).
    """
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
    data = buf.tobytes()
    meta = like if isinstance(like, ImageMetadata) else (read_metadata(like) if like is not None else None)
    if meta:
        if ext == ".png" and data[12:16] == b"IHDR":
            data = _png_with_metadata(data, meta)
        elif ext in {".jpg", ".jpeg"} and data[:2] == b"\xff\xd8":
            data, *more = _jpeg_with_metadata(data, meta)
            warnings += more
        else:
            warnings.append(f"the input's metadata (EXIF, ICC profile, XMP, DPI) is not carried over into {ext}: "
                            f"write .png or .jpg to keep it")
    mode = (path.stat().st_mode & 0o7777) if path.exists() else _umask_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=ext + ".part", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
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
