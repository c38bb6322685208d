"""Loaders for real gaze data: UnityEyes, Columbia Gaze, and a plain folder + CSV.

Each is a map-style ``torch.utils.data.Dataset`` of PAIRS (input eye, target eye of the
same person and eye, different gaze) yielding the dict of :mod:`deepwarp_fast.data`
(input, target, anchors, angles, tilt), in the canonical frame of SPEC.md: an eye on
the image's right (the person's left eye) is mirrored, its horizontal angle and tilt
negated. Eyes are cut like the face pipeline does (SPEC.md, "Eye patch extraction"):
centre = midpoint of the corners, patch width = crop_scale x corner distance,
optionally rotated so the corners are level (``level_roll``, the pipeline's default).

Corrupt or partial files never crash an epoch: a pair whose file cannot be read is
replaced by the next readable pair, the file is reported once (a warning) and counted
in ``skipped`` (``skipped_files`` lists them). Metadata that cannot be parsed is skipped
when the dataset is built (counted in ``skipped`` too, with one summary warning).

Formats
-------
UnityEyes (``UnityEyesPairs(root)``): ``N.jpg`` + ``N.json`` pairs anywhere under
root. From the JSON: ``interior_margin_2d`` (lid margin loop), ``caruncle_2d``,
``iris_2d`` (lists of "(x, y, z)" strings, pixels with y pointing UP from the image's
bottom) and ``eye_details.look_vec`` "(x, y, z, 0)" (x to the image's right, y up, z
away from the camera: vertical = asin(y), horizontal = atan2(x, -z)). The outer corner
is the margin point farthest from the caruncle, the inner corner the margin or
caruncle point farthest from the outer corner; the lid points are the margin's upper
and lower chains at 1/3 and 2/3 of the way between the corners; the pupil is the
iris contour's mean. The eye whose caruncle is on the image's left is an image-right
eye and is mirrored. Pairs: images of the same group (``group_by="folder"``: the same
directory, so put one rendered identity per folder; or a callable(json, path) -> key).

Columbia Gaze (``ColumbiaGazePairs(root)``): ``<subject>/<subject>_<d>m_<P>P_<V>V_<H>H.jpg``
(e.g. ``0001/0001_2m_-15P_10V_-5H.jpg``: head pose P, vertical gaze V, horizontal gaze
H, degrees). Pairs: same subject, distance and head pose, same eye, different gaze.
V > 0 is taken as up and H > 0 as towards the image's right; pass ``h_sign=-1`` (or
``v_sign``) if your copy is the other way. Eyes are found with the face pipeline
(deepwarp_fast.face: dlib landmarks, ``eye_crop``, ``estimate_pupil``) once per image
and cached (in memory, and in ``cache_dir`` when given). Images where no face is found
are skipped like corrupt files.

Folder + CSV (``FolderPairs(root)``): ``root/gaze.csv`` with a header and one row per
image: ``path`` (relative to root), ``vertical``, ``horizontal`` (degrees, SPEC.md
signs: up and image-right positive); optional ``sequence`` (default: the folder of
``path``), ``eye`` (``left`` = the eye on the image's left, canonical; ``right`` = the
other, mirrored; default left), ``tilt`` (degrees; default: from the corners), and the
seven anchors ``x0, y0, ..., x6, y6`` in the image's pixels in the SPEC.md order (outer
corner, two upper-lid points from outer to inner, inner corner, two lower-lid points
from inner to outer, pupil). With anchors, an image of exactly the patch size is used
as it is (``crop="auto"``), any other is cropped from the corners; without anchors
the face pipeline finds them. Pairs: all images of a sequence with the same eye.
"""
from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

Sample = Dict[str, torch.Tensor]
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


class SkippedFileWarning(UserWarning):
    """A data file could not be read and was skipped."""


# ----------------------------------------------------------------------------- geometry

def crop_transform(outer: np.ndarray, inner: np.ndarray, width: int, height: int, crop_scale: float = 2.0,
                   level_roll: bool = True) -> Tuple[np.ndarray, bool, float]:
    """The frame -> patch similarity (2x3 affine A, (u, v) = A @ (x, y, 1)) of one eye from
    its outer and inner corners (frame pixels), the canonical frame of SPEC.md: the outer
    corner on the patch's left. An eye whose outer corner is on the image's right (an
    image-right eye) is mirrored. Also returns ``mirrored`` and the tilt in degrees (the
    roll of the outer -> inner corner line in the canonical frame, before levelling).
    The transform is the face pipeline's (``deepwarp_fast.face.eyes.similarity_crop``)."""
    from ..face.eyes import similarity_crop

    outer = np.asarray(outer, np.float64)
    inner = np.asarray(inner, np.float64)
    mirrored = bool(outer[0] > inner[0])
    left, right = (inner, outer) if mirrored else (outer, inner)
    A, _, theta = similarity_crop(left, right, width, height, crop_scale, level_roll, mirrored)
    tilt = math.degrees(-theta if mirrored else theta)
    return A, mirrored, tilt


def warp_patch(image: np.ndarray, A: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sample the W x H patch of affine ``A`` from ``image`` (H, W, 3) float32 as the face
    pipeline does (``deepwarp_fast.face.eyes.sample_patch``: bicubic, area-averaged where
    the patch shrinks the frame, border replicated)."""
    from ..face.eyes import sample_patch

    return sample_patch(image, A, width, height)


def _apply(A: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) @ A[:, :2].T + A[:, 2]


def read_rgb(path: Union[str, Path]) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]; raises OSError/ValueError on a corrupt or partial file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # a truncated file raises here
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"not an image of usable size: shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------- base

class EyeRecord:
    """One eye in one image: where it is and what it looks at."""

    __slots__ = ("path", "points", "gaze", "group", "tilt")

    def __init__(self, path, points: Optional[np.ndarray], gaze: Tuple[float, float], group, tilt: Optional[float] = None):
        self.path = str(path)
        # (7, 2) frame pixels in SPEC.md order (outer, ..., pupil); loaders that find the
        # eye themselves (face pipeline) keep the side name ("image_left"/"left", ...) here
        self.points = points
        self.gaze = (float(gaze[0]), float(gaze[1]))
        self.group = group
        self.tilt = tilt


class PairDataset(Dataset):
    """Pairs (i, j) of eye records within groups; subclasses load one eye as
    (patch (3, H, W), anchors (7, 2), gaze (2,), tilt) with :meth:`load_eye`."""

    def __init__(self, height: int = 41, width: int = 51, crop_scale: float = 2.0, level_roll: bool = True,
                 max_redirect: Optional[float] = 30.0, max_partners: Optional[int] = 32, seed: int = 0):
        if height < 4 or width < 4:
            raise ValueError(f"height and width must be at least 4, got {height}x{width}")
        if crop_scale <= 0:
            raise ValueError(f"crop_scale must be positive, got {crop_scale}")
        self.height, self.width, self.crop_scale, self.level_roll = height, width, crop_scale, level_roll
        self.max_redirect, self.max_partners, self.seed = max_redirect, max_partners, seed
        self.records: List[EyeRecord] = []
        self.pairs: List[Tuple[int, int]] = []
        self.skipped = 0
        self.skipped_files: List[str] = []
        self._bad = set()
        self._cache: Dict[int, Tuple] = {}

    # -- building
    def _skip_at_build(self, reasons: List[str], what: str):
        if reasons:
            self.skipped += len(reasons)
            self.skipped_files.extend(r.split(":", 1)[0] for r in reasons)
            shown = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
            warnings.warn(f"{type(self).__name__}: skipped {len(reasons)} {what}: {shown}", SkippedFileWarning, stacklevel=3)

    def _make_pairs(self):
        """All ordered pairs within each group whose redirection is within max_redirect
        (both components), at most max_partners targets per input (a seeded choice)."""
        groups: Dict = {}
        for i, r in enumerate(self.records):
            groups.setdefault(r.group, []).append(i)
        rng = np.random.default_rng(self.seed)
        pairs = []
        for key in sorted(groups, key=repr):
            idx = groups[key]
            g = np.array([self.records[i].gaze for i in idx], dtype=np.float64).reshape(-1, 2)
            for a, i in enumerate(idx):
                d = np.abs(g - g[a]).max(1) if len(idx) else np.zeros(0)
                ok = [idx[b] for b in range(len(idx)) if b != a and (self.max_redirect is None or d[b] <= self.max_redirect)]
                if self.max_partners is not None and len(ok) > self.max_partners:
                    ok = [ok[k] for k in sorted(rng.choice(len(ok), self.max_partners, replace=False))]
                pairs.extend((i, j) for j in ok)
        self.pairs = pairs

    # -- loading
    def load_eye(self, rec: EyeRecord):
        """(patch float32 (3, H, W), anchors (7, 2), gaze (2,), tilt) of one record, canonical."""
        image = read_rgb(rec.path)
        return self.crop_eye(image, rec.points, rec.gaze, rec.tilt)

    def crop_eye(self, image: np.ndarray, points: np.ndarray, gaze, tilt=None):
        A, mirrored, t = crop_transform(points[0], points[3], self.width, self.height, self.crop_scale, self.level_roll)
        patch = warp_patch(image, A, self.width, self.height)
        anchors = _apply(A, points)
        g = (gaze[0], -gaze[1] if mirrored else gaze[1])
        if tilt is not None:
            t = -tilt if mirrored else tilt
        return (torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1))).float().clamp(0, 1),
                torch.tensor(anchors, dtype=torch.float32), torch.tensor(g, dtype=torch.float32), float(t))

    def _eye(self, i: int):
        if i not in self._cache:
            self._cache[i] = self.load_eye(self.records[i])
            if len(self._cache) > 4096:  # a bounded cache: drop the oldest entry
                self._cache.pop(next(iter(self._cache)))
        return self._cache[i]

    def _mark_bad(self, path: str, err: Exception):
        if path not in self._bad:
            self._bad.add(path)
            self.skipped += 1
            self.skipped_files.append(path)
            warnings.warn(f"{type(self).__name__}: skipped {path}: {type(err).__name__}: {err}", SkippedFileWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> Sample:
        n = len(self.pairs)
        if n == 0:
            raise IndexError(f"{type(self).__name__} has no pairs")
        if not -n <= k < n:
            raise IndexError(f"pair index {k} out of range for {n} pairs")
        k %= n
        for step in range(n):
            i, j = self.pairs[(k + step) % n]
            ri, rj = self.records[i], self.records[j]
            if ri.path in self._bad or rj.path in self._bad:
                continue
            try:
                a = self._eye(i)
            except Exception as e:  # noqa: BLE001 - any unreadable file is skipped, never fatal
                self._mark_bad(ri.path, e)
                continue
            try:
                b = self._eye(j)
            except Exception as e:  # noqa: BLE001
                self._mark_bad(rj.path, e)
                continue
            return {"input": a[0], "target": b[0], "anchors": a[1], "target_anchors": b[1],
                    "angles": b[2] - a[2], "input_gaze": a[2], "target_gaze": b[2],
                    "tilt": torch.tensor(a[3], dtype=torch.float32)}
        raise RuntimeError(f"{type(self).__name__}: no readable pair left ({self.skipped} files skipped)")


# ----------------------------------------------------------------------------- UnityEyes

def _parse_points(items) -> np.ndarray:
    pts = [ast.literal_eval(s) if isinstance(s, str) else s for s in items]
    arr = np.array([p[:2] for p in pts], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 3 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        raise ValueError("need at least 3 finite (x, y) points")
    return arr


def _chain_at(chain: np.ndarray, origin: np.ndarray, axis: np.ndarray, ts: Sequence[float]) -> np.ndarray:
    """Points of a polyline where its projection onto the corner axis equals ts (fractions)."""
    L = float(axis @ axis)
    t = (chain - origin) @ axis / L
    order = np.argsort(t)
    t, c = t[order], chain[order]
    return np.stack([np.interp(ts, t, c[:, 0]), np.interp(ts, t, c[:, 1])], 1)


def unityeyes_points(meta: dict, image_height: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """(7, 2) anchors in frame pixels (SPEC.md order) and (vertical, horizontal) gaze degrees
    from a UnityEyes JSON dict (see the module docstring)."""
    flip = np.array([1.0, -1.0])
    off = np.array([0.0, float(image_height)])
    margin = _parse_points(meta["interior_margin_2d"]) * flip + off
    caruncle = _parse_points(meta["caruncle_2d"]) * flip + off
    iris = _parse_points(meta["iris_2d"]) * flip + off
    look = ast.literal_eval(meta["eye_details"]["look_vec"]) if isinstance(meta["eye_details"]["look_vec"], str) \
        else meta["eye_details"]["look_vec"]
    lx, ly, lz = (float(v) for v in look[:3])
    norm = math.sqrt(lx * lx + ly * ly + lz * lz)
    if not norm > 0:
        raise ValueError("look_vec is zero")
    gaze = (math.degrees(math.asin(max(-1.0, min(1.0, ly / norm)))), math.degrees(math.atan2(lx, -lz)))
    cc = caruncle.mean(0)
    outer_i = int(np.argmax(np.hypot(*(margin - cc).T)))
    outer = margin[outer_i]
    cand = np.concatenate([margin, caruncle])
    inner = cand[int(np.argmax(np.hypot(*(cand - outer).T)))]
    # split the margin loop into its two chains at the outer corner and the point nearest the inner corner
    inner_i = int(np.argmin(np.hypot(*(margin - inner).T)))
    a, b = sorted((outer_i, inner_i))
    c1 = margin[a:b + 1]
    c2 = np.concatenate([margin[b:], margin[:a + 1]])
    axis = inner - outer
    normal = np.array([-axis[1], axis[0]])  # points "down" in the image for an eye with outer on the left
    if axis[0] < 0:
        normal = -normal
    side1 = float(((c1 - outer) @ normal).mean())
    side2 = float(((c2 - outer) @ normal).mean())
    upper, lower = (c1, c2) if side1 < side2 else (c2, c1)
    up = _chain_at(upper, outer, axis, [1 / 3, 2 / 3])
    lo = _chain_at(lower, outer, axis, [2 / 3, 1 / 3])
    pts = np.concatenate([outer[None], up, inner[None], lo, iris.mean(0)[None]])
    return pts, gaze


class UnityEyesPairs(PairDataset):
    """Pairs of UnityEyes renders (``N.jpg`` + ``N.json``) of the same eye; see the module
    docstring for the format and the conventions."""

    def __init__(self, root, group_by: Union[str, Callable] = "folder", **kw):
        super().__init__(**kw)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"UnityEyes root {self.root} is not a directory")
        if not (callable(group_by) or group_by in ("folder", "all")):
            raise ValueError(f"group_by must be 'folder', 'all' or a callable, got {group_by!r}")
        bad = []
        for js in sorted(self.root.rglob("*.json")):
            img = js.with_suffix(".jpg")
            if not img.exists():
                alt = [js.with_suffix(e) for e in _IMAGE_EXT if js.with_suffix(e).exists()]
                if not alt:
                    bad.append(f"{js}: no image beside it")
                    continue
                img = alt[0]
            try:
                meta = json.loads(js.read_text())
                h = self._image_height(img)
                pts, gaze = unityeyes_points(meta, h)
            except Exception as e:  # noqa: BLE001 - skipped with a count, never fatal
                bad.append(f"{js}: {type(e).__name__}: {e}")
                continue
            key = js.parent if group_by == "folder" else ("all" if group_by == "all" else group_by(meta, js))
            self.records.append(EyeRecord(img, pts, gaze, key))
        self._skip_at_build(bad, "UnityEyes samples")
        self._make_pairs()

    @staticmethod
    def _image_height(path: Path) -> int:
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1]


# ----------------------------------------------------------------------------- Columbia Gaze

COLUMBIA_NAME = re.compile(r"^(\d+)_(\d+)m_(-?\d+)P_(-?\d+)V_(-?\d+)H\.(jpg|jpeg|png)$", re.IGNORECASE)


def parse_columbia_name(name: str) -> Optional[Dict[str, int]]:
    """``0001_2m_-15P_10V_-5H.jpg`` -> {subject: 1, distance: 2, pose: -15, vertical: 10,
    horizontal: -5}; None when the name does not follow the convention."""
    m = COLUMBIA_NAME.match(name)
    if not m:
        return None
    s, d, p, v, h = (int(x) for x in m.groups()[:5])
    return {"subject": s, "distance": d, "pose": p, "vertical": v, "horizontal": h}


class ColumbiaGazePairs(PairDataset):
    """Pairs of eyes from the Columbia Gaze data set (file-name convention in the module
    docstring). Both eyes of every image are used (the image-right one mirrored); eyes
    are extracted with the face pipeline (dlib), once per image."""

    def __init__(self, root, v_sign: float = 1.0, h_sign: float = 1.0, cache_dir=None, min_face: int = 80, **kw):
        super().__init__(**kw)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Columbia Gaze root {self.root} is not a directory")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.min_face = min_face
        self._detector = None
        self._landmarks: Dict[str, Optional[np.ndarray]] = {}
        bad = []
        for f in sorted(self.root.rglob("*")):
            if not f.is_file() or f.suffix.lower() not in _IMAGE_EXT:
                continue
            info = parse_columbia_name(f.name)
            if info is None:
                bad.append(f"{f}: name does not follow <subject>_<d>m_<P>P_<V>V_<H>H")
                continue
            gaze = (v_sign * info["vertical"], h_sign * info["horizontal"])
            for side in ("image_left", "image_right"):
                key = (info["subject"], info["distance"], info["pose"], side)
                rec = EyeRecord(f, None, gaze, key)
                rec.points = side  # resolved from the landmarks at load time
                self.records.append(rec)
        self._skip_at_build(bad, "files")
        self._make_pairs()

    def _face_landmarks(self, path: str, image: np.ndarray) -> np.ndarray:
        if path in self._landmarks:
            lm = self._landmarks[path]
        else:
            cache = None
            if self.cache_dir is not None:
                cache = self.cache_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.relpath(path, self.root)) + ".npy")
            if cache is not None and cache.exists():
                lm = np.load(cache, allow_pickle=False)
                lm = None if lm.size == 0 else lm
            else:
                from ..face.landmarks import FaceDetector  # lazy: needs dlib

                if self._detector is None:
                    self._detector = FaceDetector(min_face=self.min_face)
                gray = (np.clip(image @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
                faces = self._detector.detect(gray)
                lm = self._detector.landmarks(gray, faces[0][0]) if faces else None
                if cache is not None:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    np.save(cache, np.zeros(0) if lm is None else lm)
            self._landmarks[path] = lm
        if lm is None:
            raise ValueError("no face found")
        return lm

    def load_eye(self, rec: EyeRecord):
        from ..face.pupil import estimate_pupil

        image = read_rgb(rec.path)
        lm = self._face_landmarks(rec.path, image)
        idx = (36, 37, 38, 39, 40, 41) if rec.points == "image_left" else (45, 44, 43, 42, 47, 46)
        six = lm[list(idx)].astype(np.float64)
        pts = np.concatenate([six, six.mean(0, keepdims=True)])
        patch, anchors, gaze, tilt = self.crop_eye(image, pts, rec.gaze)
        pupil, _found = estimate_pupil(patch.permute(1, 2, 0).numpy(), anchors[:6].numpy())
        anchors[6] = torch.as_tensor(np.asarray(pupil, dtype=np.float32))
        return patch, anchors, gaze, tilt


# ----------------------------------------------------------------------------- folder + CSV

class FolderPairs(PairDataset):
    """Pairs from a folder of image sequences with a CSV of gaze angles (format in the
    module docstring)."""

    def __init__(self, root, csv_name: str = "gaze.csv", crop: str = "auto", min_face: int = 80, **kw):
        super().__init__(**kw)
        if crop not in ("auto", "always", "never"):
            raise ValueError(f"crop must be 'auto', 'always' or 'never', got {crop!r}")
        self.root = Path(root)
        self.crop, self.min_face = crop, min_face
        self._detector = None
        path = self.root / csv_name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: FolderPairs needs a CSV with columns path, vertical, horizontal")
        bad = []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            missing = {"path", "vertical", "horizontal"} - cols
            if missing:
                raise ValueError(f"{path}: missing column(s) {sorted(missing)} (have {sorted(cols)})")
            has_anchors = all(f"{a}{i}" in cols for i in range(7) for a in "xy")
            for line, row in enumerate(reader, start=2):
                try:
                    rel = row["path"].strip()
                    if not rel:
                        raise ValueError("empty path")
                    gaze = (float(row["vertical"]), float(row["horizontal"]))
                    if not all(math.isfinite(g) for g in gaze):
                        raise ValueError("non-finite angle")
                    eye = (row.get("eye") or "left").strip().lower()
                    if eye not in ("left", "right"):
                        raise ValueError(f"eye must be left or right, got {eye!r}")
                    pts = None
                    if has_anchors and (row.get("x0") or "").strip():
                        pts = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(7)])
                        if not np.isfinite(pts).all():
                            raise ValueError("non-finite anchor")
                    tilt = float(row["tilt"]) if (row.get("tilt") or "").strip() else None
                    seq = (row.get("sequence") or "").strip() or str(Path(rel).parent)
                except (ValueError, KeyError, TypeError) as e:
                    bad.append(f"{path}:{line}: {e}")
                    continue
                rec = EyeRecord(self.root / rel, pts, gaze, (seq, eye), tilt)
                rec.points = pts if pts is not None else eye
                self.records.append(rec)
        self._skip_at_build(bad, "CSV rows")
        self._make_pairs()

    def load_eye(self, rec: EyeRecord):
        image = read_rgb(rec.path)
        H, W = image.shape[:2]
        eye = rec.group[1]
        if isinstance(rec.points, str):  # no anchors: the face pipeline finds the eye
            from ..face.landmarks import FaceDetector
            from ..face.pupil import estimate_pupil

            if self._detector is None:
                self._detector = FaceDetector(min_face=self.min_face)
            gray = (np.clip(image @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
            faces = self._detector.detect(gray)
            if not faces:
                raise ValueError("no face found")
            lm = self._detector.landmarks(gray, faces[0][0])
            idx = (36, 37, 38, 39, 40, 41) if eye == "left" else (45, 44, 43, 42, 47, 46)
            six = lm[list(idx)].astype(np.float64)
            patch, anchors, gaze, tilt = self.crop_eye(image, np.concatenate([six, six.mean(0, keepdims=True)]), rec.gaze, rec.tilt)
            pupil, _ = estimate_pupil(patch.permute(1, 2, 0).numpy(), anchors[:6].numpy())
            anchors[6] = torch.as_tensor(np.asarray(pupil, dtype=np.float32))
            return patch, anchors, gaze, tilt
        pts = rec.points
        as_is = self.crop == "never" or (self.crop == "auto" and (H, W) == (self.height, self.width))
        if not as_is:
            return self.crop_eye(image, pts, rec.gaze, rec.tilt)
        if (H, W) != (self.height, self.width):
            raise ValueError(f"image is {W}x{H}, not the patch size {self.width}x{self.height} (crop='never')")
        patch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        anchors = torch.tensor(pts, dtype=torch.float32)
        gaze = torch.tensor(rec.gaze, dtype=torch.float32)
        d = pts[3] - pts[0]
        tilt = rec.tilt if rec.tilt is not None else math.degrees(math.atan2(d[1], abs(d[0])))
        if eye == "right":  # a patch of the other eye: mirror it into the canonical frame
            patch = patch.flip(-1)
            anchors[:, 0] = (W - 1) - anchors[:, 0]
            gaze[1] = -gaze[1]
            tilt = -tilt if rec.tilt is not None else tilt
        return patch, anchors, gaze, float(tilt)
