"""Bundled sample inputs (public-domain sources only)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Optional, Tuple

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


SAMPLE_FACES = ("astronaut", "grace_hopper")


def sample_face(name: str = "astronaut") -> np.ndarray:
    """A real portrait available offline, (H, W, 3) uint8 RGB: "astronaut" (scikit-image's
    public-domain NASA portrait, 512x512, eyes ~17 px wide) or "grace_hopper"
    (matplotlib's sample photo, 512x600, eyes ~29 px wide). A LookupError names what
    is missing when the package that holds it is not installed."""
    if name == "astronaut":
        try:
            from skimage import data
        except ImportError as exc:
            raise LookupError(f"the astronaut sample needs scikit-image ({exc})") from exc
        return np.ascontiguousarray(data.astronaut()[..., :3])
    if name == "grace_hopper":
        from PIL import Image

        path = grace_hopper_path()
        if path is None:
            raise LookupError("the grace_hopper sample needs matplotlib (its sample_data/grace_hopper.jpg)")
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))  # writable, like the astronaut
    raise ValueError(f"unknown sample face {name!r}: use one of {', '.join(SAMPLE_FACES)}")


def grace_hopper_path() -> Optional[Path]:
    """matplotlib's sample_data/grace_hopper.jpg, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover
        return None
    p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return p if p.is_file() else None


def to_uint8_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 RGB."""
    return (t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
