"""How far the network itself moves the iris of real eyes: no iris locator involved.

For every eye of the given portraits (cut like the pipeline), per direction and angle:
the network's backward flow of the redirection, less its flow at angle 0 (what the
pipeline applies), read across the disc where anatomy puts the iris (the pupil anchor
+ 0.42 sin(angle) eye widths; its points inside the eye opening, as the training term
loss.real_iris reads them); "along" = the implied iris shift along the commanded
axis / the anatomical shift (1.0 = right), "cross" = the shift on the other axis / the
same (0 = right). Median over eyes. Complements `deepwarp-fast evaluate --real`, whose
locator sees what the picture shows (lids, shading) on top of the flow.

    python tools/flow_gain.py                          # the shipped weights, bundled faces
    python tools/flow_gain.py --weights runs/x/weights_step500.safetensors --photos grace_hopper
"""
import argparse
import json

import torch

from deepwarp_fast.data.real_eyes import collect_real_eyes, flow_gain, real_photos
from deepwarp_fast.weights import load_model


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
