"""The dataset interface: synthetic pairs (infinite training stream and a fixed held-out
set) and the SPEC.md left/right mirroring shared by every loader.

Every loader yields dicts with (at least):

    input (3, H, W), target (3, H, W)  float32 in [0, 1], the canonical eye
    anchors (7, 2)                     the input's anchors (x, y), patch pixels
    angles (2,)                        (vertical, horizontal) degrees = target - input gaze
    tilt ()                            head roll, degrees (|tilt| > 8: "hard")

batched (a leading dimension) for :class:`SyntheticPairs`, per pair for the real-data
loaders (``torch.utils.data.DataLoader`` batches them with its default collate).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .synth import render_pairs

Sample = Dict[str, torch.Tensor]

# Canonical anchor index <- index in the mirrored eye (SPEC.md): after mirroring an
# image-right eye, its points in the order dlib 45, 44, 43, 42, 47, 46 are the
# canonical 0..5; equivalently, mirroring a canonical eye maps anchors 0..5 to 3, 2,
# 1, 0, 5, 4 (outer <-> inner corner, the lid points swap with them). Pupil stays.
MIRROR_ORDER = (3, 2, 1, 0, 5, 4, 6)


def mirror_sample(sample: Sample, width: Optional[int] = None) -> Sample:
    """Mirror a sample (or batch) horizontally into / out of the canonical frame:
    images flipped left-right, anchors x -> (W - 1) - x and reordered (MIRROR_ORDER),
    the horizontal angle (and gazes) negated, the tilt negated. Other keys are kept."""
    out = dict(sample)
    ref = sample.get("input")
    W = width if width is not None else ref.shape[-1]
    for k in ("input", "target"):
        if k in sample:
            out[k] = sample[k].flip(-1)
    for k in ("anchors", "target_anchors"):
        if k in sample:
            a = sample[k][..., list(MIRROR_ORDER), :].clone()
            a[..., 0] = (W - 1) - a[..., 0]
            out[k] = a
    for k in ("angles", "input_gaze", "target_gaze"):
        if k in sample:
            a = sample[k].clone()
            a[..., 1] = -a[..., 1]
            out[k] = a
    if "tilt" in sample:
        out["tilt"] = -sample["tilt"]
    return out


def _mix(*xs: int) -> int:
    """A 63-bit hash of integers (splitmix64 steps): seeds that do not collide."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class SyntheticPairs(IterableDataset):
    """Batches of procedurally rendered pairs (:func:`render_pairs`) as dicts.

    split="train": an endless stream (or ``num_batches`` batches); split="heldout": a
    fixed set of ``num_batches`` (default 16) batches. The two splits draw from
    disjoint seed streams, so held-out pairs never appear in training. Batch ``i`` is
    rendered from seed ``hash(seed, split, i)``, so the stream is reproducible and, in a
    DataLoader with several workers (use ``batch_size=None``), worker ``w`` renders the
    batches ``i = w (mod workers)`` without duplicates.

    ``sampler(generator, batch_size) -> (angles (B, 2), tilt (B,))``, when given, chooses
    each batch's redirections and tilts (e.g. angle bins x easy/hard); other keyword
    arguments go to :func:`render_pairs` (height, width, gaze_range, max_redirect,
    hard_fraction, device, and the SynthOptions).
    """

    SPLITS = {"train": 0, "heldout": 1}

    def __init__(self, seed: int, batch_size: int, split: str = "train", num_batches: Optional[int] = None,
                 sampler: Optional[Callable[[torch.Generator, int], Tuple[torch.Tensor, torch.Tensor]]] = None,
                 **render_kw):
        super().__init__()
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {sorted(self.SPLITS)}, got {split!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches must be positive or None, got {num_batches!r}")
        if split == "heldout" and num_batches is None:
            num_batches = 16
        self.seed, self.batch_size, self.split = int(seed), batch_size, split
        self.num_batches = num_batches
        self.sampler = sampler
        self.render_kw = render_kw
        render_pairs(1, 0, **{k: v for k, v in render_kw.items() if k != "device"})  # validate the options now

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless SyntheticPairs stream has no length (pass num_batches)")
        return self.num_batches

    def batch_seed(self, i: int) -> int:
        return _mix(self.seed, self.SPLITS[self.split], i)

    def batch(self, i: int) -> Sample:
        """Batch ``i`` of this split (deterministic)."""
        s = self.batch_seed(i)
        kw = dict(self.render_kw)
        if self.sampler is not None:
            g = torch.Generator().manual_seed(_mix(s, 7))
            angles, tilt = self.sampler(g, self.batch_size)
            kw["angles"], kw["tilt"] = angles, tilt
        return render_pairs(self.batch_size, s, **kw)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        i = wid
        while self.num_batches is None or i < self.num_batches:
            yield self.batch(i)
            i += nw
