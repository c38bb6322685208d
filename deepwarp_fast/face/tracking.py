"""Tracking faces through a video and smoothing their landmarks over time.

Tracking: a full detection every ``detect_every`` frames (and whenever a track is
lost); in between, each face is searched for only in a small region around its last
box, which costs a few milliseconds instead of tens, and with ``search_every`` > 1 only
every that many frames: on the frames between, the box is predicted from the last
frame's landmarks (where the detector's box sat relative to them), which costs nothing.
With ``background=True`` and ``detect_every`` > ``BACKGROUND_LAG`` the periodic full
detection (which only looks for new faces while every face is tracked) runs in a worker thread and its result joins the tracks exactly
``BACKGROUND_LAG`` frames later, so the output does not depend on timing; the detector
releases the interpreter lock in its convolutions, so on a machine with a spare core the
frame loop no longer pays for it.

Smoothing: a One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) per coordinate:
a low-pass filter whose cutoff rises with speed, so a still face does not jitter and
a moving one does not lag. Coordinates are measured in units of the face's eye
distance, so the same parameters fit any face size.
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .landmarks import Box, FaceDetector


# Tuned on dlib landmarks of a real face in a synthetic video (sensor noise, a pan of
# 1.4 eye distances per second): frame-to-frame jitter of the eye points 0.36 -> 0.11 px,
# error while moving 0.29 -> ~0.5 px (a sub-frame lag).
DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 20.0
# Frames between submitting a background full detection and merging its result (fixed, so
# that the result does not depend on how fast the worker was).
BACKGROUND_LAG = 6


class OneEuroFilter:
    """One-Euro filter over an array of any shape, sampled at times ``t`` (seconds).

    min_cutoff (Hz): smoothing at rest (lower: steadier); beta: how fast the cutoff
    rises with speed (higher: less lag); d_cutoff (Hz): smoothing of the speed.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One-Euro parameters must be min_cutoff > 0, d_cutoff > 0, beta >= 0; "
                             f"got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t: Optional[float] = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = self._x + a * (x - self._x)
        self._t = float(t)
        return self._x.copy()


@dataclass
class Track:
    """One tracked face: its box, its age in frames, and its smoothing state."""

    id: int
    box: Box
    score: float
    frames: int = 0
    unit: float = 1.0  # eye distance (frame pixels) at the track's start: the smoothing unit
    landmark_filter: Optional[OneEuroFilter] = None
    pupil_filters: Dict[str, OneEuroFilter] = field(default_factory=dict)
    searched: bool = True  # this frame's box came from the detector (not predicted)
    since_search: int = 0  # frames since the detector last placed the box
    relation: Optional[np.ndarray] = None  # box relative to its landmarks (see box_from_landmarks)
    predicted: Optional[Box] = None  # the next frame's box from this frame's landmarks
    predicted_roll: float = 0.0

    def learn(self, landmarks: np.ndarray) -> None:
        """After the landmarks of this frame: on a detector's box, learn where that box sits
        relative to the landmarks; then predict the next frame's box from them."""
        c, scale = _landmark_frame(landmarks)
        if self.searched or self.relation is None:
            x0, y0, x1, y1 = self.box
            self.relation = np.array([((x0 + x1) / 2 - c[0]) / scale, ((y0 + y1) / 2 - c[1]) / scale,
                                      (x1 - x0) / scale, (y1 - y0) / scale])
        ox, oy, w, h = self.relation * scale
        cx, cy = c[0] + ox, c[1] + oy
        self.predicted = (int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(cx + w / 2)), int(round(cy + h / 2)))
        eyes = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
        self.predicted_roll = float(np.degrees(np.arctan2(eyes[1][1] - eyes[0][1], eyes[1][0] - eyes[0][0])))


def _landmark_frame(landmarks: np.ndarray):
    """(centroid, RMS distance from it) of 68 landmarks: where a face is and how big."""
    lm = np.asarray(landmarks, dtype=np.float64)
    c = lm.mean(0)
    return c, max(1.0, float(np.sqrt(((lm - c) ** 2).sum(1).mean())))


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Keeps the faces of a frame sequence. ``update(gray)`` returns the live tracks.

    A track whose local search fails is dropped and a full detection runs in the same
    frame, so a face that moved fast is found again at once; a face that is gone for a
    while costs one full detection every ``detect_every`` frames.
    """

    def __init__(self, detector: FaceDetector, detect_every: int = 10, max_faces: Optional[int] = None,
                 search_every: int = 1, background: bool = False):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if search_every < 1:
            raise ValueError(f"search_every must be >= 1, got {search_every}")
        self.detector = detector
        self.detect_every = int(detect_every)
        self.search_every = int(search_every)
        self.local_searches = 0
        self.max_faces = max_faces
        self.tracks: List[Track] = []
        self._next_id = 0
        self._since_detect = None  # frames since the last full detection
        self.full_detections = 0
        self.background = bool(background)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Tuple[Future, int]] = None  # (the detection, frames until it is merged)

    def reset(self) -> None:
        self.tracks = []
        self._since_detect = None
        self._drop_pending()

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[0].cancel()
            self._pending = None

    def close(self) -> None:
        """Stop the background worker (a pending detection is dropped)."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _detect(self, gray: np.ndarray):
        found = self.detector.detect(gray)
        return found[: self.max_faces] if self.max_faces is not None else found

    def _merge(self, found, current: bool) -> None:
        """Match a full detection's faces to the tracks (IoU > 0.3): a matched track takes
        the detection's box when the detection is of this frame (``current``), else keeps
        its own newer box; an unmatched face starts a track; a track no face matched ends
        (the detector did not see it)."""
        self.full_detections += 1
        kept: List[Track] = []
        unused = list(self.tracks)
        for box, score in found:
            best = max(unused, key=lambda t: iou(t.box, box), default=None)
            if best is not None and iou(best.box, box) > 0.3:
                unused.remove(best)
                if current:
                    best.box, best.score = box, score
                    best.searched, best.since_search = True, 0
                kept.append(best)
            else:
                kept.append(Track(self._next_id, box, score))
                self._next_id += 1
        self.tracks = kept

    def _full(self, gray: np.ndarray) -> None:
        self._drop_pending()  # this detection is newer
        self._merge(self._detect(gray), current=True)
        self._since_detect = 0

    def update(self, gray: np.ndarray) -> Tuple[List[Track], str]:
        """The tracks in this frame and how they were found ("detect" or "track")."""
        due = self._since_detect is None or self._since_detect + 1 >= self.detect_every
        # (with detect_every <= BACKGROUND_LAG the caller wants every detection in its own frame)
        if due and self.background and self.tracks and self._pending is None and self.detect_every > BACKGROUND_LAG:
            # every face is tracked: look for new ones in the worker, merge in BACKGROUND_LAG frames
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="deepwarp-detect")
            self._pending = (self._pool.submit(self._detect, gray.copy()), BACKGROUND_LAG)
            self._since_detect = -1  # counted as this frame's detection (0 after the increment below)
            due = False
        if due:
            self._full(gray)
            how = "detect"
        else:
            self._since_detect += 1
            if self._pending is not None and self._since_detect > 0:  # not in the frame it was submitted
                future, left = self._pending
                if left <= 1:
                    self._pending = None
                    self._merge(future.result(), current=False)  # a detection of an earlier frame
                else:
                    self._pending = (future, left - 1)
            lost = False
            for t in self.tracks:
                if t.predicted is not None and t.since_search + 1 < self.search_every:
                    # between searches: the box the last frame's landmarks predict
                    t.box, t.searched = t.predicted, False
                    t.since_search += 1
                    self.detector.set_roll(t.box, t.predicted_roll)
                    continue
                self.local_searches += 1
                hit = self.detector.detect_near(gray, t.box)
                if hit is None:
                    lost = True
                    break
                t.box, t.score = hit
                t.searched, t.since_search = True, 0
            how = "track"
            if lost:
                self._full(gray)
                how = "detect"
        for t in self.tracks:
            t.frames += 1
        return list(self.tracks), how
