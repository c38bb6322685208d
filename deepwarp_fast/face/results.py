"""What a redirection returns: :class:`RedirectResult` (the output image and messages),
one :class:`FaceResult` per face and one :class:`EyeResult` per eye (where it was, whether
it was redirected, and if not, why)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .eyes import EyeCrop
from .landmarks import Box


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
