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

Where the parts live: the model's loading in ``loading``, the per-frame core (crop,
one model batch, paste) in ``frame``, the result records in ``results``, the video
stream and its null-field cache in ``stream``; this module keeps the photo API and
re-exports the names it has always offered.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ..config import DeepWarpConfig
# Some of these names are not used here: they are re-exported (__all__), as they have
# always been importable from this module.
from .eyes import EYE_CORNERS, EYE_POINTS, EyeCrop, eye_aspect_ratio, eye_crop, extract_patch
from .frame import SIDES, _Frame, _FrameRedirector
from .io import image_format
from .landmarks import Box, FaceDetector
from .loading import NoDefaultWeightsWarning, load_redirect_model
from .paste import feather_mask, paste_patch
from .profile import StageTimes, timer
from .pupil import estimate_pupil
from .results import EyeResult, FaceResult, RedirectResult
from .stream import GazeStream, NullFieldCache
from .tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, FaceTracker, OneEuroFilter, Track

PASTE_MODES = ("native", "patch")


class AngleRangeError(ValueError):
    """A redirection angle outside the range the weights were trained for."""


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


class GazeRedirector(_FrameRedirector):
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
        from ..numpy_ops import FRAME_KERNELS

        if paste not in PASTE_MODES:
            raise ValueError(f"paste must be one of {PASTE_MODES}, got {paste!r}")
        if kernel not in FRAME_KERNELS:
            raise ValueError(f"kernel must be one of {FRAME_KERNELS}, got {kernel!r}")

        if model is None and backend == "numpy":
            # The network in NumPy: nothing here imports torch (the one-photo CLI's start-up).
            if device not in (None, "cpu"):
                raise ValueError(f"backend 'numpy' runs on the CPU, got device {device!r}")
            from ..numpy_model import load_numpy_model

            model = load_numpy_model(weights)
        elif model is None:
            import torch

            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            model = load_redirect_model(weights, backend=backend, device=device)
        elif weights is not None:
            raise ValueError("pass either model or weights, not both")
        if not callable(model):
            raise TypeError(f"model must be callable as model(eyes, anchors, angles), got {type(model).__name__}")
        self.model = model
        self.numpy = getattr(model, "backend", None) == "numpy"
        self.paste = paste
        self.kernel = kernel
        self.null_correction = bool(null_correction)
        self.config = config or getattr(model, "config", None) or DeepWarpConfig()
        if self.numpy:
            self.device = "cpu"
        else:
            import torch

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
        self.detector = FaceDetector(min_face=min_face, min_score=min_score, detector=detector,
                                     runtime="numpy" if self.numpy else "torch")

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
               null_refresh: int = 10, search_every: int = 3, background_detect: bool = True) -> "GazeStream":
        """A stateful redirector for the frames of one video or camera (see GazeStream)."""
        return GazeStream(self, vertical, horizontal, color=color, fps=fps, detect_every=detect_every,
                          smooth=smooth, min_cutoff=min_cutoff, beta=beta, null_refresh=null_refresh,
                          search_every=search_every, background_detect=background_detect)


__all__ = [
    # defined here
    "AngleRangeError", "GazeRedirector", "PASTE_MODES", "check_angles",
    # at home in loading, frame, results and stream
    "EyeResult", "FaceResult", "GazeStream", "NoDefaultWeightsWarning", "NullFieldCache", "RedirectResult", "SIDES",
    "load_redirect_model",
    # from the other face modules, importable from here as before
    "Box", "DEFAULT_BETA", "DEFAULT_MIN_CUTOFF", "DeepWarpConfig", "EYE_CORNERS", "EYE_POINTS", "EyeCrop",
    "FaceDetector", "FaceTracker", "OneEuroFilter", "StageTimes", "Track", "estimate_pupil", "extract_patch",
    "eye_aspect_ratio", "eye_crop", "feather_mask", "image_format", "paste_patch", "timer",
]
