"""Average the weights of several snapshots of one run (stochastic weight averaging over
the late, low-learning-rate part of a run): one model whose every float tensor, BN
statistics included, is the mean of the snapshots'. Choosing it needs no look at the
evaluation faces, unlike picking the single best snapshot.

    python tools/average_snapshots.py runs/gaze_long/weights_step{10000,11000,12000}.safetensors -o avg.safetensors
"""
import argparse
from pathlib import Path

import torch

from deepwarp_fast import load_model, save_weights


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("snapshots", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    models = [load_model(p) for p in args.snapshots]
    avg = models[0]
    with torch.no_grad():
        states = [m.state_dict() for m in models]
        for k, v in avg.state_dict().items():
            if v.dtype.is_floating_point:
                v.copy_(torch.stack([s[k] for s in states]).mean(0))
    prov = dict(models[0].provenance)
    prov.pop("saved_at", None)
    prov["averaged_snapshots"] = [Path(p).name for p in args.snapshots]
    prov["steps"] = max(m.provenance.get("steps", 0) for m in models)
    prov["train_time_s"] = max(m.provenance.get("train_time_s", 0) for m in models)
    save_weights(avg, args.output, provenance=prov)
    print(f"wrote {args.output}: mean of {len(models)} snapshots")


if __name__ == "__main__":
    main()
