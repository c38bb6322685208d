"""GazeRedirector: faces in, eyes redirected, everything else left as it was.

    from deepwarp_fast.face import GazeRedirector
    gr = GazeRedirector()                           # bundled default weights
    res = gr.redirect(rgb, vertical=10, horizontal=0, color="rgb")
    res.image, res.faces                            # same shape and dtype as rgb

For video or a camera, ``gr.stream(...)`` keeps tracking and smoothing state
between frames (``stream.process(frame)``).

Angles (SPEC.md): vertical > 0 moves the gaze up, horizontal > 0 towards the image's
right, in degrees, within the trained range +-config.max_angle. With ``level_roll``
(the default) the eye patches are levelled, so the angles are in the head's frame.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..config import DeepWarpConfig
from .eyes import EYE_CORNERS, EYE_POINTS, EyeCrop, eye_aspect_ratio, eye_crop, extract_patch
from .io import _check_color, image_format
from .landmarks import Box, FaceDetector
from .paste import feather_mask, paste_patch
from .profile import StageTimes, timer
from .pupil import estimate_pupil
from .tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, FaceTracker, OneEuroFilter, Track

SIDES = ("image_left", "image_right")
PASTE_MODES = ("native", "patch")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class NoDefaultWeightsWarning(UserWarning):
    """This install ships no default weights: the model is untrained (outputs = inputs)."""


class AngleRangeError(ValueError):
    """A redirection angle outside the range the weights were trained for."""


@dataclass
class EyeResult:
    """One eye: ``side`` "image_left" (dlib 36-41) or "image_right" (42-47), its corners
    and pupil in frame pixels, whether the pupil was found in the image (else the
    mean of the eyelid points), and whether it was redirected (else ``skipped`` says why)."""

    side: str
    corners: np.ndarray
    pupil: Optional[np.ndarray] = None
    pupil_found: bool = False
    redirected: bool = False
    skipped: Optional[str] = None
    crop: Optional[EyeCrop] = field(default=None, repr=False)


@dataclass
class FaceResult:
    """One face: box (x0, y0, x1, y1), detector score, (68, 2) landmarks, its eyes,
    ``skipped`` (why no eye was redirected, e.g. too small) and, in a stream, the track id."""

    box: Box
    score: float
    landmarks: np.ndarray
    eyes: List[EyeResult] = field(default_factory=list)
    skipped: Optional[str] = None
    track_id: Optional[int] = None

    @property
    def redirected(self) -> bool:
        return any(e.redirected for e in self.eyes)


@dataclass
class RedirectResult:
    """The output image (same shape and dtype as the input), the faces found, and
    messages about what was skipped and why."""

    image: np.ndarray
    faces: List[FaceResult]
    messages: List[str] = field(default_factory=list)

    @property
    def eyes_redirected(self) -> int:
        return sum(e.redirected for f in self.faces for e in f.eyes)


def check_angles(vertical, horizontal, max_angle: float) -> Tuple[float, float]:
    """(vertical, horizontal) as floats, or an AngleRangeError that states the range."""
    out = []
    for name, a in (("vertical", vertical), ("horizontal", horizontal)):
        try:
            a = float(a)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number of degrees, got {a!r}") from None
        if not math.isfinite(a) or abs(a) > max_angle:
            raise AngleRangeError(
                f"{name}={a:g} degrees is outside the range the weights were trained for: "
                f"[-{max_angle:g}, {max_angle:g}] (config.max_angle)")
        out.append(a)
    return out[0], out[1]


def load_redirect_model(weights=None, backend: str = "auto", device="cpu", fuse: bool = True):
    """The DeepWarp model from ``weights`` (a path) or the bundled default, in eval mode.

    ``fuse``: the accelerated model (deepwarp_fast.accelerate: BN folded, fused ops,
    the fastest backend; same outputs), or where that cannot be built, the model with
    its BatchNorms folded. Where this install ships no default weights, an untrained
    identity-initialised model with a NoDefaultWeightsWarning.
    """
    from ..model import DeepWarp
    from ..weights import default_weights_path, load_model

    if weights is None and default_weights_path() is None:
        warnings.warn("no default weights are bundled with this install; using an untrained, "
                      "identity-initialised model (the eyes come out unchanged); pass weights=...",
                      NoDefaultWeightsWarning, stacklevel=2)
        model = DeepWarp(backend=backend).to(device).eval()
    else:
        model = load_model(weights, backend=backend, device=device)
    if not fuse:
        return model
    try:
        from ..accelerate import accelerate

        return accelerate(model, backend=backend).eval()
    except Exception as exc:  # an optional speed-up: the folded model computes the same
        warnings.warn(f"the accelerated model is unavailable ({type(exc).__name__}: {exc}); "
                      "using the BN-folded PyTorch model", stacklevel=2)
        return model.fuse_bn()


class _Frame:
    """An input frame's format, its grayscale (uint8) for dlib, and views of its colour."""

    def __init__(self, image: np.ndarray, color: str):
        import cv2

        _check_color(color)
        self.maxval, self.channels = image_format(image)
        self.image, self.color = image, color
        src = image[..., 0] if (image.ndim == 3 and self.channels == 1) else image
        if src.dtype == np.float64:
            src = src.astype(np.float32)
        if self.channels == 3:
            src = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY if color == "rgb" else cv2.COLOR_BGR2GRAY)
        elif self.channels == 4:
            src = cv2.cvtColor(src, cv2.COLOR_RGBA2GRAY if color == "rgb" else cv2.COLOR_BGRA2GRAY)
        if src.dtype == np.uint16:
            src = (src >> 8).astype(np.uint8)
        elif src.dtype != np.uint8:
            src = np.clip(src * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.gray = np.ascontiguousarray(src)

    def colour_view(self, image: np.ndarray) -> np.ndarray:
        """The colour (or gray) channels of ``image`` in this frame's layout, as a view."""
        if image.ndim == 2:
            return image
        return image[..., 0] if self.channels == 1 else image[..., :3]

    def to_rgb01(self, patch: np.ndarray) -> np.ndarray:
        # Bicubic sampling can overshoot a float image's [0, 1]: the model wants [0, 1].
        p = np.clip(patch.astype(np.float32) * np.float32(1.0 / self.maxval), 0.0, 1.0)
        if p.ndim == 2:
            return np.repeat(p[..., None], 3, axis=2)
        return p[..., ::-1] if self.color == "bgr" else p

    def from_rgb01(self, patch: np.ndarray) -> np.ndarray:
        if self.channels == 1:
            return patch @ _LUMA
        return patch[..., ::-1] if self.color == "bgr" else patch

    def paste_channels(self):
        return slice(0, 1) if self.channels == 1 else slice(0, 3)


def _blend_region_leaves_frame(crop: EyeCrop, w: int, h: int, frame_w: int, frame_h: int) -> bool:
    """Whether the feathered ellipse around an eye (where the paste can change pixels)
    reaches outside the frame."""
    from .paste import MASK_AX, MASK_AY

    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    u = (w - 1) / 2.0 + MASK_AX * w / 2.0 * np.cos(t)
    v = (h - 1) / 2.0 + MASK_AY * h / 2.0 * np.sin(t)
    pts = crop.to_frame(np.stack([u, v], axis=1))
    return bool((pts[:, 0] < -0.5).any() or (pts[:, 1] < -0.5).any() or (pts[:, 0] > frame_w - 0.5).any()
                or (pts[:, 1] > frame_h - 0.5).any())


class GazeRedirector:
    """Redirects the gaze of every face in an image or a stream of frames.

    model: any callable ``model(eyes, anchors, angles) -> eyes`` following SPEC.md
    (a DeepWarp, an accelerated model); None loads ``weights`` or the bundled default.
    config: the patch geometry and angle range; defaults to ``model.config``.
    level_roll: level the eye corners in the patch (angles in the head's frame).
    min_face: the smallest face (pixels) a full-frame search finds (dlib HOG: 80 px
    natively; smaller values enlarge the frame, slower). min_eye_px: faces whose eyes
    are narrower (corner to corner, pixels) are found but skipped, with a message.
    closed_eye_ratio: an eye whose opening/width ratio is below it is left as it is.
    min_score: the detector score a new face needs (None: the detector's own default,
    BlazeFace 0.75 (a probability), HOG 0.3 (an SVM margin)); false alarms score low.
    detector: "blazeface" (a CNN, default) or "hog" (dlib's HOG, frontal faces only).
    paste: "native" (default) applies the network's flow and LCM mask to the frame's own
    pixels at full resolution (``ops.warp_frame``: the eye keeps its sharpness);
    "patch" pastes the network's 51x41 output patch back through the inverse crop (the
    original DeepWarp pipeline; softer on large eyes). A model without a ``fields``
    method (any callable returning images) always uses "patch".
    kernel: the frame resampling kernel of the native paste: "lanczos4" (default, the
    sharpest), "bicubic" or "bilinear".
    null_correction (native paste): subtract the fields the model predicts for the same
    eye at angle 0 (its bias: at angle 0 the true warp is the identity), so angle 0
    leaves the frame unchanged bit for bit and small angles move only the eye. Costs a
    second batch through the model.
    """

    def __init__(self, model: Optional[Callable] = None, *, weights=None, backend: str = "auto", device=None,
                 config: Optional[DeepWarpConfig] = None, level_roll: bool = True, min_face: int = 80,
                 min_eye_px: float = 10.0, closed_eye_ratio: float = 0.12, max_faces: Optional[int] = None,
                 min_score: Optional[float] = None, paste: str = "native", kernel: str = "lanczos4",
                 detector: str = "blazeface",
                 null_correction: bool = True):
        import torch

        from ..ops import FRAME_KERNELS

        if paste not in PASTE_MODES:
            raise ValueError(f"paste must be one of {PASTE_MODES}, got {paste!r}")
        if kernel not in FRAME_KERNELS:
            raise ValueError(f"kernel must be one of {FRAME_KERNELS}, got {kernel!r}")

        if model is None:
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = load_redirect_model(weights, backend=backend, device=device)
        elif weights is not None:
            raise ValueError("pass either model or weights, not both")
        if not callable(model):
            raise TypeError(f"model must be callable as model(eyes, anchors, angles), got {type(model).__name__}")
        self.model = model
        self.paste = paste
        self.kernel = kernel
        self.null_correction = bool(null_correction)
        self.config = config or getattr(model, "config", None) or DeepWarpConfig()
        if device is None:
            params = getattr(model, "parameters", None)
            first = next(iter(params()), None) if callable(params) else None
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.level_roll = bool(level_roll)
        if min_eye_px <= 0:
            raise ValueError(f"min_eye_px must be positive, got {min_eye_px}")
        self.min_eye_px = float(min_eye_px)
        self.closed_eye_ratio = float(closed_eye_ratio)
        self.max_faces = max_faces
        self.detector = FaceDetector(min_face=min_face, min_score=min_score, detector=detector)

    @classmethod
    def from_weights(cls, path=None, **kwargs) -> "GazeRedirector":
        """From a weights file (None: the bundled default)."""
        return cls(weights=path, **kwargs)

    def check_angles(self, vertical, horizontal) -> Tuple[float, float]:
        return check_angles(vertical, horizontal, self.config.max_angle)

    # ------------------------------------------------------------------ still images
    def redirect(self, image: np.ndarray, vertical: float = 0.0, horizontal: float = 0.0, *,
                 color: str = "rgb", faces: Optional[Sequence[FaceResult]] = None,
                 times: Optional[StageTimes] = None) -> RedirectResult:
        """Redirect every face of ``image``; ``color`` is its channel order ("rgb" or "bgr").

        image: (H, W) gray, (H, W, 1), (H, W, 3) or (H, W, 4) (alpha kept as is),
        uint8, uint16, or float in [0, 1]. Returns a new array of the same shape and
        dtype: outside the eye regions it equals ``image`` pixel for pixel.
        faces: the faces of an earlier result on the same image, to redirect it to
        other angles without detecting again.
        """
        v, h = self.check_angles(vertical, horizontal)
        t = timer(times)
        frame = _Frame(image, color)
        if faces is not None:
            faces = [FaceResult(f.box, f.score, f.landmarks, track_id=f.track_id) for f in faces]
            return self._redirect_faces(frame, faces, v, h, times)
        with t("detect/track"):
            found = self.detector.detect(frame.gray)
        if self.max_faces is not None:
            found = found[: self.max_faces]
        with t("landmarks"):
            faces = [FaceResult(box, score, self.detector.landmarks(frame.gray, box)) for box, score in found]
        return self._redirect_faces(frame, faces, v, h, times)

    def redirect_file(self, src, dst, vertical: float = 0.0, horizontal: float = 0.0) -> RedirectResult:
        """Read an image file, redirect, write ``dst`` (the same depth, channels and alpha)."""
        from .io import read_image, write_image

        img = read_image(src, color="bgr")
        res = self.redirect(img, vertical, horizontal, color="bgr")
        res.messages += write_image(dst, res.image, color="bgr")
        return res

    # ------------------------------------------------------------------ video
    def stream(self, vertical: float = 0.0, horizontal: float = 0.0, *, color: str = "bgr", fps: float = 30.0,
               detect_every: int = 10, smooth: bool = True, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
               null_refresh: int = 10, search_every: int = 3) -> "GazeStream":
        """A stateful redirector for the frames of one video or camera (see GazeStream)."""
        return GazeStream(self, vertical, horizontal, color=color, fps=fps, detect_every=detect_every,
                          smooth=smooth, min_cutoff=min_cutoff, beta=beta, null_refresh=null_refresh,
                          search_every=search_every)

    # ------------------------------------------------------------------ the core
    def _redirect_faces(self, frame: _Frame, faces: List[FaceResult], v: float, h: float,
                        times: Optional[StageTimes], pupil_filter=None, null_cache: Optional["NullFieldCache"] = None) -> RedirectResult:
        import torch

        t = timer(times)
        cfg = self.config
        Hp, Wp = cfg.height, cfg.width
        out = frame.image.copy()
        messages: List[str] = []
        if not faces:
            return RedirectResult(out, faces, messages)
        src = frame.colour_view(frame.image)
        Hf, Wf = frame.gray.shape
        batch_patches, batch_anchors, batch_angles, batch_eyes, batch_keys = [], [], [], [], []
        with t("crop"):
            for face in faces:
                lm = face.landmarks
                widths = [float(np.hypot(*(lm[b] - lm[a]))) for a, b in EYE_CORNERS.values()]
                face.eyes = [EyeResult(side, lm[list(EYE_CORNERS[side])].copy()) for side in SIDES]
                if min(widths) < self.min_eye_px:
                    face.skipped = (f"face at {face.box}: eyes {min(widths):.0f} px wide, below min_eye_px="
                                    f"{self.min_eye_px:g}; left unchanged")
                    for e in face.eyes:
                        e.skipped = "too small"
                    messages.append(face.skipped)
                    continue
                for eye in face.eyes:
                    pts = lm[list(EYE_POINTS[eye.side])]
                    if (pts[:, 0].min() < 0 or pts[:, 1].min() < 0 or pts[:, 0].max() > Wf - 1 or pts[:, 1].max() > Hf - 1):
                        eye.skipped = "cut by the image border"
                        messages.append(f"face at {face.box}: the {eye.side.replace('_', '-')} eye is cut by the image border; left unchanged")
                        continue
                    crop = eye_crop(lm, eye.side, Wp, Hp, cfg.crop_scale, self.level_roll)
                    eye.crop = crop
                    if _blend_region_leaves_frame(crop, Wp, Hp, Wf, Hf):
                        messages.append(f"face at {face.box}: the {eye.side.replace('_', '-')} eye's blend region reaches "
                                        "past the image border; redirected from the visible part (check the result)")
                    if eye_aspect_ratio(crop.eyelid) < self.closed_eye_ratio:
                        eye.skipped = "closed"
                        messages.append(f"face at {face.box}: the {eye.side.replace('_', '-')} eye is closed; left unchanged")
                        continue
                    patch = frame.to_rgb01(extract_patch(src, crop, Wp, Hp))
                    pupil, eye.pupil_found = estimate_pupil(patch, crop.eyelid)
                    pupil_frame = crop.to_frame(pupil)[0]
                    if pupil_filter is not None:
                        pupil_frame = pupil_filter(face, eye.side, pupil_frame)
                        pupil = crop.to_patch(pupil_frame)[0]
                    eye.pupil = pupil_frame
                    batch_patches.append(patch)
                    batch_anchors.append(np.concatenate([crop.eyelid, np.asarray(pupil, np.float32)[None]], axis=0))
                    batch_angles.append((v, -h if crop.mirrored else h))
                    batch_eyes.append(eye)
                    batch_keys.append((face.track_id, eye.side) if face.track_id is not None else None)
        if not batch_eyes:
            return RedirectResult(out, faces, messages)
        native = self.paste == "native" and callable(getattr(self.model, "fields", None))
        with t("model"):
            eyes_t = torch.from_numpy(np.stack(batch_patches)).permute(0, 3, 1, 2).to(self.device).contiguous()
            anchors_t = torch.from_numpy(np.stack(batch_anchors).astype(np.float32)).to(self.device)
            angles_t = torch.tensor(batch_angles, dtype=torch.float32, device=self.device)
            with torch.inference_mode():
                if native:
                    flow, mask = self._fields(eyes_t, anchors_t, angles_t, batch_keys, null_cache)
                    finite = torch.isfinite(flow).flatten(1).all(1)
                    if mask is not None:
                        finite &= torch.isfinite(mask).flatten(1).all(1)
                else:
                    res = self.model(eyes_t, anchors_t, angles_t).float()
                    finite = torch.isfinite(res).flatten(1).all(1).cpu()
                    res = res.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        ok = finite.tolist()
        for eye, good in zip(batch_eyes, ok):
            if not good:
                eye.skipped = "the model's output is not finite"
                messages.append(f"the {eye.side.replace('_', '-')} eye: the model returned NaN or infinite values "
                                "(damaged weights?); left unchanged")
                warnings.warn(messages[-1], RuntimeWarning, stacklevel=3)
        with t("paste"):
            if native:
                keep = [i for i, good in enumerate(ok) if good]
                if keep:
                    out = self._warp_native(out, frame, [batch_eyes[i] for i in keep], flow[keep],
                                            mask[keep] if mask is not None else None)
            else:
                for eye, patch, good in zip(batch_eyes, res, ok):
                    if good:
                        paste_patch(out, frame.from_rgb01(patch), eye.crop, frame.maxval, frame.paste_channels())
                        eye.redirected = True
        return RedirectResult(out, faces, messages)

    def _fields(self, eyes_t, anchors_t, angles_t, keys=None, cache: Optional["NullFieldCache"] = None):
        """(flow, mask) on the CPU; with ``null_correction``, minus the fields the model
        predicts for the same eyes at angle 0 (one batch of both). In a stream, ``cache``
        keeps each tracked eye's angle-0 fields for a few frames (``keys``: per eye its
        (track id, side) or None), so most frames run the model once."""
        import torch

        if not self.null_correction:
            flow, mask = self.model.fields(eyes_t, anchors_t, angles_t)
            return flow.float().cpu(), (mask.float().cpu() if mask is not None else None)
        E = eyes_t.shape[0]
        if not bool(angles_t.any()):  # angle 0 with the correction: exactly nothing to do
            h, w = eyes_t.shape[-2:]
            return torch.zeros(E, 2, h, w), torch.zeros(E, 1, h, w)
        keys = keys if keys is not None else [None] * E
        need = [i for i in range(E) if cache is None or not cache.fresh(keys[i])]
        flow, mask = self.model.fields(torch.cat([eyes_t, eyes_t[need]]), torch.cat([anchors_t, anchors_t[need]]),
                                       torch.cat([angles_t, torch.zeros_like(angles_t[need])]))
        flow, mask = flow.float().cpu(), (mask.float().cpu() if mask is not None else None)
        flow0 = [None] * E
        mask0 = [None] * E
        for j, i in enumerate(need):
            flow0[i], mask0[i] = flow[E + j], (mask[E + j] if mask is not None else None)
            if cache is not None:
                cache.put(keys[i], flow0[i], mask0[i])
        for i in range(E):
            if flow0[i] is None:
                flow0[i], mask0[i] = cache.get(keys[i])
        flow = flow[:E] - torch.stack(flow0)
        if mask is not None:
            mask = (mask[:E] - torch.stack(mask0)).clamp(0, 1)
        return flow, mask

    def _warp_native(self, out: np.ndarray, frame: "_Frame", eyes: List[EyeResult], flow, mask) -> np.ndarray:
        """Apply the fields of ``eyes`` to ``out`` (a copy of the frame) at full resolution."""
        import torch

        from ..ops import warp_frame

        for e in eyes:
            e.redirected = True
        if not bool(flow.any()) and (mask is None or not bool(mask.any())):
            return out  # zero fields are the identity (angle 0 with null correction)

        def as_frames(a):
            return torch.from_numpy(a if a.ndim == 3 else a[..., None])[None]

        cfg = self.config
        src = frame.image if frame.image.flags.c_contiguous else np.ascontiguousarray(frame.image)
        A = torch.from_numpy(np.stack([e.crop.A for e in eyes]))
        feather = torch.from_numpy(feather_mask(cfg.height, cfg.width))
        index = torch.zeros(len(eyes), dtype=torch.long)
        # ``out`` is already a copy of the frame: the op writes the eyes' pixels into it.
        warp_frame(as_frames(src), index, A, flow, mask, feather, kernel=self.kernel,
                   channels=min(frame.channels, 3), backend="auto", out=as_frames(out))
        return out


class NullFieldCache:
    """A stream's angle-0 fields per tracked eye, reused for ``refresh`` frames: the eye's
    crop follows it, so its patch (and the model's bias on it) changes little between
    frames, and the model then runs once per frame instead of twice."""

    def __init__(self, refresh: int = 10):
        if refresh < 1:
            raise ValueError(f"refresh must be at least 1 frame, got {refresh}")
        self.refresh = int(refresh)
        self.frame = 0
        self._store = {}

    def tick(self) -> None:
        self.frame += 1
        # forget eyes not seen for a while (lost tracks)
        self._store = {k: v for k, v in self._store.items() if self.frame - v[0] < 4 * self.refresh}

    def fresh(self, key) -> bool:
        hit = self._store.get(key) if key is not None else None
        return hit is not None and self.frame - hit[0] < self.refresh

    def put(self, key, flow, mask) -> None:
        if key is not None:
            self._store[key] = (self.frame, flow, mask)

    def get(self, key):
        return self._store[key][1:]

    def clear(self) -> None:
        self._store.clear()


class GazeStream:
    """Frames of one video or camera: tracking (a full detection every ``detect_every``
    frames or when a face is lost, a cheap local search otherwise) and One-Euro
    smoothing of the landmarks and pupils (``smooth``), so eyes neither jitter nor
    flicker. ``process(frame)`` returns a RedirectResult; ``reset()`` starts over
    (e.g. at a scene cut). With the redirector's null correction, each tracked eye's
    angle-0 fields are recomputed every ``null_refresh`` frames and reused between. The
    detector searches near each face every ``search_every`` frames; on the frames between,
    the face's box is predicted from the last frame's landmarks."""

    def __init__(self, redirector: GazeRedirector, vertical: float, horizontal: float, *, color: str = "bgr",
                 fps: float = 30.0, detect_every: int = 10, smooth: bool = True, min_cutoff: float = DEFAULT_MIN_CUTOFF,
                 beta: float = DEFAULT_BETA, null_refresh: int = 10, search_every: int = 3):
        _check_color(color)
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.redirector = redirector
        self.vertical, self.horizontal = redirector.check_angles(vertical, horizontal)
        self.color = color
        self.fps = float(fps)
        self.smooth = bool(smooth)
        self.min_cutoff, self.beta = float(min_cutoff), float(beta)
        OneEuroFilter(min_cutoff, beta)  # validates the parameters now
        self.tracker = FaceTracker(redirector.detector, detect_every=detect_every, max_faces=redirector.max_faces,
                                   search_every=search_every)
        self.null_cache = NullFieldCache(null_refresh)
        self.frame_index = 0

    def reset(self) -> None:
        self.tracker.reset()
        self.null_cache.clear()

    def _filter(self) -> OneEuroFilter:
        return OneEuroFilter(self.min_cutoff, self.beta)

    def process(self, frame: np.ndarray, vertical: Optional[float] = None, horizontal: Optional[float] = None,
                times: Optional[StageTimes] = None, timestamp: Optional[float] = None) -> RedirectResult:
        """Redirect one frame (angles default to the stream's). ``timestamp`` (seconds,
        increasing) is the frame's capture time, for a camera with an uneven frame rate;
        by default frames are 1/fps apart."""
        v, h = self.vertical, self.horizontal
        if vertical is not None or horizontal is not None:
            v, h = self.redirector.check_angles(v if vertical is None else vertical, h if horizontal is None else horizontal)
        t = timer(times)
        fr = _Frame(frame, self.color)
        now = self.frame_index / self.fps if timestamp is None else float(timestamp)
        self.frame_index += 1
        with t("detect/track"):
            tracks, _ = self.tracker.update(fr.gray)
        faces: List[FaceResult] = []
        by_face = {}
        with t("landmarks"):
            for tr in tracks:
                lm = self.redirector.detector.landmarks(fr.gray, tr.box)
                tr.learn(lm)
                if self.smooth:
                    lm = self._smooth_landmarks(tr, lm, now)
                face = FaceResult(tr.box, tr.score, lm, track_id=tr.id)
                by_face[id(face)] = tr
                faces.append(face)

        def pupil_filter(face, side, xy):
            tr = by_face[id(face)]
            f = tr.pupil_filters.get(side)
            if f is None:
                f = tr.pupil_filters[side] = self._filter()
            return f(xy / tr.unit, now) * tr.unit

        self.null_cache.tick()
        return self.redirector._redirect_faces(fr, faces, v, h, times, pupil_filter if self.smooth else None,
                                               null_cache=self.null_cache)

    def _smooth_landmarks(self, tr: Track, lm: np.ndarray, now: float) -> np.ndarray:
        if tr.landmark_filter is None:
            # Eye distance: the unit that makes the filter's parameters size-free.
            tr.unit = max(1.0, float(np.hypot(*(lm[42:48].mean(0) - lm[36:42].mean(0)))))
            tr.landmark_filter = self._filter()
        return (tr.landmark_filter(lm / tr.unit, now) * tr.unit).astype(np.float32)
