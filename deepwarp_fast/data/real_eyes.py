"""Real eyes without gaze labels, for the anatomical flow term (issue 12, idea 3).

Real photos carry no target image for a redirection, but anatomy says where the iris
must go: the eyeball turns on a radius of about 12.5 mm in an eye opening of about
30 mm, so a gaze change of (vertical v, horizontal h) degrees moves the iris centre by

    d = 0.42 * eye_width * (cos v sin h, -sin v)        (patch pixels, y down)

and the iris moves as a rigid disc. :func:`collect_real_eyes` cuts every eye of some
photos exactly as the face pipeline does (landmarks, ``eye_crop``, ``extract_patch``,
the pipeline's own ``estimate_pupil`` as the seventh anchor), many times each: the
photo mirrored and rescaled, the crop jittered (shift, scale, roll). ``RealEyeBatches``
draws a batch of them per training step (deterministic in (seed, step, rank)) with a
photometric jitter and a random redirection, and :func:`real_iris_loss` asks the
network's backward flow, minus its flow at angle 0 (the pipeline's null correction),
to equal -d across the displaced iris disc.

Nothing here knows the faces: any folder of portraits works (``data.real_eyes`` =
"bundled", one of the bundled names, or a folder; comma-separated for several).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# The lids follow vertical gaze (the renderer's anatomical eyeball draws 0.55-0.85 and
# 0.12-0.3): the upper lid moves this fraction of the iris's vertical shift, the lower
# lid this one; neither follows horizontal gaze.
UPPER_LID_FOLLOW = 0.7
LOWER_LID_FOLLOW = 0.2
# Photo scales each portrait is also cut at (Lanczos up, area down).
SCALES = (0.7, 1.0, 1.4, 2.0)


@dataclass
class RealEyes:
    """N canonical eye patches of real photos: eyes (N, 3, H, W) in [0, 1], anchors
    (N, 7, 2) patch pixels (six lid points + the pipeline's pupil estimate), width (N,)
    corner-to-corner distance in patch pixels, mirrored (N,) bool (an image-right eye,
    mirrored into the canonical frame), and where each came from."""

    eyes: torch.Tensor
    anchors: torch.Tensor
    width: torch.Tensor
    mirrored: torch.Tensor
    sources: List[str]

    def __len__(self) -> int:
        return int(self.eyes.shape[0])


def real_photos(spec: str) -> List[Tuple[str, np.ndarray]]:
    """(name, RGB uint8) photos of ``spec``: "bundled" (every bundled portrait), a bundled
    name ("astronaut", "grace_hopper"), or a folder of images; comma-separated."""
    from ..evaluate_real import bundled_photos, folder_photos
    from ..samples import SAMPLE_FACES, sample_face

    out: List[Tuple[str, np.ndarray]] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item == "bundled":
            out += bundled_photos()
        elif item in SAMPLE_FACES:
            out.append((item, sample_face(item)))
        elif Path(item).is_dir():
            out += folder_photos(item)
        else:
            raise ValueError(f"data.real_eyes: {item!r} is neither 'bundled', a bundled face "
                             f"({', '.join(SAMPLE_FACES)}) nor a folder")
    if not out:
        raise ValueError(f"data.real_eyes={spec!r}: no photos found")
    return out


def _jitter_landmarks(lm: np.ndarray, idx: Sequence[int], rng: np.random.Generator, shift: float, scale: float,
                      roll_deg: float) -> np.ndarray:
    """The landmarks under a random similarity about the eye's centre: shift (eye widths),
    scale (relative) and roll (degrees), so the crop lands on other sub-pixels."""
    pts = lm[list(idx)]
    c = pts.mean(0)
    w = float(np.hypot(*(pts[3] - pts[0])))
    t = math.radians(rng.uniform(-roll_deg, roll_deg))
    s = 1.0 + rng.uniform(-scale, scale)
    R = s * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    off = rng.uniform(-shift, shift, size=2) * w
    out = lm.copy()
    out[list(idx)] = (pts - c) @ R.T + c + off
    return out


def collect_real_eyes(photos: List[Tuple[str, np.ndarray]], height: int, width: int, crop_scale: float, *,
                      copies: int = 8, seed: int = 0, scales: Sequence[float] = SCALES, mirror: bool = True,
                      min_eye_px: float = 10.0, detector=None) -> RealEyes:
    """Every open eye of every face in ``photos``, cut like the pipeline: each photo also
    mirrored and at each of ``scales``, each eye ``copies`` times with a jittered crop
    (the first copy unjittered). Eyes whose pupil the pipeline cannot find are left out."""
    import cv2

    from ..face.eyes import EYE_POINTS, eye_aspect_ratio, eye_crop, extract_patch
    from ..face.landmarks import FaceDetector
    from ..face.pupil import estimate_pupil

    det = detector or FaceDetector(min_face=40)
    rng = np.random.default_rng(seed)
    eyes, anchors, widths, mirrored, sources = [], [], [], [], []
    for name, img in photos:
        for flip in ((False, True) if mirror else (False,)):
            base = np.ascontiguousarray(img[:, ::-1]) if flip else img
            for s in scales:
                im = base if s == 1.0 else cv2.resize(base, None, fx=s, fy=s,
                                                      interpolation=cv2.INTER_LANCZOS4 if s > 1 else cv2.INTER_AREA)
                gray = np.ascontiguousarray(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY))
                for box, _score in det.detect(gray):
                    lm = det.landmarks(gray, box)
                    for side, idx in EYE_POINTS.items():
                        for k in range(copies):
                            # the crop from jittered landmarks, the lid points where they really are
                            lmk = lm if k == 0 else _jitter_landmarks(lm, idx, rng, 0.04, 0.08, 4.0)
                            crop = eye_crop(lmk, side, width, height, crop_scale, True)
                            crop.eyelid = (lm[list(idx)] @ crop.A[:, :2].T + crop.A[:, 2]).astype(np.float32)
                            if crop.width_px < min_eye_px or eye_aspect_ratio(crop.eyelid) < 0.12:
                                break
                            patch = extract_patch(im, crop, width, height).astype(np.float32) / 255.0
                            pupil, found = estimate_pupil(patch, crop.eyelid)
                            if not found:
                                continue
                            eyes.append(patch.transpose(2, 0, 1))
                            anchors.append(np.concatenate([crop.eyelid, np.asarray(pupil, np.float32)[None]], 0))
                            widths.append(float(np.hypot(*(crop.eyelid[3] - crop.eyelid[0]))))
                            mirrored.append(crop.mirrored)
                            sources.append(f"{name}{'_mirror' if flip else ''}_x{s:g}_{side}_{k}")
    if not eyes:
        raise ValueError("no usable eye (open, pupil found, at least min_eye_px wide) in the real photos")
    return RealEyes(torch.from_numpy(np.stack(eyes)).float(), torch.from_numpy(np.stack(anchors)).float(),
                    torch.tensor(widths, dtype=torch.float32), torch.tensor(mirrored), sources)


def expected_shift(angles: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """(B, 2) iris centre displacement (patch pixels, x right, y down) for redirections
    ``angles`` (B, 2) = (vertical up, horizontal towards the patch's right), degrees."""
    from ..face.metrics import EXPECTED_PER_SIN

    v, h = torch.deg2rad(angles[:, 0]), torch.deg2rad(angles[:, 1])
    k = EXPECTED_PER_SIN * width
    return torch.stack([k * torch.cos(v) * torch.sin(h), -k * torch.sin(v)], -1)


class RealEyeBatches:
    """``(step, rank) -> {"real_input", "real_anchors", "real_angles", "real_width"}``:
    ``per_batch`` eyes drawn from ``eyes`` with a photometric jitter (brightness,
    contrast, colour balance, noise) and a redirection: half along one axis (up, down,
    left or right), half in a uniform direction, magnitude uniform in [2, max_redirect]."""

    def __init__(self, eyes: RealEyes, per_batch: int, max_redirect: float, seed: int = 0):
        if per_batch < 1:
            raise ValueError(f"per_batch must be >= 1, got {per_batch}")
        self.eyes, self.per_batch, self.max_redirect, self.seed = eyes, int(per_batch), float(max_redirect), int(seed)

    def __call__(self, step: int, rank: int = 0) -> Dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step * 7_919 + rank * 104_729 + 17) % (2 ** 63))
        B = self.per_batch
        idx = torch.randint(len(self.eyes), (B,), generator=g)
        x = self.eyes.eyes[idx]
        gain = 1.0 + 0.15 * (2 * torch.rand(B, 3, 1, 1, generator=g) - 1) * torch.tensor([1.0, 0.3, 0.3]).view(1, 3, 1, 1)
        gain = gain[:, :1] * torch.cat([torch.ones(B, 1, 1, 1), gain[:, 1:]], 1)  # overall x colour balance
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = 1.0 + 0.2 * (2 * torch.rand(B, 1, 1, 1, generator=g) - 1)
        x = ((x - mean) * contrast + mean) * gain
        x = (x + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        mag = 2.0 + (self.max_redirect - 2.0) * torch.rand(B, generator=g)
        axis = torch.randint(4, (B,), generator=g).float() * (math.pi / 2)
        free = 2 * math.pi * torch.rand(B, generator=g)
        theta = torch.where(torch.rand(B, generator=g) < 0.5, axis, free)
        angles = torch.stack([mag * torch.sin(theta), mag * torch.cos(theta)], -1)
        return {"real_input": x, "real_anchors": self.eyes.anchors[idx], "real_angles": angles,
                "real_width": self.eyes.width[idx]}


def disc_points(centre: torch.Tensor, radius: torch.Tensor, n_ring: int = 8) -> torch.Tensor:
    """(B, 1 + n_ring, 2): the centre and ``n_ring`` points on a circle of ``radius`` (B,)."""
    t = torch.arange(n_ring, dtype=centre.dtype, device=centre.device) * (2 * math.pi / n_ring)
    ring = torch.stack([torch.cos(t), torch.sin(t)], -1)  # (n, 2)
    pts = centre[:, None, :] + radius.view(-1, 1, 1) * ring[None]
    return torch.cat([centre[:, None, :], pts], 1)


def sample_flow(flow: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """(B, 2, K): ``flow`` (B, 2, H, W) sampled bilinearly at ``pts`` (B, K, 2) patch pixels."""
    H, W = flow.shape[-2:]
    grid = torch.stack([2 * pts[..., 0] / (W - 1) - 1, 2 * pts[..., 1] / (H - 1) - 1], -1).unsqueeze(1)
    return F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]


def inside_lids(pts: torch.Tensor, eyelid: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """(B, K) 1.0 where ``pts`` (B, K, 2) lie inside the eye opening outlined by the six
    lid points ``eyelid`` (B, 6, 2, canonical order, a convex hexagon) by at least
    ``margin`` (B,) pixels, else 0.0."""
    a = eyelid
    b = torch.roll(eyelid, -1, dims=1)
    e = b - a  # (B, 6, 2) edges
    area = (a[..., 0] * b[..., 1] - b[..., 0] * a[..., 1]).sum(1)  # twice the signed area
    rel = pts[:, None, :, :] - a[:, :, None, :]  # (B, 6, K, 2)
    cross = e[:, :, None, 0] * rel[..., 1] - e[:, :, None, 1] * rel[..., 0]
    dist = cross * torch.sign(area).view(-1, 1, 1) / e.norm(dim=-1).clamp_min(1e-6)[:, :, None]
    return (dist.min(1).values >= margin.view(-1, 1)).float()


def real_iris_loss(flow: torch.Tensor, flow0: torch.Tensor, anchors: torch.Tensor, angles: torch.Tensor,
                   width: torch.Tensor, radius: float = 0.08, margin: float = 0.03, rim: float = 0.0) -> torch.Tensor:
    """Mean over the displaced iris disc (centre + 8 points at ``radius`` eye widths) of
    |(flow - flow0) - (-d)|^2, pixels^2: the backward flow of a redirection, less the
    flow at angle 0 (what the pipeline applies), brings the iris from where it is
    (the pupil anchor) to where anatomy puts it (anchor + d). Only the points that
    land inside the eye opening (``margin`` eye widths clear of the lid outline) count:
    where the displaced iris passes under a lid, the lid is not to be dragged along. The
    opening is the target's: the lids moved with the vertical gaze (:func:`lid_shift`).
    ``rim`` > 0 adds a second ring of 8 points at ``rim`` eye widths, near the limbus
    (the iris's radius is ~0.2 eye widths), so that the visible iris edge moves with the
    centre (a rigid iris) instead of lagging behind it."""
    d = expected_shift(angles, width)
    pts, keep = visible_disc(anchors, d, width, radius, margin, rim)
    f = sample_flow(flow - flow0.detach(), pts)
    err = (f + d[:, :, None]).pow(2).sum(1)
    return (err * keep).sum() / keep.sum().clamp_min(1.0)


def visible_disc(anchors: torch.Tensor, d: torch.Tensor, width: torch.Tensor, radius: float = 0.08,
                 margin: float = 0.03, rim: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The iris disc where anatomy puts it (pupil anchor + ``d``): its points (B, 9, 2),
    the centre and a ring at ``radius`` eye widths (and, ``rim`` > 0, 8 more on a ring at
    ``rim`` eye widths: (B, 17, 2)), and which of them (B, K, 0/1) lie ``margin`` eye
    widths inside the target's eye opening (the lids moved with the vertical gaze,
    :func:`lid_shift`)."""
    pts = disc_points(anchors[:, 6] + d, radius * width)
    if rim > 0:
        pts = torch.cat([pts, disc_points(anchors[:, 6] + d, rim * width)[:, 1:]], 1)
    return pts, inside_lids(pts, anchors[:, :6] + lid_shift(d[:, 1]), margin * width)


def lid_shift(dy: torch.Tensor) -> torch.Tensor:
    """(B, 6, 2): how the six lid points (canonical order; the corners stay) move when
    the iris moves ``dy`` (B,) pixels vertically."""
    up, lo = UPPER_LID_FOLLOW, LOWER_LID_FOLLOW
    follow = [0.0, up, up, 0.0, lo, lo]
    sv = torch.tensor(follow, dtype=dy.dtype, device=dy.device)[None] * dy[:, None]
    return torch.stack([torch.zeros_like(sv), sv], -1)


def real_lids_loss(flow: torch.Tensor, flow0: torch.Tensor, anchors: torch.Tensor, angles: torch.Tensor,
                   width: torch.Tensor) -> torch.Tensor:
    """Mean over the two lower-lid points of |(flow - flow0)(p + s) - (-s)|^2, pixels^2,
    where s moves them LOWER_LID_FOLLOW of the iris's vertical shift (0 horizontally):
    the iris term moves the iris as a disc, and the network's smooth flow drags the lower
    lid along with it (0.6-0.8 of the iris's shift when looking down, measured); a real
    lower lid follows the gaze far less. The upper lid is left to the synthetic pairs,
    whose renderer moves it with the iris."""
    shift = lid_shift(expected_shift(angles, width)[:, 1])[:, 4:]  # (B, 2, 2): the lower lid
    pts = anchors[:, [4, 5]] + shift
    f = sample_flow(flow - flow0.detach(), pts)  # (B, 2, 2)
    return (f + shift.permute(0, 2, 1)).pow(2).sum(1).mean()


def flow_gain(model, eyes: RealEyes, angles: Sequence[float] = (10.0, 15.0, 25.0), radius: float = 0.08) -> List[dict]:
    """How far ``model`` itself moves the iris of real ``eyes``, no iris locator involved:
    per direction (up, down, left, right: the pipeline's angles, horizontal negated for
    the mirrored image-right eyes) and angle, the median over eyes of the implied iris
    shift (the flow less the angle-0 flow, averaged over the visible part of the disc
    where anatomy puts the iris) along the command / the anatomical shift ("along", 1 =
    right) and across it ("cross", signed like ``evaluate --real``: up / the image's
    right positive)."""
    from ..evaluate_real import DIRECTIONS

    rows = []
    R = len(eyes)
    mirror = 1.0 - 2.0 * eyes.mirrored.float()  # -1 for the mirrored (image-right) eyes
    with torch.no_grad():
        flow0 = model(eyes.eyes, eyes.anchors, torch.zeros(R, 2), return_intermediates=True).flow
    for d, (sv, sh) in DIRECTIONS.items():
        for a in angles:
            # the pipeline's angles: horizontal negated for the mirrored eyes
            ang = torch.stack([torch.full((R,), sv * a), sh * a * mirror], 1)
            with torch.no_grad():
                flow = model(eyes.eyes, eyes.anchors, ang, return_intermediates=True).flow - flow0
            dd = expected_shift(ang, eyes.width)
            # the visible part of the disc, as the training term reads it (the centre if none)
            pts, keep = visible_disc(eyes.anchors, dd, eyes.width, radius)
            keep[:, 0] = torch.where(keep.sum(1) > 0, keep[:, 0], torch.ones_like(keep[:, 0]))
            moved = -(sample_flow(flow, pts) * keep[:, None]).sum(2) / keep.sum(1)[:, None]  # (R, 2) implied iris shift
            ax = 1 if sv else 0
            exp = dd[:, ax].abs()
            along = (moved[:, ax] * torch.sign(dd[:, ax]) / exp).numpy()
            # the other axis, signed like evaluate --real: up / the image's right positive
            cross = (moved[:, 1 - ax] * (-1 if ax == 0 else mirror) / exp).numpy()
            rows.append({"direction": d, "angle_deg": a, "along": float(np.median(along)), "cross": float(np.median(cross)),
                         "along_per_eye": [round(float(v), 3) for v in along]})
    return rows
