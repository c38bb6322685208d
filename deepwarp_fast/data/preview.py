"""Contact sheets of eye pairs with their anchors drawn, to judge realism at a glance."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

# anchor colours: lid points green (corners brighter), pupil red
_ANCHOR_RGB = [(60, 255, 60), (0, 200, 255), (0, 200, 255), (60, 255, 60), (255, 220, 0), (255, 220, 0), (255, 40, 40)]


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def contact_sheet(inputs: torch.Tensor, targets: torch.Tensor, anchors: Optional[torch.Tensor] = None,
                  target_anchors: Optional[torch.Tensor] = None, labels: Optional[Sequence[str]] = None,
                  cols: int = 4, scale: int = 3, draw_anchors: bool = True):
    """A PIL image: ``cols`` pairs per row, each pair as input | target, upscaled ``scale`` x
    (nearest), anchors drawn as small dots, an optional label under each pair.

    inputs, targets: (N, 3, H, W) in [0, 1]; anchors, target_anchors: (N, 7, 2) patch pixels.
    """
    from PIL import Image, ImageDraw

    N, _, H, W = inputs.shape
    cols = max(1, min(cols, N))
    rows = (N + cols - 1) // cols
    gap, label_h = 6, (12 if labels is not None else 0)
    cw, ch = 2 * W * scale + 2, H * scale + label_h
    sheet = Image.new("RGB", (cols * cw + (cols + 1) * gap, rows * ch + (rows + 1) * gap), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for i in range(N):
        r, c = divmod(i, cols)
        x0, y0 = gap + c * (cw + gap), gap + r * (ch + gap)
        for j, (img, anc) in enumerate(((inputs[i], anchors), (targets[i], target_anchors))):
            tile = Image.fromarray(_to_uint8(img)).resize((W * scale, H * scale), Image.NEAREST)
            ox = x0 + j * (W * scale + 2)
            sheet.paste(tile, (ox, y0))
            if draw_anchors and anc is not None:
                for k, (ax, ay) in enumerate(anc[i].tolist()):
                    px, py = ox + (ax + 0.5) * scale, y0 + (ay + 0.5) * scale
                    draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=_ANCHOR_RGB[k])
        if labels is not None:
            draw.text((x0, y0 + H * scale + 1), labels[i], fill=(220, 220, 220))
    return sheet


def preview_sheet(n: int = 24, seed: int = 0, cols: int = 4, scale: int = 3, draw_anchors: bool = True, **render_kw):
    """Render ``n`` random pairs and lay them out with :func:`contact_sheet`; the label
    under each pair is its redirection (vertical, horizontal) and tilt in degrees."""
    from .synth import render_pairs

    r = render_pairs(n, seed, **render_kw)
    labels = [f"v{a[0]:+.0f} h{a[1]:+.0f} t{t:+.0f}" for a, t in zip(r["angles"].tolist(), r["tilt"].tolist())]
    return contact_sheet(r["input"], r["target"], r["anchors"], r.get("target_anchors"), labels, cols, scale, draw_anchors)
