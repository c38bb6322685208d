"""The paper's batch sampling: angle bins, easy and hard pairs.

The redirection range is split into ``num_bins`` bins; each batch takes
``bins_per_batch`` distinct bins and from each ``easy_per_bin`` pairs with a head
tilt of at most ``hard_tilt`` degrees and ``hard_per_bin`` "hard" pairs tilted by
more (the paper: 15 bins, 4 bins x (24 easy + 8 hard) = 128). The sampler only draws
the angles and tilts; the generator (deepwarp_fast.data.render_pairs) renders them.
Every draw is a function of (seed, step, rank), so a resumed or distributed run sees
the same batches as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.synth.sampling import split_tilts
from .config import DataConfig


@dataclass
class BatchPlan:
    angles: torch.Tensor  # (N, 2) redirection (vertical, horizontal) degrees
    tilt: torch.Tensor  # (N,) head tilt degrees
    bins: torch.Tensor  # (N,) bin index of each pair
    hard: torch.Tensor  # (N,) bool
    seed: int  # the seed for the renderer


def step_seed(base: int, step: int, rank: int = 0) -> int:
    """A seed per (base, step, rank), far from the seeds of neighbouring steps and ranks."""
    return (int(base) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729 + 17) % (2**31 - 1)


class PaperSampler:
    """Draws the angles and tilts of one batch (see the module docstring)."""

    def __init__(self, cfg: DataConfig, curriculum_steps: int = 0, curriculum_start_bins: int = 0):
        self.cfg = cfg
        self.curriculum_steps = int(curriculum_steps)
        self.curriculum_start_bins = max(1, min(int(curriculum_start_bins or cfg.num_bins), cfg.num_bins))
        R, n = cfg.max_redirect, cfg.num_bins
        if cfg.binning == "magnitude":
            self.edges = torch.linspace(0.0, R, n + 1, dtype=torch.float64)
        else:
            self.edges = torch.linspace(-R, R, n + 1, dtype=torch.float64)
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        # Bins ordered from small to large redirection, for the curriculum.
        self.order = torch.argsort(centres.abs(), stable=True)

    def allowed_bins(self, step: int) -> torch.Tensor:
        """Bin indices that may be drawn at ``step`` (all of them without a curriculum)."""
        n = self.cfg.num_bins
        if self.curriculum_steps <= 0 or step >= self.curriculum_steps:
            m = n
        else:
            m0 = self.curriculum_start_bins
            m = int(round(m0 + (n - m0) * step / self.curriculum_steps))
        return self.order[: max(1, min(m, n))]

    def sample(self, step: int, rank: int = 0) -> BatchPlan:
        c = self.cfg
        seed = step_seed(c.seed, step, rank)
        g = torch.Generator().manual_seed(seed)
        allowed = self.allowed_bins(step)
        if len(allowed) >= c.bins_per_batch:
            pick = allowed[torch.randperm(len(allowed), generator=g)[: c.bins_per_batch]]
        else:
            pick = allowed[torch.randint(len(allowed), (c.bins_per_batch,), generator=g)]
        per_bin = c.easy_per_bin + c.hard_per_bin
        bins = pick.repeat_interleave(per_bin)
        hard = torch.tensor(([False] * c.easy_per_bin + [True] * c.hard_per_bin) * c.bins_per_batch)
        N = bins.numel()
        lo, hi = self.edges[bins], self.edges[bins + 1]
        value = lo + (hi - lo) * torch.rand(N, generator=g, dtype=torch.float64)
        if c.binning == "magnitude":
            theta = torch.rand(N, generator=g, dtype=torch.float64) * (2 * torch.pi)
            angles = torch.stack([value * torch.sin(theta), value * torch.cos(theta)], 1)
        else:
            angles = torch.stack([value, torch.zeros_like(value)], 1)
        sign = torch.where(torch.rand(N, generator=g) < 0.5, -1.0, 1.0).double()
        u = torch.rand(N, generator=g, dtype=torch.float64)
        tilt = split_tilts(u, sign, hard, c.hard_tilt, c.max_tilt)
        return BatchPlan(angles.float(), tilt.float(), bins, hard, seed)


def render_batch(plan: BatchPlan, cfg: DataConfig, height: int, width: int, device: "str | torch.device" = "cpu",
                 layers: bool = False):
    """Render the pairs of ``plan`` with deepwarp_fast.data.render_pairs: a batch dict.
    ``layers`` (or ``cfg.layers``) adds the masks (B, 2, H, W) "iris", "opening",
    "eye_region", "pupil" (input, target)."""
    from ..data import render_pairs

    kw = {}
    anatomy = cfg.anatomy
    if anatomy == "mixed":  # by the batch seed's parity: about half v1, half anatomical
        anatomy = "anatomical" if plan.seed % 2 else "v1"
    if anatomy != "v1":
        kw["anatomy"] = anatomy
    if layers or cfg.layers:
        kw["return_layers"] = True
    return render_pairs(
        plan.angles.shape[0], plan.seed, height=height, width=width, gaze_range=cfg.gaze_range,
        max_redirect=cfg.max_redirect, angles=plan.angles, tilt=plan.tilt, device=device, **kw,
    )
