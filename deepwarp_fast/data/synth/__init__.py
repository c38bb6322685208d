"""A procedural renderer of eye-region image pairs: the same eye looking in two directions.

Each pair shares the eye, skin, lighting, crop and camera; only the gaze (and the
eyelids' response to it) differs. Everything is vectorised over the batch with
torch and rendered at ``supersample`` times the patch size, then area-downsampled.

Convention (SPEC.md):
  * the canonical eye is the one on the image's LEFT (the person's right eye, dlib
    36-41): outer corner (anchor 0) on the patch's left, inner corner (anchor 3, with
    the caruncle) on the right;
  * anchors are (x, y) in patch pixels, pixel centres at integers, 0..W-1 / 0..H-1:
    outer corner, two upper-lid points, inner corner, two lower-lid points (dlib
    36..41 order), then the pupil centre;
  * angles are (vertical, horizontal) degrees; vertical > 0 looks up (smaller y),
    horizontal > 0 looks towards the image's right (larger x). ``angles`` =
    target gaze - input gaze;
  * tilt is the head roll in degrees: the angle of the line from the outer to the
    inner corner, atan2(dy, dx) in image coordinates (y down), so tilt > 0 has the
    inner corner lower. "Hard" samples have |tilt| > 8 degrees.
  * crop: the corner distance is ``width / crop_scale`` pixels (crop_scale = 2.0, as
    DeepWarpConfig), jittered like real landmark noise; the corners' midpoint is near
    the patch centre; pixels are square.

Internally the eye lives in an "eye frame" (u, v): corners at (-1, 0) and (+1, 0),
v pointing down, one unit = half the corner distance. A pixel maps to the eye frame by
undoing the crop's translation, scale and roll.

The package, one concern a module:
  * ``options``: SynthOptions and the shared constants (ANATOMIES, HARD_TILT, ROTATION_RADIUS);
  * ``sampling``: gazes, tilts and every per-sample random parameter;
  * ``geometry``: the eye frame, lids, anchors, derived_params;
  * ``shading``: the skin and the eye layer, per pixel;
  * ``render``: one batch (window, supersampling, compositing);
  * ``pairs``: render_pairs, the entry point.
"""
from ..camera import apply_camera  # re-exported: importable from here as before the split
from .options import ANATOMIES, HARD_TILT, ROTATION_RADIUS, SynthOptions
from .sampling import sample_gazes, sample_noise_fields, sample_params, sample_tilts, split_tilts
from .geometry import anchors_from_params, derived_params, eye_to_patch, gaze_vector, lid_curves, lid_heights
from .shading import render_eye, render_skin
from .render import render_batch
from .pairs import render_pairs

__all__ = [
    "ANATOMIES", "HARD_TILT", "ROTATION_RADIUS", "SynthOptions", "anchors_from_params", "derived_params",
    "eye_to_patch", "gaze_vector", "lid_curves", "lid_heights", "render_batch", "render_eye", "render_pairs",
    "render_skin", "sample_gazes", "sample_noise_fields", "sample_params", "sample_tilts", "split_tilts",
    "apply_camera",
]
