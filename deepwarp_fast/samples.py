"""Bundled sample inputs (public-domain sources only)."""
from __future__ import annotations

import json
from importlib import resources
from typing import Tuple

import numpy as np
import torch


def sample_eye() -> Tuple[torch.Tensor, torch.Tensor]:
    """The bundled eye patch (from scikit-image's public-domain astronaut portrait).

    Returns eyes (1, 3, 41, 51) float32 in [0, 1] and anchors (1, 7, 2) in patch pixels.
    """
    from PIL import Image

    root = resources.files("deepwarp_fast").joinpath("assets")
    with root.joinpath("astronaut_eye.png").open("rb") as f:
        rgb = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
    meta = json.loads(root.joinpath("astronaut_eye.json").read_text())
    eyes = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).contiguous()
    anchors = torch.tensor(meta["anchors"], dtype=torch.float32).unsqueeze(0)
    return eyes, anchors


def to_uint8_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 RGB."""
    return (t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
