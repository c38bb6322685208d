"""The browser demo: one GazeRedirector behind a small Starlette app and one page.

Photos. ``POST /api/photos`` (the file itself as the body) or ``POST
/api/photos/sample`` finds the faces and their landmarks once and keeps them with the
photo; ``GET /api/photos/{id}/redirect?vertical=&horizontal=`` then runs only the
model and the paste. Its answer is the changed region alone (a PNG, placed by the
``X-Region: x0,y0,x1,y1`` header; 204 when nothing changed), so a slider move costs
the eyes, not the photo; ``&format=png`` gives the whole picture for download.

Videos. ``POST /api/videos?vertical=&horizontal=`` starts a job (one runs at a time,
in a worker thread, through face.video.redirect_video: tracking and smoothing);
``GET /api/videos/{id}`` says its state and progress; ``/result`` is the video (WebM
VP8, which browsers play; MJPG .avi where OpenCV cannot write VP8).

Live. The WebSocket ``/api/live``: a text message sets the angles (JSON
``{"vertical": v, "horizontal": h}``); each binary message is a JPEG or PNG frame and
is answered by a text message (``{"faces", "eyes", "ms"}``) and the redirected frame
(JPEG), through a GazeStream per connection.

Errors are JSON ``{"error": message, "code": word}`` with a 4xx status; a bad
request never stops the server. Ids are random (128 bits from ``secrets``) and are
only looked up in the app's own tables: no path ever comes from a request. Each
upload is written to its own folder (0700) under one temporary root; photos are
decoded and their folder removed at once (they live in memory, the least recently
used dropped beyond Limits.max_photos); videos keep their folder until they expire
(idle for Limits.ttl_s, or pushed out by newer ones) or are deleted; the root goes
when the app stops. The detector keeps state between a detection and its landmarks,
so the redirector runs under one lock: one photo, video frame or live frame at a time.
"""
from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

MB = 1 << 20
ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)
# (fourcc, extension, media type), the first OpenCV can write wins: browsers play WebM
# VP8; MJPG .avi always works but only downloads.
VIDEO_FORMATS = (("VP80", ".webm", "video/webm"), ("MJPG", ".avi", "video/x-msvideo"))
ACTIVE = ("queued", "running")


@dataclass
class Limits:
    """What one request may send, and how much the server keeps."""

    max_photo_bytes: int = 25 * MB
    max_video_bytes: int = 200 * MB
    max_live_frame_bytes: int = 4 * MB
    max_pixels: int = 40_000_000      # a photo or a video frame (a small file can hold a huge image)
    max_photos: int = 32              # kept in memory; the least recently used goes first
    max_videos: int = 8               # finished jobs kept on disk
    max_queued_videos: int = 4        # queued or running at once
    ttl_s: float = 3600.0             # idle photos and finished videos are dropped after this

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, got {value!r}")

    def as_json(self) -> Dict[str, float]:
        return {"max_photo_mb": self.max_photo_bytes / MB, "max_video_mb": self.max_video_bytes / MB,
                "max_live_frame_mb": self.max_live_frame_bytes / MB, "max_megapixels": self.max_pixels / 1e6}


class ApiError(Exception):
    """A request that cannot be served: answered with ``status`` and a JSON message."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class Photo:
    id: str
    name: str
    image: np.ndarray  # upright, (H, W, 3|4) uint8 RGB(A)
    faces: list        # FaceResults from the one detection
    messages: List[str]
    used: float


@dataclass
class VideoJob:
    id: str
    name: str
    folder: Path
    input: Path
    output: Path
    media_type: str
    vertical: float
    horizontal: float
    total: int  # frames according to the header (0: not stored)
    width: int
    height: int
    fps: float
    state: str = "queued"  # queued, running, done, failed, cancelled
    frames: int = 0
    error: Optional[str] = None
    summary: Optional[str] = None
    messages: List[str] = field(default_factory=list)
    used: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    removed: bool = False

    @property
    def progress(self) -> Optional[float]:
        if self.state == "done":
            return 1.0
        return min(1.0, self.frames / self.total) if self.total > 0 else None


class _Cancelled(KeyboardInterrupt):
    """Raised from redirect_video's per-frame callback to stop a job: redirect_video
    treats a KeyboardInterrupt as a clean stop (the file so far is closed)."""


class _Serial:
    """The shared redirector for a video job, each frame under the app's lock."""

    def __init__(self, redirector, lock: threading.Lock):
        self._redirector, self._lock = redirector, lock

    def check_angles(self, vertical, horizontal):
        return self._redirector.check_angles(vertical, horizontal)

    def stream(self, *args, **kwargs):
        stream = self._redirector.stream(*args, **kwargs)
        process = stream.process

        def locked(*a, **k):
            with self._lock:
                return process(*a, **k)

        stream.process = locked
        return stream


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """An image from read_image as (H, W, 3|4) uint8 RGB(A), what a browser shows."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img)


def _encode(img: np.ndarray, ext: str = ".png", quality: int = 85, compression: int = 1) -> bytes:
    """RGB(A) uint8 -> PNG or JPEG bytes."""
    import cv2

    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} image as {ext}")
    return buf.tobytes()


def _display_name(raw: Optional[str], default: str) -> str:
    """A file name to show and to name downloads by, never to open: its last path part,
    printable characters only."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '"<>;')[:120].strip()
    return name or default


def _attachment(filename: str) -> str:
    """A Content-Disposition for a download named ``filename`` (headers are Latin-1: a
    non-ASCII name goes in RFC 6266's filename*, with an ASCII stand-in)."""
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    if ascii_name == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def changed_region(result, width: int, height: int, config) -> Optional[Tuple[int, int, int, int]]:
    """(x0, y0, x1, y1): the union of the redirected eyes' patch footprints in the
    ``width`` x ``height`` frame (patches of ``config.width`` x ``config.height``), where
    the paste may change pixels (it writes only where the feather mask, zero on the
    patch border, is positive), or None when no eye was redirected."""
    w, h = config.width, config.height
    boxes = []
    for face in result.faces:
        for eye in face.eyes:
            if not eye.redirected or eye.crop is None:
                continue
            corners = eye.crop.to_frame(np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]]))
            boxes.append(corners)
    if not boxes:
        return None
    pts = np.concatenate(boxes)
    x0, y0 = np.floor(pts.min(0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


class GazeService:
    """The app's state: the redirector, its lock, the photos and video jobs, the temp root."""

    def __init__(self, redirector, limits: Optional[Limits] = None, temp_dir=None, video_format=None):
        self.redirector = redirector
        self.limits = limits or Limits()
        self.root = Path(tempfile.mkdtemp(prefix="deepwarp-serve-", dir=temp_dir))
        self.compute = threading.Lock()
        self._tables = threading.Lock()
        self.photos: Dict[str, Photo] = {}
        self.videos: Dict[str, VideoJob] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwarp-video")
        self.video_format = video_format or self._pick_video_format()

    @property
    def max_angle(self) -> float:
        return float(self.redirector.config.max_angle)

    def _pick_video_format(self) -> Tuple[str, str, str]:
        import os

        import cv2

        for fourcc, ext, media_type in VIDEO_FORMATS:
            probe = self.root / f"probe{ext}"
            w = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
            ok = w.isOpened()
            w.release()
            if probe.exists():
                os.unlink(probe)
            if ok:
                return fourcc, ext, media_type
        raise RuntimeError("OpenCV can write no video format here (tried " + ", ".join(f[0] for f in VIDEO_FORMATS) + ")")

    # ------------------------------------------------------------------ ids, folders, expiry
    def new_folder(self) -> Tuple[str, Path]:
        import os

        ident = secrets.token_urlsafe(16)
        folder = self.root / ident
        os.mkdir(folder, 0o700)
        return ident, folder

    @staticmethod
    def discard(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def sweep(self) -> None:
        """Drop idle photos and finished videos (after ttl_s, or beyond the counts)."""
        now = time.monotonic()
        ttl = self.limits.ttl_s
        with self._tables:
            photos = sorted(self.photos.values(), key=lambda p: p.used)
            for i, p in enumerate(photos):
                if now - p.used > ttl or len(photos) - i > self.limits.max_photos:
                    del self.photos[p.id]
            done = sorted((j for j in self.videos.values() if j.state not in ACTIVE), key=lambda j: j.used)
            gone = [j for i, j in enumerate(done) if now - j.used > ttl or len(done) - i > self.limits.max_videos]
            for j in gone:
                del self.videos[j.id]
        for j in gone:
            self.discard(j.folder)

    def photo(self, ident: str) -> Photo:
        with self._tables:
            p = self.photos.get(ident) if ID.match(ident) else None
            if p is None:
                raise ApiError(404, "no such photo (it may have expired: upload it again)", "unknown_photo")
            p.used = time.monotonic()
            return p

    def video(self, ident: str) -> VideoJob:
        with self._tables:
            j = self.videos.get(ident) if ID.match(ident) else None
            if j is None:
                raise ApiError(404, "no such video (it may have expired: upload it again)", "unknown_video")
            j.used = time.monotonic()
            return j

    def angles(self, params) -> Tuple[float, float]:
        """(vertical, horizontal) from query parameters or a JSON object (missing: 0)."""
        from ..face import AngleRangeError

        values = []
        for name in ("vertical", "horizontal"):
            raw = params.get(name, 0)
            try:
                if isinstance(raw, bool):
                    raise ValueError
                values.append(float(raw))
            except (TypeError, ValueError):
                raise ApiError(422, f"{name} must be a number of degrees, got {str(raw)[:40]!r}", "bad_angle") from None
        try:
            return self.redirector.check_angles(*values)
        except AngleRangeError as exc:
            raise ApiError(422, str(exc), "angle_out_of_range") from None

    # ------------------------------------------------------------------ photos
    def _check_pixels(self, w: int, h: int, what: str) -> None:
        if w * h > self.limits.max_pixels:
            raise ApiError(413, f"the {what} is {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                                f"{self.limits.max_pixels / 1e6:g}", "too_many_pixels")

    def read_photo(self, path: Path, name: str) -> np.ndarray:
        import warnings

        from PIL import Image

        from ..face import InputError, read_image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    size = im.size
        except Exception:
            size = None  # read_image says what is wrong
        if size is not None:
            self._check_pixels(size[0], size[1], "photo")
        try:
            img = read_image(path, color="rgb")
        except InputError as exc:
            why = str(exc).replace(str(path), "the file")
            raise ApiError(422, f"cannot read {name} as an image (PNG or JPEG): {why}", "unreadable") from None
        self._check_pixels(img.shape[1], img.shape[0], "photo")
        return _as_uint8(img)

    def add_photo(self, name: str, image: np.ndarray) -> Photo:
        """Find the faces (once), keep the photo and return it."""
        with self.compute:
            res = self.redirector.redirect(image, 0.0, 0.0, color="rgb")
        photo = Photo(secrets.token_urlsafe(16), name, image, res.faces, list(res.messages), time.monotonic())
        with self._tables:
            self.photos[photo.id] = photo
        self.sweep()
        return photo

    def describe(self, photo: Photo) -> dict:
        from ..face.eyes import EYE_POINTS

        faces = []
        for f in photo.faces:
            eyes = []
            for e in f.eyes:
                idx = sorted(EYE_POINTS[e.side])
                eyes.append({"side": e.side, "outline": f.landmarks[idx].round(2).tolist(),
                             "pupil": None if e.pupil is None else np.round(e.pupil, 2).tolist(),
                             "redirected": bool(e.redirected), "skipped": e.skipped})
            faces.append({"box": [int(v) for v in f.box], "score": round(float(f.score), 3), "eyes": eyes,
                          "skipped": f.skipped})
        eyes = sum(e["redirected"] for f in faces for e in f["eyes"])
        H, W = photo.image.shape[:2]
        if not faces:
            message = (f"No face found in {photo.name}. Faces need to be roughly frontal and at least "
                       f"{self.redirector.detector.min_face} pixels wide.")
        elif not eyes:
            message = f"{len(faces)} face(s) found in {photo.name}, but no eye can be redirected: " + "; ".join(photo.messages)
        else:
            message = None
        return {"id": photo.id, "name": photo.name, "width": W, "height": H, "max_angle": self.max_angle,
                "faces": faces, "eyes": eyes, "message": message, "messages": photo.messages,
                "image": f"/api/photos/{photo.id}/image"}

    def redirect_photo(self, photo: Photo, v: float, h: float):
        t0 = time.perf_counter()
        with self.compute:
            res = self.redirector.redirect(photo.image, v, h, color="rgb", faces=photo.faces)
        return res, (time.perf_counter() - t0) * 1e3

    # ------------------------------------------------------------------ videos
    def add_video(self, ident: str, folder: Path, name: str, path: Path, v: float, h: float) -> VideoJob:
        from ..face import InputError
        from ..face.video import VideoReader

        try:
            reader = VideoReader(path, prefetch=False)
        except InputError as exc:
            why = str(exc).replace(str(path), "the file")
            raise ApiError(422, f"cannot read {name} as a video: {why}", "unreadable") from None
        try:
            self._check_pixels(reader.width, reader.height, "video's frame")
            total, width, height, fps = reader.frame_count, reader.width, reader.height, reader.fps
        finally:
            reader.close()
        fourcc, ext, media_type = self.video_format
        job = VideoJob(ident, name, folder, path, folder / f"result{ext}", media_type, v, h, total, width, height,
                       fps, used=time.monotonic())
        with self._tables:
            self.videos[ident] = job
        self._worker.submit(self._run_job, job)
        self.sweep()
        return job

    def _run_job(self, job: VideoJob) -> None:
        from ..face.video import redirect_video

        if job.cancel.is_set():
            job.state = "cancelled"
            self._finish(job)
            return
        job.state = "running"

        def on_frame(index, result):
            job.frames = index + 1
            if job.cancel.is_set():
                raise _Cancelled

        try:
            summary = redirect_video(_Serial(self.redirector, self.compute), job.input, job.output, job.vertical,
                                     job.horizontal, codec=self.video_format[0], progress=False, on_frame=on_frame)
        except Exception as exc:  # reported to the page; the worker goes on with the next job
            job.state, job.error = "failed", self._scrub(job, f"{type(exc).__name__}: {exc}")
        else:
            job.messages = [self._scrub(job, m) for m in summary.messages]
            job.summary = self._scrub(job, summary.format())
            job.frames = summary.frames
            if summary.interrupted:
                job.state = "cancelled"
            elif summary.frames == 0 or not job.output.exists():
                job.state, job.error = "failed", f"no frame of {job.name} could be processed"
            else:
                job.state = "done"
                if summary.faces_found == 0:
                    job.messages.insert(0, f"no face found in any frame of {job.name}: the video is unchanged")
        self._finish(job)

    @staticmethod
    def _scrub(job: VideoJob, text: str) -> str:
        """``text`` with the server's paths replaced by the names the user knows."""
        return (text.replace(str(job.input), job.name).replace(str(job.output), f"the result ({job.output.suffix})")
                .replace(str(job.folder), "(upload)"))

    def _finish(self, job: VideoJob) -> None:
        job.used = time.monotonic()
        try:
            job.input.unlink()
        except FileNotFoundError:
            pass
        if job.removed:
            self.discard(job.folder)

    def remove_video(self, job: VideoJob) -> None:
        job.cancel.set()
        with self._tables:
            self.videos.pop(job.id, None)
            job.removed = True
            running = job.state in ACTIVE
        if not running:
            self.discard(job.folder)

    def describe_job(self, job: VideoJob) -> dict:
        out = {"id": job.id, "name": job.name, "state": job.state, "frames": job.frames, "total": job.total,
               "progress": job.progress, "width": job.width, "height": job.height, "fps": job.fps,
               "vertical": job.vertical, "horizontal": job.horizontal, "error": job.error, "summary": job.summary,
               "messages": job.messages}
        if job.state == "done":
            out["result"] = f"/api/videos/{job.id}/result"
            out["download"] = f"/api/videos/{job.id}/result?download=1"
            out["media_type"] = job.media_type
        return out

    # ------------------------------------------------------------------ live
    def live_frame(self, stream, data: bytes, v: float, h: float, timestamp: float) -> Tuple[bytes, dict]:
        import cv2

        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise ApiError(422, "a live frame must be a JPEG or PNG image", "unreadable")
        self._check_pixels(frame.shape[1], frame.shape[0], "live frame")
        t0 = time.perf_counter()
        with self.compute:
            res = stream.process(frame, v, h, timestamp=timestamp)
        ms = (time.perf_counter() - t0) * 1e3
        ok, buf = cv2.imencode(".jpg", res.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError("OpenCV could not encode the frame")
        return buf.tobytes(), {"faces": len(res.faces), "eyes": res.eyes_redirected, "ms": round(ms, 1),
                               "width": int(frame.shape[1]), "height": int(frame.shape[0])}

    def close(self) -> None:
        with self._tables:
            jobs = list(self.videos.values())
        for j in jobs:
            j.cancel.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------- HTTP
async def _receive(request: Request, dest: Path, limit: int, what: str) -> int:
    """Stream the request body into ``dest``, at most ``limit`` bytes."""
    def too_large(n):
        return ApiError(413, f"the {what} is larger than the limit of {limit / MB:g} MB"
                             + (f" ({n / MB:.1f} MB)" if n else ""), "too_large")

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared))
    n = 0
    with open(dest, "wb") as f:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise too_large(0)
            f.write(chunk)
    if n == 0:
        raise ApiError(400, f"the {what} is empty (0 bytes): send the file as the request body", "empty")
    return n


def _service(request) -> GazeService:
    return request.app.state.service


async def index(request: Request):
    return HTMLResponse(request.app.state.page)


async def config(request: Request):
    from .. import __version__
    from ..samples import SAMPLE_FACES

    svc = _service(request)
    return JSONResponse({"max_angle": svc.max_angle, "limits": svc.limits.as_json(), "samples": list(SAMPLE_FACES),
                         "video": {"format": svc.video_format[1], "media_type": svc.video_format[2]},
                         "version": __version__})


async def upload_photo(request: Request):
    svc = _service(request)
    name = _display_name(request.query_params.get("name"), "photo")
    ident, folder = svc.new_folder()
    try:
        path = folder / "upload"
        await _receive(request, path, svc.limits.max_photo_bytes, "photo")
        image = await run_in_threadpool(svc.read_photo, path, name)
    finally:
        svc.discard(folder)
    photo = await run_in_threadpool(svc.add_photo, name, image)
    return JSONResponse(svc.describe(photo), status_code=201)


async def sample_photo(request: Request):
    from ..samples import SAMPLE_FACES, sample_face

    svc = _service(request)
    name = request.query_params.get("name", SAMPLE_FACES[0])
    if name not in SAMPLE_FACES:
        raise ApiError(404, f"no sample face named {name[:40]!r}: use one of {', '.join(SAMPLE_FACES)}", "unknown_sample")
    try:
        image = sample_face(name)
    except LookupError as exc:
        raise ApiError(404, str(exc), "unknown_sample") from None
    photo = await run_in_threadpool(svc.add_photo, f"{name}.png", image)
    return JSONResponse(svc.describe(photo), status_code=201)


def photo_info(request: Request):
    svc = _service(request)
    return JSONResponse(svc.describe(svc.photo(request.path_params["id"])))


def photo_image(request: Request):
    photo = _service(request).photo(request.path_params["id"])
    return Response(_encode(photo.image), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def redirect_photo(request: Request):
    svc = _service(request)
    photo = svc.photo(request.path_params["id"])
    v, h = svc.angles(request.query_params)
    fmt = request.query_params.get("format", "region")
    if fmt not in ("region", "png"):
        raise ApiError(422, f"format must be region or png, got {fmt[:20]!r}", "bad_format")
    res, ms = svc.redirect_photo(photo, v, h)
    headers = {"X-Compute-Ms": f"{ms:.1f}", "X-Eyes-Redirected": str(res.eyes_redirected), "Cache-Control": "no-store"}
    if fmt == "png":
        stem = photo.name.rsplit(".", 1)[0] or "photo"
        headers["Content-Disposition"] = _attachment(f"{stem}_gaze_v{v:+g}_h{h:+g}.png")
        return Response(_encode(res.image, compression=3), media_type="image/png", headers=headers)
    H, W = photo.image.shape[:2]
    box = changed_region(res, W, H, svc.redirector.config)
    if box is None or not bool(np.any(res.image[box[1]:box[3], box[0]:box[2]] != photo.image[box[1]:box[3], box[0]:box[2]])):
        return Response(status_code=204, headers={**headers, "X-Region": ""})
    x0, y0, x1, y1 = box
    headers["X-Region"] = f"{x0},{y0},{x1},{y1}"
    return Response(_encode(res.image[y0:y1, x0:x1]), media_type="image/png", headers=headers)


def delete_photo(request: Request):
    svc = _service(request)
    photo = svc.photo(request.path_params["id"])
    with svc._tables:
        svc.photos.pop(photo.id, None)
    return JSONResponse({"deleted": photo.id})


async def upload_video(request: Request):
    svc = _service(request)
    v, h = svc.angles(request.query_params)  # before the upload: a bad angle costs no transfer
    with svc._tables:
        busy = sum(j.state in ACTIVE for j in svc.videos.values())
    if busy >= svc.limits.max_queued_videos:
        raise ApiError(429, f"{busy} videos are already queued or running: try again when one is done", "busy")
    name = _display_name(request.query_params.get("name"), "video")
    ident, folder = svc.new_folder()
    try:
        path = folder / "input"
        await _receive(request, path, svc.limits.max_video_bytes, "video")
        job = await run_in_threadpool(svc.add_video, ident, folder, name, path, v, h)
    except BaseException:
        svc.discard(folder)
        raise
    return JSONResponse(svc.describe_job(job), status_code=202)


def video_status(request: Request):
    svc = _service(request)
    return JSONResponse(svc.describe_job(svc.video(request.path_params["id"])))


def video_result(request: Request):
    svc = _service(request)
    job = svc.video(request.path_params["id"])
    if job.state != "done":
        raise ApiError(409, f"the video is not ready (it is {job.state})", "not_ready")
    stem = job.name.rsplit(".", 1)[0] or "video"
    download = request.query_params.get("download") not in (None, "", "0")
    return FileResponse(job.output, media_type=job.media_type,
                        filename=f"{stem}_gaze_v{job.vertical:+g}_h{job.horizontal:+g}{job.output.suffix}",
                        content_disposition_type="attachment" if download else "inline")


def delete_video(request: Request):
    svc = _service(request)
    job = svc.video(request.path_params["id"])
    svc.remove_video(job)
    return JSONResponse({"deleted": job.id})


async def live(ws: WebSocket):
    svc: GazeService = ws.app.state.service
    await ws.accept()
    v = h = 0.0
    stream = svc.redirector.stream(0.0, 0.0, color="bgr")
    size = None
    t0 = time.monotonic()
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            is_frame = msg.get("text") is None
            try:
                if not is_frame:
                    try:
                        settings = json.loads(msg["text"])
                    except ValueError:
                        raise ApiError(400, "a text message must be JSON: {\"vertical\": v, \"horizontal\": h}", "bad_message") from None
                    if not isinstance(settings, dict):
                        raise ApiError(400, "a text message must be a JSON object", "bad_message")
                    v, h = svc.angles(settings)
                    await ws.send_json({"vertical": v, "horizontal": h})
                    continue
                data = msg.get("bytes") or b""
                if len(data) > svc.limits.max_live_frame_bytes:
                    raise ApiError(413, f"a live frame is larger than the limit of "
                                        f"{svc.limits.max_live_frame_bytes / MB:g} MB", "too_large")
                out, info = await run_in_threadpool(svc.live_frame, stream, data, v, h, time.monotonic() - t0)
                if size is not None and size != (info["width"], info["height"]):
                    stream.reset()  # a new camera size: start tracking over
                size = (info["width"], info["height"])
                await ws.send_json(info)
                await ws.send_bytes(out)
            except ApiError as exc:
                await ws.send_json({"error": exc.message, "code": exc.code, "frame": is_frame})
            except (WebSocketDisconnect, KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # one bad frame must not end the session
                await ws.send_json({"error": f"{type(exc).__name__}: {exc}", "code": "failed", "frame": is_frame})
    except WebSocketDisconnect:
        return
    finally:
        stream.close()  # the tracker's background detection worker


# ---------------------------------------------------------------------- the app
async def _api_error(request, exc: ApiError):
    return JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status)


async def _http_error(request, exc: HTTPException):
    return JSONResponse({"error": str(exc.detail), "code": f"http_{exc.status_code}"}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def create_app(redirector=None, *, limits: Optional[Limits] = None, temp_dir=None, **redirector_kwargs) -> Starlette:
    """The ASGI app around ``redirector`` (a GazeRedirector; None builds one from
    ``redirector_kwargs``: weights, backend, device, ...). Uploads go under a new
    folder in ``temp_dir`` (default: the system's), removed when the app stops."""
    if redirector is None:
        from ..face import GazeRedirector

        redirector = GazeRedirector(**redirector_kwargs)
    elif redirector_kwargs:
        raise ValueError("pass either a redirector or the arguments to build one, not both")
    service = GazeService(redirector, limits, temp_dir)
    page = resources.files("deepwarp_fast.web").joinpath("static", "index.html").read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            service.close()

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/photos", upload_photo, methods=["POST"]),
        Route("/api/photos/sample", sample_photo, methods=["POST"]),
        Route("/api/photos/{id}", photo_info),
        Route("/api/photos/{id}", delete_photo, methods=["DELETE"]),
        Route("/api/photos/{id}/image", photo_image),
        Route("/api/photos/{id}/redirect", redirect_photo),
        Route("/api/videos", upload_video, methods=["POST"]),
        Route("/api/videos/{id}", video_status),
        Route("/api/videos/{id}", delete_video, methods=["DELETE"]),
        Route("/api/videos/{id}/result", video_result),
        WebSocketRoute("/api/live", live),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ApiError: _api_error, HTTPException: _http_error})
    app.state.service = service
    app.state.page = page
    return app
