"""Video and camera frames: :class:`GazeStream` (from ``GazeRedirector.stream``) keeps the
state between frames (face tracks, One-Euro smoothing of landmarks and pupils) and
:class:`NullFieldCache` reuses each tracked eye's angle-0 fields for a few frames."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional

import numpy as np

from .frame import _Frame
from .io import _check_color
from .profile import StageTimes, timer
from .results import FaceResult, RedirectResult
from .tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, FaceTracker, OneEuroFilter, Track

if TYPE_CHECKING:
    from .redirector import GazeRedirector


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
    the face's box is predicted from the last frame's landmarks. With ``background_detect``
    (the default) the periodic full detection, which only looks for new faces while every
    face is tracked, runs in a worker thread and joins the tracks a fixed few frames later
    (face.tracking.BACKGROUND_LAG): the same output, a spare core does the work; ``close()``
    (or a ``with`` block) stops the worker."""

    def __init__(self, redirector: GazeRedirector, vertical: float, horizontal: float, *, color: str = "bgr",
                 fps: float = 30.0, detect_every: int = 10, smooth: bool = True, min_cutoff: float = DEFAULT_MIN_CUTOFF,
                 beta: float = DEFAULT_BETA, null_refresh: int = 10, search_every: int = 3,
                 background_detect: bool = True):
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
                                   search_every=search_every, background=background_detect)
        self.null_cache = NullFieldCache(null_refresh)
        self.frame_index = 0

    def reset(self) -> None:
        self.tracker.reset()
        self.null_cache.clear()

    def close(self) -> None:
        """Stop the tracker's background detection worker (the stream can still process
        frames after, with a new worker)."""
        self.tracker.close()

    def __enter__(self) -> "GazeStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
