"""Paper-style evaluation on held-out synthetic pairs.

The measure (the paper's section 4.2): normalised error = MSE(output, target) /
MSE(input, target) per pair; 1 means "no better than leaving the eye as it is", 0 a
perfect redirection. It is reported for three images of the same model: the final
``output`` (CFW + LCM), ``fine`` (CFW without the LCM: the coarse-to-fine warp
alone) and ``coarse`` (the coarse warp O_c alone). Plots: the sorted errors (the
paper's Fig. 5) and the error against the redirection angle (Fig. 6).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from .data.synth.options import HARD_TILT
from .data.synth.sampling import split_tilts
from .training.losses import normalized_error

VARIANTS = ("output", "fine", "coarse")
LABELS = {"output": "DeepWarp (CFW + LCM)", "fine": "CFW without LCM", "coarse": "coarse warp only"}


def draw_angles_tilts(g: torch.Generator, n: int, max_angle: float = 30.0, min_angle: float = 1.0, hard_fraction: float = 0.25,
                      hard_tilt: float = HARD_TILT, max_tilt: float = 20.0, direction: str = "any"):
    """Angles and tilts of ``n`` evaluation pairs: magnitudes uniform in [min_angle, max_angle].

    direction: "any" (uniform on the circle) or "vertical" (the paper's setting); a
    ``hard_fraction`` of the pairs have |tilt| in (hard_tilt, max_tilt].
    Returns (angles (n, 2), tilt (n,)).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= min_angle < max_angle:
        raise ValueError(f"need 0 <= min_angle < max_angle, got {min_angle} and {max_angle}")
    if direction not in ("any", "vertical"):
        raise ValueError(f"direction must be 'any' or 'vertical', got {direction!r}")
    mag = min_angle + (max_angle - min_angle) * torch.rand(n, generator=g, dtype=torch.float64)
    if direction == "any":
        theta = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    else:
        theta = torch.where(torch.rand(n, generator=g) < 0.5, math.pi / 2, -math.pi / 2).double()
    angles = torch.stack([mag * torch.sin(theta), mag * torch.cos(theta)], 1).float()
    hard = torch.rand(n, generator=g) < hard_fraction
    u = torch.rand(n, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    tilt = split_tilts(u, sign, hard, hard_tilt, max_tilt).float()
    return angles, tilt


def heldout_pairs(n: int, seed: int = 0, height: int = 41, width: int = 51, max_angle: float = 30.0,
                  batch_size: int = 250, anatomy: str = "v1", **draw_kwargs) -> Dict[str, torch.Tensor]:
    """``n`` pairs of the data module's held-out split (``SyntheticPairs(split="heldout")``,
    a seed stream disjoint from training) with angles and tilts from :func:`draw_angles_tilts`."""
    from .data import SyntheticPairs

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    draw_angles_tilts(torch.Generator().manual_seed(0), 1, max_angle=max_angle, **draw_kwargs)  # check arguments now
    bs = min(n, batch_size)
    ds = SyntheticPairs(seed, bs, split="heldout", num_batches=math.ceil(n / bs), height=height, width=width,
                        max_redirect=max_angle, sampler=lambda g, b: draw_angles_tilts(g, b, max_angle=max_angle, **draw_kwargs),
                        **({"anatomy": anatomy} if anatomy != "v1" else {}))
    batches = [ds.batch(i) for i in range(len(ds))]
    keys = ("input", "target", "anchors", "angles", "tilt")
    return {k: torch.cat([b[k] for b in batches])[:n] for k in keys}


@torch.no_grad()
def evaluate_pairs(model, pairs: Dict[str, torch.Tensor], batch_size: int = 256) -> Dict[str, np.ndarray]:
    """Per-pair normalised errors of each variant, plus the angles and tilts."""
    model.eval()
    dev = next(model.parameters()).device
    n = pairs["input"].shape[0]
    res = {v: [] for v in VARIANTS}
    for i in range(0, n, batch_size):
        x = pairs["input"][i : i + batch_size].to(dev).float()
        t = pairs["target"][i : i + batch_size].to(dev).float()
        out = model(x, pairs["anchors"][i : i + batch_size].to(dev).float(), pairs["angles"][i : i + batch_size].to(dev).float(),
                    return_intermediates=True)
        for v in VARIANTS:
            res[v].append(normalized_error(getattr(out, v).float(), x, t).cpu())
    result = {v: torch.cat(res[v]).numpy() for v in VARIANTS}
    ang = pairs["angles"].float().cpu().numpy()
    result["angles"] = ang
    result["magnitude"] = np.hypot(ang[:, 0], ang[:, 1])
    if "tilt" in pairs:
        result["tilt"] = pairs["tilt"].float().cpu().numpy()
    return result


def _stats(x: np.ndarray) -> Dict[str, Any]:
    if x.size == 0:
        return {"n": 0}
    return {"n": int(x.size), "median": float(np.median(x)), "mean": float(np.mean(x)),
            "p25": float(np.percentile(x, 25)), "p75": float(np.percentile(x, 75))}


def summarize(result: Dict[str, np.ndarray], bin_width: float = 15.0, max_angle: Optional[float] = None) -> Dict[str, Any]:
    """Medians overall, up to 15 degrees, per ``bin_width`` bin, and the issue's targets."""
    mag = result["magnitude"]
    top = max_angle if max_angle is not None else float(np.ceil(mag.max() / bin_width) * bin_width)
    edges = np.arange(0.0, top + 1e-9, bin_width)
    if edges[-1] < top:
        edges = np.append(edges, top)
    summary: Dict[str, Any] = {"n_pairs": int(mag.size), "bin_width_deg": bin_width, "variants": {}}
    for v in VARIANTS:
        e = result[v]
        bins = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (mag > lo) & (mag <= hi) if lo > 0 else (mag <= hi)
            bins.append({"range_deg": [float(lo), float(hi)], **_stats(e[sel])})
        summary["variants"][v] = {"label": LABELS[v], "all": _stats(e), "up_to_15deg": _stats(e[mag <= 15.0]), "bins": bins}
        if "tilt" in result:
            hard = np.abs(result["tilt"]) > HARD_TILT
            summary["variants"][v]["hard_tilt"] = _stats(e[hard])
            summary["variants"][v]["easy_tilt"] = _stats(e[~hard])
    out, fine = summary["variants"]["output"], summary["variants"]["fine"]
    summary["targets"] = {
        "median_up_to_15deg_le_0.4": bool(out["up_to_15deg"].get("median", math.inf) <= 0.4),
        "median_every_bin_lt_0.8": bool(all(b.get("median", math.inf) < 0.8 for b in out["bins"] if b["n"])),
        "lcm_no_worse_than_cfw": bool(out["all"]["median"] <= fine["all"]["median"]),
    }
    return summary


def plot_sorted_errors(result: Dict[str, np.ndarray], path, title: str = "Sorted normalised errors (cf. paper Fig. 5)") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=80)
    for v in VARIANTS:
        e = np.sort(result[v])
        ax.plot(np.arange(e.size), e, label=f"{LABELS[v]} (median {np.median(e):.2f})")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("held-out pair (sorted by error)")
    ax.set_ylabel("MSE(out, target) / MSE(in, target)")
    ax.set_ylim(0, max(1.2, min(2.0, float(np.percentile(result["coarse"], 98)) * 1.05)))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_error_vs_angle(result: Dict[str, np.ndarray], path, bin_width: float = 2.5,
                        title: str = "Normalised error vs redirection (cf. paper Fig. 6)") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mag = result["magnitude"]
    edges = np.arange(0.0, mag.max() + bin_width, bin_width)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=80)
    for v in VARIANTS:
        med, lo, hi, xs = [], [], [], []
        for a, b, c in zip(edges[:-1], edges[1:], centres):
            e = result[v][(mag > a) & (mag <= b)]
            if e.size:
                xs.append(c)
                med.append(np.median(e))
                lo.append(np.percentile(e, 25))
                hi.append(np.percentile(e, 75))
        line, = ax.plot(xs, med, marker=".", label=LABELS[v])
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("redirection angle |(vertical, horizontal)| (degrees)")
    ax.set_ylabel("median normalised error (IQR shaded)")
    ax.set_ylim(0, 1.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def run_evaluation(model, n: int = 2000, seed: int = 0, out_dir=None, prefix: str = "eval_", max_angle: Optional[float] = None,
                   batch_size: int = 256, anatomy: str = "v1", **draw_kwargs) -> Dict[str, Any]:
    """Render held-out pairs, evaluate, and (with ``out_dir``) write
    ``<prefix>summary.json``, ``<prefix>sorted_errors.png``, ``<prefix>error_vs_angle.png``."""
    cfg = model.config
    max_angle = float(max_angle if max_angle is not None else cfg.max_angle)
    pairs = heldout_pairs(n, seed, height=cfg.height, width=cfg.width, max_angle=max_angle, anatomy=anatomy, **draw_kwargs)
    result = evaluate_pairs(model, pairs, batch_size=batch_size)
    summary = summarize(result, max_angle=max_angle)
    summary.update({"seed": seed, "max_angle_deg": max_angle, "anatomy": anatomy, "data": "deepwarp_fast.data.SyntheticPairs(split='heldout')",
                    "provenance": getattr(model, "provenance", None)})
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{prefix}summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        plot_sorted_errors(result, out_dir / f"{prefix}sorted_errors.png")
        plot_error_vs_angle(result, out_dir / f"{prefix}error_vs_angle.png")
    return summary
