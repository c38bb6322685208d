"""Training data for DeepWarp: a procedural eye-pair renderer and loaders for real gaze
data, all yielding the same dict (SPEC.md conventions):

    input (3, H, W), target (3, H, W)  float32 in [0, 1]
    anchors (7, 2)                     the input's anchors, patch pixels (x, y)
    angles (2,)                        redirection (vertical, horizontal) degrees
    tilt ()                            head roll in degrees (|tilt| > 8: a "hard" sample)

(batched: a leading batch dimension). The canonical eye is the one on the image's left;
the other eye is mirrored into it (:func:`mirror_sample`).
"""
from .synth import HARD_TILT, SynthOptions, render_pairs

__all__ = ["HARD_TILT", "SynthOptions", "render_pairs"]
