"""Tracking faces through a video and smoothing their landmarks over time.

Tracking: a full detection every ``detect_every`` frames (and whenever a track is
lost); in between, each face is searched for only in a small region around its last
box, which costs a few milliseconds instead of tens.

Smoothing: a One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) per coordinate:
a low-pass filter whose cutoff rises with speed, so a still face does not jitter and
a moving one does not lag. Coordinates are measured in units of the face's eye
distance, so the same parameters fit any face size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .landmarks import Box, FaceDetector


# Tuned on dlib landmarks of a real face in a synthetic video (sensor noise, a pan of
# 1.4 eye distances per second): frame-to-frame jitter of the eye points 0.36 -> 0.11 px,
# error while moving 0.29 -> ~0.5 px (a sub-frame lag).
DEFAULT_MIN_CUTOFF = 1.0
DEFAULT_BETA = 20.0


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

    def __init__(self, detector: FaceDetector, detect_every: int = 10, max_faces: Optional[int] = None):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detector = detector
        self.detect_every = int(detect_every)
        self.max_faces = max_faces
        self.tracks: List[Track] = []
        self._next_id = 0
        self._since_detect = None  # frames since the last full detection
        self.full_detections = 0

    def reset(self) -> None:
        self.tracks = []
        self._since_detect = None

    def _full(self, gray: np.ndarray) -> None:
        found = self.detector.detect(gray)
        if self.max_faces is not None:
            found = found[: self.max_faces]
        self.full_detections += 1
        kept: List[Track] = []
        unused = list(self.tracks)
        for box, score in found:
            best = max(unused, key=lambda t: iou(t.box, box), default=None)
            if best is not None and iou(best.box, box) > 0.3:
                unused.remove(best)
                best.box, best.score = box, score
                kept.append(best)
            else:
                kept.append(Track(self._next_id, box, score))
                self._next_id += 1
        self.tracks = kept
        self._since_detect = 0

    def update(self, gray: np.ndarray) -> Tuple[List[Track], str]:
        """The tracks in this frame and how they were found ("detect" or "track")."""
        if self._since_detect is None or self._since_detect + 1 >= self.detect_every:
            self._full(gray)
            how = "detect"
        else:
            self._since_detect += 1
            lost = False
            for t in self.tracks:
                hit = self.detector.detect_near(gray, t.box)
                if hit is None:
                    lost = True
                    break
                t.box, t.score = hit
            how = "track"
            if lost:
                self._full(gray)
                how = "detect"
        for t in self.tracks:
            t.frames += 1
        return list(self.tracks), how
