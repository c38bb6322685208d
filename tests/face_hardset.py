"""A hard face-detection set built from the freely licensed faces that ship with the
dependencies (scikit-image's astronaut, public domain; matplotlib's grace_hopper.jpg,
public domain) and faceless scikit-image images, for recall, false alarms and speed.

Each face frame pastes one to three faces (a feathered disc around the face) into a
faceless background, rotated in-plane up to 30 degrees, scaled so that the face box is
50 to 400 px, dark, overexposed or low in contrast, some cut by the frame border. The
ground truth is the source face's dlib HOG box (found on the upright source), carried
through the same transform. Frames are grayscale uint8 (the detectors' input).

    PYTHONPATH=. python tests/face_hardset.py     # the table in the README (1280x720)
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

# (name, loader, face box (x0, y0, x1, y1) of dlib's HOG detector on the upright image)
FACES = [
    ("astronaut", lambda: cv2.cvtColor(_skimage("astronaut"), cv2.COLOR_RGB2GRAY), (176, 77, 266, 167)),
    ("grace_hopper", lambda: cv2.imread(_grace_hopper(), cv2.IMREAD_GRAYSCALE), None),
]
FACELESS = ["brick", "coffee", "coins", "clock", "grass", "gravel", "horse", "hubble_deep_field",
            "immunohistochemistry", "moon", "page", "rocket", "text", "cell", "shepp_logan_phantom", "retina"]


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _grace_hopper() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
    if img.dtype != np.uint8:
        img = img.astype(np.float32)
        img = (255 * (img - img.min()) / max(float(np.ptp(img)), 1e-9)).astype(np.uint8)
    return img


def sources() -> List[Tuple[str, np.ndarray, Tuple[int, int, int, int]]]:
    out = []
    for name, load, box in FACES:
        img = load()
        if box is None:  # found once, here, by HOG on the upright photo
            from deepwarp_fast.face.landmarks import FaceDetector

            box = FaceDetector(detector="hog", min_face=60).detect(img)[0][0]
        out.append((name, img, tuple(int(v) for v in box)))
    return out


def background(name: str, size: Tuple[int, int], rng) -> np.ndarray:
    W, H = size
    img = _gray(_skimage(name))
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)


@dataclass
class Frame:
    gray: np.ndarray
    boxes: List[Tuple[float, float, float, float]]  # ground truth (may reach past the border)
    tags: List[str]


def _paste(canvas, src, box, side, angle, center):
    """Paste ``src``'s face (HOG ``box``) so that its box side is ``side`` px, rotated by
    ``angle`` degrees about its centre, at ``center``; returns the ground-truth box."""
    bx0, by0, bx1, by1 = box
    bc = ((bx0 + bx1) / 2, (by0 + by1) / 2)
    s = side / (bx1 - bx0)
    M = cv2.getRotationMatrix2D(bc, angle, s)
    M[:, 2] += np.array(center) - np.array(bc)
    H, W = canvas.shape
    warped = cv2.warpAffine(src, M, (W, H), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:H, 0:W]
    r = np.hypot(xx - center[0], yy - center[1]) / (1.25 * side)
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)
    canvas[:] = (alpha * warped + (1 - alpha) * canvas).astype(np.uint8)
    return (center[0] - side / 2, center[1] - side / 2, center[0] + side / 2, center[1] + side / 2)


def _photometric(img, kind):
    f = img.astype(np.float32)
    if kind == "dark":
        f = 255 * (f / 255) ** 2.0 * 0.45
    elif kind == "overexposed":
        f = f * 1.4 + 45
    elif kind == "low_contrast":
        f = 128 + (f - 128) * 0.35
    return np.clip(f, 0, 255).astype(np.uint8)


def face_frames(n: int = 40, size=(1280, 720), seed: int = 0, sides=(50, 400)) -> List[Frame]:
    rng = np.random.default_rng(seed)
    srcs = sources()
    W, H = size
    frames = []
    for i in range(n):
        canvas = background(FACELESS[i % len(FACELESS)], size, rng)
        k = 3 if i % 5 == 4 else 1
        cut = i % 7 == 3
        boxes, tags = [], []
        placed = []
        for j in range(k):
            name, src, box = srcs[(i + j) % len(srcs)]
            side = float(np.exp(rng.uniform(np.log(sides[0]), np.log(min(sides[1], 0.6 * H)))))
            if k > 1:
                side = min(side, 0.3 * H)
            angle = float(rng.uniform(-30, 30))
            for _ in range(50):
                c = (rng.uniform(side * 0.7, W - side * 0.7), rng.uniform(side * 0.7, H - side * 0.7))
                if all(np.hypot(c[0] - p[0], c[1] - p[1]) > 1.4 * (side + p[2]) for p in placed):
                    break
            if cut and j == 0:  # 35 % of the face past the left or right border
                c = (side * 0.15 if rng.uniform() < 0.5 else W - side * 0.15, c[1])
            placed.append((c[0], c[1], side))
            boxes.append(_paste(canvas, src, box, side, angle, c))
            tags.append(f"{name} {side:.0f}px {angle:+.0f}deg" + (" cut" if cut and j == 0 else ""))
        kind = ["normal", "dark", "overexposed", "low_contrast"][i % 4]
        canvas = _photometric(canvas, kind)
        frames.append(Frame(canvas, boxes, [t + " " + kind for t in tags]))
    return frames


def faceless_frames(size=(1280, 720)) -> List[np.ndarray]:
    rng = np.random.default_rng(1)
    return [background(name, size, rng) for name in FACELESS]


def match(found, truth, min_visible: float = 0.0) -> Tuple[int, int]:
    """(true faces found, false alarms): a detection matches a face when its centre is
    within 0.4 face sides of the face's centre and its side within a factor 2."""
    used = set()
    hits = 0
    for t in truth:
        tc, ts = ((t[0] + t[2]) / 2, (t[1] + t[3]) / 2), t[2] - t[0]
        for i, (b, _) in enumerate(found):
            if i in used:
                continue
            bc, bs = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), b[2] - b[0]
            if np.hypot(bc[0] - tc[0], bc[1] - tc[1]) < 0.4 * ts and 0.5 < bs / ts < 2.0:
                used.add(i)
                hits += 1
                break
    return hits, len(found) - len(used)


def evaluate(detector, frames: List[Frame], faceless: List[np.ndarray]):
    hits = total = fa_faces = 0
    missed = []
    t0 = time.perf_counter()
    for fr in frames:
        found = detector.detect(fr.gray)
        h, fa = match(found, fr.boxes)
        hits, total, fa_faces = hits + h, total + len(fr.boxes), fa_faces + fa
        if h < len(fr.boxes):
            missed.append(fr.tags)
    t_faces = (time.perf_counter() - t0) / max(len(frames), 1)
    fa_images = sum(1 for g in faceless if detector.detect(g))
    return dict(recall=hits / max(total, 1), faces=total, false_alarms_on_face_frames=fa_faces,
                faceless_with_detection=fa_images, faceless=len(faceless), ms_per_frame=1e3 * t_faces, missed=missed)


def speed(frames: List[Frame], rounds: int = 3):
    """Median ms per call, the detectors interleaved: full-frame detect at min_face 80 and
    48, and detect_near (the tracker's per-frame search) around each frame's first face."""
    from deepwarp_fast.face.landmarks import FaceDetector

    dets = {(name, mf): FaceDetector(detector=name, min_face=mf) for name in ("hog", "blazeface") for mf in (80, 48)}
    times = {k: [] for k in list(dets) + [("hog", "near"), ("blazeface", "near")]}
    for _ in range(rounds):
        for fr in frames:
            for k, d in dets.items():
                t = time.perf_counter()
                d.detect(fr.gray)
                times[k].append(time.perf_counter() - t)
            for name in ("hog", "blazeface"):
                d = dets[(name, 48)]
                b = fr.boxes[0]
                box = tuple(int(round(v)) for v in b)
                t = time.perf_counter()
                d.detect_near(fr.gray, box)
                times[(name, "near")].append(time.perf_counter() - t)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def main():
    import torch

    from deepwarp_fast.face.landmarks import FaceDetector

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    frames, faceless = face_frames(n), faceless_frames()
    print(f"{n} frames 1280x720, {sum(len(f.boxes) for f in frames)} faces (50-400 px, +-30 deg, dark/over/low contrast, "
          f"3-face frames, border cuts), {len(faceless)} faceless frames")
    print("| detector | recall | false alarms on face frames | faceless frames with a detection | ms / 1280x720 frame |")
    print("|---|---:|---:|---:|---:|")
    for name in ("hog", "blazeface"):
        r = evaluate(FaceDetector(detector=name, min_face=48), frames, faceless)
        print(f"| {name} | {r['recall']:.1%} ({r['faces']} faces) | {r['false_alarms_on_face_frames']} | "
              f"{r['faceless_with_detection']} / {r['faceless']} | {r['ms_per_frame']:.0f} |")
        for m in r["missed"][:12]:
            print("   missed in:", "; ".join(m))
    sp = speed(frames[:8])
    print(f"\nms per 1280x720 frame (median, interleaved, {torch.get_num_threads()} thread(s)):")
    print("| detector | full frame, min_face 80 | full frame, min_face 48 | detect_near (tracking) |")
    print("|---|---:|---:|---:|")
    for name in ("hog", "blazeface"):
        print(f"| {name} | {sp[(name, 80)]:.1f} | {sp[(name, 48)]:.1f} | {sp[(name, 'near')]:.1f} |")


if __name__ == "__main__":
    main()
