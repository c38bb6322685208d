"""Make a training snapshot the shipped default weights (issue 12): the snapshot's tensors
and provenance, plus what chose it, written to deepwarp_fast/weights/default.safetensors.

    python tools/ship_weights.py runs/gaze_long/weights_step<N>.safetensors \
        --why "best real-face gain of the run's snapshots (tools/eval_snapshots.py)"

Added to the provenance: ``evaluation`` (held-out, `deepwarp-fast evaluate -n 2000 --seed 0`,
both eyeballs), ``real_faces`` (the score of `deepwarp-fast evaluate --real`), ``parent``
(the provenance of the weights it was fine-tuned from, in short) and ``selected_by``.
"""
import argparse
import json
from pathlib import Path

from deepwarp_fast import default_weights_path, load_model, read_metadata, save_weights
from deepwarp_fast.evaluate import run_evaluation
from deepwarp_fast.evaluate_real import run_real_evaluation


def _held_out(model, anatomy):
    s = run_evaluation(model, n=2000, seed=0, anatomy=anatomy)
    out = s["variants"]["output"]
    return {"median_all": round(out["all"]["median"], 4), "median_up_to_15deg": round(out["up_to_15deg"]["median"], 4),
            "median_bins": {f"{b['range_deg'][0]:g}-{b['range_deg'][1]:g}": round(b["median"], 4) for b in out["bins"]}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("snapshot")
    ap.add_argument("--why", required=True, help="how the snapshot was chosen (recorded as selected_by)")
    args = ap.parse_args()
    dst = default_weights_path()
    parent = read_metadata(dst)["provenance"]
    model = load_model(args.snapshot)
    prov = dict(model.provenance)
    prov.pop("saved_at", None)
    prov["snapshot"] = str(Path(args.snapshot).name)
    prov["selected_by"] = args.why
    prov["parent"] = {k: parent.get(k) for k in ("command", "steps", "train_time_s", "saved_at", "hardware")}
    prov["evaluation_command"] = "deepwarp-fast evaluate -n 2000 --seed 0 [--anatomy anatomical]"
    prov["evaluation"] = {"v1": _held_out(model, "v1"), "anatomical": _held_out(model, "anatomical")}
    model.eval()
    from deepwarp_fast.face import GazeRedirector

    real = run_real_evaluation(GazeRedirector(weights=args.snapshot, device="cpu"))
    prov["real_faces"] = {"command": "deepwarp-fast evaluate --real", "score": real["score"], "targets": real["targets"]}
    save_weights(model, dst, provenance=prov)
    print(json.dumps({k: prov[k] for k in ("steps", "evaluation", "real_faces")}, indent=1))
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
