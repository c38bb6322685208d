"""How far the network itself moves the iris of real eyes: no iris locator involved.

For every eye of the given portraits (cut like the pipeline), per direction and angle:
the network's backward flow of the redirection, less its flow at angle 0 (what the
pipeline applies), read across the disc where anatomy puts the iris (the pupil anchor
+ 0.42 sin(angle) eye widths); "along" = the implied iris shift along the commanded
axis / the anatomical shift (1.0 = right), "cross" = the shift on the other axis / the
same (0 = right). Median over eyes. Complements `deepwarp-fast evaluate --real`, whose
locator sees what the picture shows (lids, shading) on top of the flow.

    python tools/flow_gain.py                          # the shipped weights, bundled faces
    python tools/flow_gain.py --weights runs/x/weights_step500.safetensors --photos grace_hopper
"""
import argparse
import json

import numpy as np
import torch

from deepwarp_fast.data.real_eyes import collect_real_eyes, disc_points, expected_shift, real_photos, sample_flow
from deepwarp_fast.evaluate_real import ANGLES, DIRECTIONS
from deepwarp_fast.weights import load_model


def flow_gain(model, eyes, angles=ANGLES, radius: float = 0.08):
    rows = []
    R = len(eyes)
    mirror = torch.tensor([-1.0 if "image_right" in s else 1.0 for s in eyes.sources])
    for d, (sv, sh) in DIRECTIONS.items():
        for a in angles:
            # the pipeline's angles: horizontal negated for the mirrored (image-right) eyes
            ang = torch.tensor([sv * a, sh * a], dtype=torch.float32).repeat(R, 1) * torch.stack([torch.ones(R), mirror], 1)
            with torch.no_grad():
                out = model(torch.cat([eyes.eyes, eyes.eyes]), torch.cat([eyes.anchors, eyes.anchors]),
                            torch.cat([ang, torch.zeros_like(ang)]), return_intermediates=True)
            flow = out.flow[:R] - out.flow[R:]
            dd = expected_shift(ang, eyes.width)
            pts = disc_points(eyes.anchors[:, 6] + dd, radius * eyes.width)
            moved = -sample_flow(flow, pts).mean(2)  # (R, 2) implied iris shift
            ax = 1 if sv else 0
            exp = dd[:, ax].abs()
            along = (moved[:, ax] * torch.sign(dd[:, ax]) / exp).numpy()
            # the other axis, signed like evaluate --real: up / the image's right positive
            cross = (moved[:, 1 - ax] * (-1 if ax == 0 else mirror) / exp).numpy()
            rows.append({"direction": d, "angle_deg": a, "along": float(np.median(along)), "cross": float(np.median(cross)),
                         "along_per_eye": [round(float(v), 3) for v in along]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="a .safetensors file (default: the shipped weights)")
    ap.add_argument("--photos", default="bundled", help='"bundled", a bundled face name, or a folder (comma-separated)')
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights, backend="reference", device="cpu").eval()
    c = model.config
    eyes = collect_real_eyes(real_photos(args.photos), c.height, c.width, c.crop_scale, copies=1, scales=(1.0,),
                             mirror=False)
    rows = flow_gain(model, eyes)
    print(f"{len(eyes)} eyes ({args.photos}); weights {args.weights or 'shipped'}")
    print("direction angle  along  cross   per eye")
    for r in rows:
        print(f"{r['direction']:>9} {r['angle_deg']:5.0f}  {r['along']:5.2f}  {r['cross']:+5.2f}   {r['along_per_eye']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
