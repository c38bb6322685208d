"""Faces and 68-point landmarks with dlib: the HOG face detector and the shape predictor
shipped by the face-recognition-models package (nothing is downloaded at run time).

dlib is imported lazily, so the rest of deepwarp_fast imports on machines without it.

Convention: boxes are (x0, y0, x1, y1) in full-resolution frame pixels (x1, y1
exclusive); landmarks are (68, 2) float32 (x, y) in frame pixels, dlib-68 order.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import List, Optional, Tuple

import numpy as np

Box = Tuple[int, int, int, int]

# dlib's HOG detector scans an 80x80 window: smaller faces need an enlarged image.
HOG_WINDOW = 80


class FaceModelsUnavailableError(RuntimeError):
    """dlib or the landmark model file is missing; the message says how to install them."""


def _import_dlib():
    try:
        import dlib  # noqa: F401
    except ImportError as exc:
        raise FaceModelsUnavailableError(
            f"the face pipeline needs dlib ({exc}); install the prebuilt wheel: pip install dlib-bin "
            "(never the source package `dlib`, which compiles for a long time)"
        ) from exc
    return dlib


def shape_predictor_path() -> str:
    """The 68-point model file of the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    # `import face_recognition_models` needs pkg_resources; finding its folder does not.
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsUnavailableError(
            "the 68-point landmark model is missing: pip install face-recognition-models==0.3.0"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise FaceModelsUnavailableError(f"{path} is missing: reinstall face-recognition-models==0.3.0")
    return path


@functools.lru_cache(maxsize=1)
def _models():
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(shape_predictor_path())


class FaceDetector:
    """Finds faces in a grayscale uint8 frame and places 68 landmarks on each.

    min_face: the smallest face (box side, frame pixels) the full-frame search finds.
    HOG sees faces from 80 px: with min_face < 80 the frame is enlarged (slower),
    with min_face > 80 it is shrunk (faster).
    min_score: full-frame detections scoring below it are dropped. dlib's own
    threshold is 0; its false alarms (on clothes, textures) score below ~0.2, real
    faces mostly above 0.5. The local search near a tracked face keeps any score.
    """

    def __init__(self, min_face: int = 80, min_score: float = 0.3):
        if min_face < 10:
            raise ValueError(f"min_face must be at least 10 pixels, got {min_face}")
        self.min_face = int(min_face)
        self.min_score = float(min_score)
        self._detector, self._predictor = _models()

    def _run(self, gray: np.ndarray, scale: float) -> List[Tuple[Box, float]]:
        import cv2

        img = gray
        if abs(scale - 1.0) > 1e-3:
            h, w = gray.shape
            size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
            img = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        rects, scores, _ = self._detector.run(img, 0, 0.0)
        out = []
        for r, s in zip(rects, scores):
            box = (int(round(r.left() / scale)), int(round(r.top() / scale)),
                   int(round((r.right() + 1) / scale)), int(round((r.bottom() + 1) / scale)))
            out.append((box, float(s)))
        return out

    def detect(self, gray: np.ndarray) -> List[Tuple[Box, float]]:
        """Every face in the whole frame: [(box, score)], best first."""
        _check_gray(gray)
        found = [bs for bs in self._run(gray, HOG_WINDOW / self.min_face) if bs[1] >= self.min_score]
        return sorted(found, key=lambda bs: -bs[1])

    def detect_near(self, gray: np.ndarray, box: Box, margin: float = 0.35, face_px: int = 90) -> Optional[Tuple[Box, float]]:
        """The best face in the region around ``box`` (grown by ``margin`` of its size on
        each side), searched at a scale where the face is ~``face_px`` wide; None if none.
        A few milliseconds where a full search of a 720p frame takes tens."""
        _check_gray(gray)
        H, W = gray.shape
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        rx0, ry0 = max(0, int(x0 - margin * bw)), max(0, int(y0 - margin * bh))
        rx1, ry1 = min(W, int(x1 + margin * bw)), min(H, int(y1 + margin * bh))
        if rx1 - rx0 < 8 or ry1 - ry0 < 8:
            return None
        region = gray[ry0:ry1, rx0:rx1]
        found = self._run(np.ascontiguousarray(region), face_px / max(bw, bh, 1))
        if not found:
            return None
        (bx0, by0, bx1, by1), score = max(found, key=lambda bs: bs[1])
        return (bx0 + rx0, by0 + ry0, bx1 + rx0, by1 + ry0), score

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 landmarks of the face in ``box`` (dlib-68 order)."""
        import dlib

        x0, y0, x1, y1 = box
        shape = self._predictor(gray, dlib.rectangle(int(x0), int(y0), int(x1) - 1, int(y1) - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _check_gray(gray: np.ndarray) -> None:
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"the detector needs a 2-D uint8 grayscale frame, got "
                         f"{getattr(gray, 'dtype', type(gray).__name__)} of shape {getattr(gray, 'shape', None)}")
