"""How far the network moves the iris on rendered eyes, per direction, against the renderer's
own target (issue 12): a domain check for the real-face gain of `deepwarp-fast evaluate --real`.

For each direction (up, down, left, right) at ``--angle`` degrees, ``-n`` pairs are rendered
with no head roll and no camera effects; the iris is located (face.metrics.locate_iris, the
real-face evaluation's limbus fit) in the input, in the target and in the network's output
(inside the target's lid outline), and the output's displacement along the commanded axis is
divided by the target's. 1.0: the network moves the iris exactly as far as the renderer
does. If these are near 1 in every direction while the real-face gain of one direction is
low, the shortfall is the real eyes' (lids, lashes, shading), not the training's.

    python tools/synthetic_gain.py [--weights W] [-n 64] [--angle 15]
"""
import argparse

import numpy as np
import torch

from deepwarp_fast import load_model
from deepwarp_fast.data import render_pairs
from deepwarp_fast.evaluate_real import DIRECTIONS
from deepwarp_fast.face.metrics import displacement, eye_axes, locate_iris


def direction_gains(model, anatomy: str, angle: float, n: int, seed: int = 7):
    """{direction: (median output/target displacement along the commanded axis, pairs measured,
    median output cross, median target cross)}; displacements in eye widths along the input
    eye's own axes (face.metrics.displacement, as the real-face gain measures them); a
    "cross" is the movement on the other axis over the target's movement along the commanded
    one (signed: + right or up), the real-face evaluation's cross-axis measure."""
    res = {}
    for d, (sv, sh) in DIRECTIONS.items():
        b = render_pairs(n, seed=seed, angles=torch.tensor([sv * angle, sh * angle]), tilt=0.0,
                         gaze_range=max(20.0, angle + 5.0), camera=False, anatomy=anatomy)
        with torch.no_grad():
            out = model(b["input"], b["anchors"], b["angles"])
        along = 1 if sv else 0  # displacement() returns (horizontal, vertical)
        ratios, cross_out, cross_tgt = [], [], []
        other = 1 - along
        for i in range(n):
            img = lambda t: t[i].permute(1, 2, 0).numpy()  # noqa: E731
            eye6 = b["anchors"][i, :6].numpy()
            p_in = locate_iris(img(b["input"]), eye6)
            p_out = locate_iris(img(out), b["target_anchors"][i, :6].numpy())
            p_tgt = locate_iris(img(b["target"]), b["target_anchors"][i, :6].numpy())
            if p_in is None or p_out is None or p_tgt is None:
                continue
            moved = displacement(p_in, p_tgt, eye6)[along]
            if abs(moved) * eye_axes(eye6)[2] < 0.3:  # under 0.3 px: below the locator's resolution
                continue
            d_out = displacement(p_in, p_out, eye6)
            ratios.append(d_out[along] / moved)
            cross_out.append(d_out[other] / abs(moved))
            cross_tgt.append(displacement(p_in, p_tgt, eye6)[other] / abs(moved))
        med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
        res[d] = (med(ratios), len(ratios), med(cross_out), med(cross_tgt))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped weights)")
    ap.add_argument("-n", type=int, default=64, help="pairs per direction (default 64)")
    ap.add_argument("--angle", type=float, default=15.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.weights).eval()
    print(f"output / target iris displacement at {args.angle:g} degrees, {args.n} rendered pairs per direction "
          f"(median; 1.0 = as far as the renderer moves it)")
    print("| renderer | " + " | ".join(DIRECTIONS) + " |")
    print("|---|" + "---:|" * len(DIRECTIONS))
    crosses = {}
    for anatomy in ("anatomical", "v1"):
        g = direction_gains(model, anatomy, args.angle, args.n)
        print(f"| {anatomy} | " + " | ".join(f"{g[d][0]:.2f} (n={g[d][1]})" for d in DIRECTIONS) + " |")
        crosses[anatomy] = g
    print("\nmovement on the other axis over the target's along the commanded one (median, signed: + right or up):"
          " network output / renderer's target")
    print("| renderer | " + " | ".join(DIRECTIONS) + " |")
    print("|---|" + "---:|" * len(DIRECTIONS))
    for anatomy, g in crosses.items():
        print(f"| {anatomy} | " + " | ".join(f"{g[d][2]:+.2f} / {g[d][3]:+.2f}" for d in DIRECTIONS) + " |")


if __name__ == "__main__":
    main()
