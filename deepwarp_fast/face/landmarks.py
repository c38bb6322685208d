"""Faces and 68-point landmarks: a face detector and dlib's 68-point shape predictor
(shipped by the face-recognition-models package; nothing is downloaded at run time).

Detectors (``FaceDetector(detector=...)``):
- "blazeface" (default): MediaPipe's BlazeFace short-range CNN, ported to PyTorch
  (face/blazeface.py; its weights ship in deepwarp_fast/weights, Apache-2.0). It runs on
  a small pyramid of whole resized frames (the network is fully convolutional), finds
  tilted, three-quarter, dark and small faces that HOG misses, and its boxes are mapped
  onto dlib-HOG-style boxes (calibrated on the bundled faces) for the shape predictor.
  ``runtime="numpy"`` runs the same network in numpy (face/blazeface_numpy.py, the same
  outputs to float32 rounding, about as fast on one thread) and never imports torch.
- "hog": dlib's HOG + linear SVM frontal face detector (2005).

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

DETECTORS = ("blazeface", "hog")
RUNTIMES = ("torch", "numpy")  # what runs BlazeFace
DEFAULT_DETECTOR = "blazeface"
# Default score cut-offs: dlib HOG's SVM margin; BlazeFace's probability. BlazeFace's
# false alarms on the hard set's textures (grayscale input) reach 0.72 and its faces
# mostly score above 0.8, so its cut-off is 0.75 (MediaPipe uses 0.5 on colour selfies).
DEFAULT_MIN_SCORE = {"hog": 0.3, "blazeface": 0.75}
# BlazeFace finds faces whose (HOG-style) box is about 26 to 110 px in its input: the
# pyramid puts every face size between min_face and the frame's short side in this band.
BLAZE_FACE_LO, BLAZE_FACE_HI, BLAZE_LEVEL_RATIO = 30.0, 90.0, 3.0
BLAZE_BORDER = 32  # px of mirrored margin around each pyramid level
# From this roll (degrees, BlazeFace's eye keypoints) on, landmarks() levels the face first.
BLAZE_LEVEL_ROLL = 10.0
# BlazeFace box (centre, side) -> dlib HOG box, fitted on the bundled faces (see
# tests/face_hardset.py, 20 pairs: side ratio 0.96 +- 0.10, centre offset +- 0.03 side).
BLAZE_TO_HOG_SCALE, BLAZE_TO_HOG_DX, BLAZE_TO_HOG_DY = 0.96, 0.0, 0.01


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
def _predictor():
    """dlib's 68-point shape predictor (reading its 100 MB file takes ~0.5 s: once)."""
    return _import_dlib().shape_predictor(shape_predictor_path())


@functools.lru_cache(maxsize=1)
def _hog():
    """dlib's HOG detector (~0.25 s to build: only for detector="hog")."""
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _blazeface():
    import torch

    from .blazeface import BlazeFace

    with torch.no_grad():
        return BlazeFace().eval()


@functools.lru_cache(maxsize=1)
def _blazeface_numpy():
    from .blazeface_numpy import BlazeFaceNumpy

    return BlazeFaceNumpy()


class FaceDetector:
    """Finds faces in a grayscale uint8 frame and places 68 landmarks on each.

    detector: "blazeface" (default, a CNN) or "hog" (dlib's HOG detector).
    min_face: the smallest face (box side, frame pixels) the full-frame search finds.
    HOG sees faces from 80 px: with min_face < 80 the frame is enlarged (slower),
    with min_face > 80 it is shrunk (faster). BlazeFace runs one more pyramid level
    for each factor of 3 between min_face and the frame's short side.
    min_score: full-frame detections scoring below it are dropped; None: the
    detector's default (DEFAULT_MIN_SCORE). HOG: dlib's SVM margin (its false alarms
    on clothes, textures score below ~0.2, real faces mostly above 0.5); BlazeFace: a
    probability (default 0.75; 0.3, HOG's old default that callers written for HOG
    pass, also means the default). The local search near a tracked face keeps weaker
    faces.
    runtime: what runs BlazeFace: "torch" (default) or "numpy" (the same network
    without torch, whose import alone takes ~1.2 s: for one photo that is most of the
    run).
    """

    def __init__(self, min_face: int = 80, min_score: Optional[float] = None, detector: str = DEFAULT_DETECTOR,
                 runtime: str = "torch"):
        if min_face < 10:
            raise ValueError(f"min_face must be at least 10 pixels, got {min_face}")
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.detector = detector
        self.runtime = runtime
        self.min_face = int(min_face)
        if min_score is None:
            min_score = DEFAULT_MIN_SCORE[detector]
        self.min_score = float(min_score)
        self._predictor = _predictor()
        self._detector = _hog() if detector == "hog" else None
        self._cnn = None
        if detector == "blazeface":
            self._cnn = _blazeface() if runtime == "torch" else _blazeface_numpy()
        self._roll: dict = {}  # box -> BlazeFace's eye-line angle (degrees), for landmarks()

    # ------------------------------------------------------------------ dlib HOG
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

    # ------------------------------------------------------------------ BlazeFace
    def pyramid(self, height: int, width: int) -> List[float]:
        """The scales at which BlazeFace sees the whole frame: the first puts the biggest
        face (the short side) at BLAZE_FACE_HI px, the last the smallest (min_face) at
        BLAZE_FACE_LO px, with at most a factor BLAZE_LEVEL_RATIO between levels."""
        first = BLAZE_FACE_HI / max(min(height, width), 1)
        last = max(BLAZE_FACE_LO / self.min_face, first)
        n = max(1, int(np.ceil(np.log(last / first) / np.log(BLAZE_LEVEL_RATIO) - 1e-6)) + 1)
        return [float(v) for v in np.geomspace(first, last, n)] if n > 1 else [first]

    def _blaze(self, gray: np.ndarray, scales: List[float], min_score: float, border: int = BLAZE_BORDER):
        """BlazeFace on ``gray`` resized by each scale: merged (boxes, scores, keypoints)
        in ``gray``'s pixels (BlazeFace's own boxes)."""
        import cv2

        from .blazeface_numpy import decode, weighted_nms

        H, W = gray.shape
        boxes, scores, kps = [], [], []
        for s in scales:
            w, h = max(1, int(round(W * s))), max(1, int(round(H * s)))
            img = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            # A mirrored margin gives a face cut by the border the rest of a face (recall on
            # the hard set's cut faces 4/13 -> 12/13, no false alarm); then whole stride-16 cells.
            P = border
            ph, pw = -(h + 2 * P) % 16, -(w + 2 * P) % 16
            img = cv2.copyMakeBorder(img, P, P + ph, P, P + pw, cv2.BORDER_REFLECT)
            reg, logit = self._net(img)
            b, sc, kp = decode(reg, logit, min_score, img.shape[0], img.shape[1])
            b, kp = b - P, kp - P
            c = (b[:, :2] + b[:, 2:]) / 2  # the mirror images of faces lie outside the frame
            inside = (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h)
            b, sc, kp = b[inside], sc[inside], kp[inside]
            sx, sy = w / W, h / H
            boxes.append(b / np.array([sx, sy, sx, sy], np.float32))
            kps.append(kp / np.array([sx, sy], np.float32))
            scores.append(sc)
        return weighted_nms(np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps))

    def _net(self, img: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """BlazeFace's raw (regressors (N, 16), logits (N,)) on a uint8 image."""
        if self.runtime == "numpy":
            reg, logit = self._cnn((img.astype(np.float32) / 127.5 - 1.0)[None, None])
            return reg[0], logit[0]
        import torch

        x = torch.from_numpy(img).float().div_(127.5).sub_(1.0)[None, None]
        with torch.inference_mode():  # channels_last: ~25% faster convolutions on the CPU
            reg, logit = self._cnn(x.contiguous(memory_format=torch.channels_last))
        return reg[0].numpy(), logit[0].numpy()

    @staticmethod
    def _to_hog_box(b: np.ndarray) -> Box:
        """A BlazeFace box -> the square, dlib-HOG-style box the shape predictor expects."""
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        side = max(b[2] - b[0], b[3] - b[1])
        cx, cy, half = cx + BLAZE_TO_HOG_DX * side, cy + BLAZE_TO_HOG_DY * side, BLAZE_TO_HOG_SCALE * side / 2
        return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))

    def _blaze_faces(self, gray, scales, min_score, border: int = BLAZE_BORDER,
                     offset=(0, 0)) -> List[Tuple[Box, float]]:
        boxes, scores, kps = self._blaze(gray, scales, min_score, border)
        out = []
        for b, s, kp in zip(boxes, scores, kps):
            box = self._to_hog_box(b)
            box = (box[0] + offset[0], box[1] + offset[1], box[2] + offset[0], box[3] + offset[1])
            # the eye line's angle (image y down): landmarks() levels the face with it
            (rx, ry), (lx, ly) = kp[0], kp[1]
            self._roll[box] = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
            out.append((box, float(s)))
        if len(self._roll) > 64:  # keep the latest faces only (pop: a tracker's background detection may prune too)
            for k in list(self._roll)[:-32]:
                self._roll.pop(k, None)
        return out

    def set_roll(self, box: Box, degrees: float) -> None:
        """Tell ``landmarks(gray, box)`` the face's roll (the eye line's angle, image y
        down): a tracker that predicts a box from the last landmarks knows it."""
        self._roll[tuple(int(v) for v in box)] = float(degrees)
        if len(self._roll) > 64:
            for k in list(self._roll)[:-32]:
                self._roll.pop(k, None)

    # ------------------------------------------------------------------ API
    def detect(self, gray: np.ndarray) -> List[Tuple[Box, float]]:
        """Every face in the whole frame: [(box, score)], best first."""
        _check_gray(gray)
        if self.detector == "blazeface":
            found = self._blaze_faces(gray, self.pyramid(*gray.shape), self.min_score)
            found = [(b, s) for b, s in found if b[2] - b[0] >= 0.8 * self.min_face]
        else:
            found = [bs for bs in self._run(gray, HOG_WINDOW / self.min_face) if bs[1] >= self.min_score]
        return sorted(found, key=lambda bs: -bs[1])

    def detect_near(self, gray: np.ndarray, box: Box, margin: float = 0.35, face_px: int = 90) -> Optional[Tuple[Box, float]]:
        """The best face in the region around ``box`` (grown by ``margin`` of its size on
        each side; BlazeFace: at least 0.5), searched at a scale where the face is
        ~``face_px`` wide (BlazeFace: 40 px, a ~96 px input); None if none. A few milliseconds where a full
        search of a 720p frame takes tens."""
        _check_gray(gray)
        H, W = gray.shape
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        if self.detector == "blazeface":
            margin, face_px = max(margin, 0.5), 40
        rx0, ry0 = max(0, int(x0 - margin * bw)), max(0, int(y0 - margin * bh))
        rx1, ry1 = min(W, int(x1 + margin * bw)), min(H, int(y1 + margin * bh))
        if rx1 - rx0 < 8 or ry1 - ry0 < 8:
            return None
        region = np.ascontiguousarray(gray[ry0:ry1, rx0:rx1])
        scale = face_px / max(bw, bh, 1)
        if self.detector == "blazeface":  # a mirrored margin only where the region meets the frame's border
            at_border = rx0 == 0 or ry0 == 0 or rx1 == W or ry1 == H
            found = self._blaze_faces(region, [scale], min(self.min_score, 0.3), BLAZE_BORDER if at_border else 0,
                                      offset=(rx0, ry0))
            if not found:
                return None
            return max(found, key=lambda bs: bs[1])
        else:
            found = self._run(region, scale)
        if not found:
            return None
        (bx0, by0, bx1, by1), score = max(found, key=lambda bs: bs[1])
        return (bx0 + rx0, by0 + ry0, bx1 + rx0, by1 + ry0), score

    def landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 landmarks of the face in ``box`` (dlib-68 order)."""
        import dlib

        roll = self._roll.get(tuple(int(v) for v in box), 0.0)
        if abs(roll) >= BLAZE_LEVEL_ROLL:
            return self._landmarks_levelled(gray, box, roll)
        x0, y0, x1, y1 = box
        shape = self._predictor(gray, dlib.rectangle(int(x0), int(y0), int(x1) - 1, int(y1) - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _landmarks_levelled(self, gray: np.ndarray, box: Box, roll: float) -> np.ndarray:
        """Landmarks of a rolled face (BlazeFace's eye line at ``roll`` degrees): the shape
        predictor runs on a crop rotated so that the eyes are level (it was trained on
        near-upright faces), and its points are rotated back."""
        import cv2
        import dlib

        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        n = int(round(2 * side))
        M = cv2.getRotationMatrix2D(((x0 + x1) / 2, (y0 + y1) / 2), roll, 1.0)
        M[:, 2] += n / 2 - np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        crop = cv2.warpAffine(gray, M, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        c0 = int(round((n - side) / 2))
        shape = self._predictor(crop, dlib.rectangle(c0, c0, c0 + side - 1, c0 + side - 1))
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        back = cv2.invertAffineTransform(M)
        return (np.c_[pts, np.ones(len(pts))] @ back.T).astype(np.float32)


def _check_gray(gray: np.ndarray) -> None:
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"the detector needs a 2-D uint8 grayscale frame, got "
                         f"{getattr(gray, 'dtype', type(gray).__name__)} of shape {getattr(gray, 'shape', None)}")
