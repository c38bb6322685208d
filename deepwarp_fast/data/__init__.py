"""Training data for DeepWarp: a procedural eye-pair renderer and loaders for real gaze
data, all yielding the same dict (SPEC.md conventions):

    input (3, H, W), target (3, H, W)  float32 in [0, 1]
    anchors (7, 2)                     the input's anchors, patch pixels (x, y)
    angles (2,)                        redirection (vertical, horizontal) degrees
    tilt ()                            head roll in degrees (|tilt| > 8: a "hard" sample)

(batched: a leading batch dimension). The canonical eye is the one on the image's left;
the other eye is mirrored into it (:func:`mirror_sample`).

    from deepwarp_fast.data import render_pairs, SyntheticPairs
    batch = render_pairs(256, seed=0)                 # dict of (256, ...) tensors
    stream = SyntheticPairs(seed=0, batch_size=256)   # endless IterableDataset of batches
"""
from .datasets import MIRROR_ORDER, SyntheticPairs, mirror_sample
from .real import (ColumbiaGazePairs, FolderPairs, PairDataset, SkippedFileWarning, UnityEyesPairs, crop_transform,
                   parse_columbia_name, unityeyes_points)
from .synth import HARD_TILT, SynthOptions, render_pairs

__all__ = [
    "ColumbiaGazePairs", "FolderPairs", "HARD_TILT", "MIRROR_ORDER", "PairDataset", "SkippedFileWarning",
    "SynthOptions", "SyntheticPairs", "UnityEyesPairs", "crop_transform", "mirror_sample", "parse_columbia_name",
    "render_pairs", "unityeyes_points",
]
