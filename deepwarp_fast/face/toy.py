"""A geometric stand-in for the network, to check the pipeline's wiring (crops,
mirroring, angle signs, paste-back) without trained weights. Not gaze redirection.

``ShiftEyesModel(px_per_degree)`` moves the content around each eye's pupil anchor
by (horizontal, -vertical) * px_per_degree patch pixels, fading out with distance
from the pupil: a positive horizontal angle moves the iris towards the patch's
right, a positive vertical one moves it up, as SPEC.md's angles say the gaze moves.
Its ``fields`` give the face pipeline's native paste the same warp.
"""
from __future__ import annotations

import torch

from ..config import DeepWarpConfig
from ..ops import warp_reference


class ShiftEyesModel(torch.nn.Module):
    def __init__(self, px_per_degree: float = 0.3, radius: float = 8.0, config: DeepWarpConfig = None):
        super().__init__()
        self.config = config or DeepWarpConfig()
        self.px_per_degree = float(px_per_degree)
        self.radius = float(radius)

    def fields(self, eyes: torch.Tensor, anchors: torch.Tensor, angles: torch.Tensor):
        """(flow, None): the backward flow in patch pixels, no lightness mask."""
        B, _, H, W = eyes.shape
        ys = torch.arange(H, dtype=eyes.dtype, device=eyes.device).view(1, H, 1)
        xs = torch.arange(W, dtype=eyes.dtype, device=eyes.device).view(1, 1, W)
        px, py = anchors[:, 6, 0].view(B, 1, 1), anchors[:, 6, 1].view(B, 1, 1)
        weight = torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * self.radius ** 2))
        dx = (angles[:, 1] * self.px_per_degree).view(B, 1, 1)
        dy = (-angles[:, 0] * self.px_per_degree).view(B, 1, 1)
        # Sampling at x - d moves the content by +d.
        return torch.stack([-dx * weight, -dy * weight], dim=1), None

    def forward(self, eyes: torch.Tensor, anchors: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        return warp_reference(eyes, self.fields(eyes, anchors, angles)[0])
