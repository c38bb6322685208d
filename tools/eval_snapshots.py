"""Evaluate every snapshot of a training run, to keep the one that is best on real faces
(issue 12): per snapshot the real-face gain (`deepwarp-fast evaluate --real`) and the
held-out synthetic error on both eyeballs (`deepwarp-fast evaluate -n 2000 --seed 0`,
v1 and anatomical) and the network's own iris shift on the real eyes (tools/flow_gain.py:
mean |log(along)| and the largest |cross| at 15 and 25 degrees), cached per snapshot,
then one table.

    python tools/eval_snapshots.py runs/gaze_long            # once
    python tools/eval_snapshots.py runs/gaze_long --watch    # until the run stops writing

The shipped default weights are evaluated too (row "shipped"), for comparison.
"""
import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    subprocess.run([sys.executable, "-m", "deepwarp_fast", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def evaluate(weights, out: Path, augment: bool = False) -> dict:
    """The three evaluations of ``weights`` (None: the shipped default) into ``out``
    (``augment``: the real faces also mirrored and rescaled, evaluate --real --augment)."""
    w = ["--weights", str(weights)] if weights else []
    if not (out / "real_summary.json").is_file():
        _cli("evaluate", "--real", *w, *(["--augment"] if augment else []), "-o", str(out))
    for anatomy in ("v1", "anatomical"):
        if not (out / f"{anatomy}_summary.json").is_file():
            _cli("evaluate", "-n", "2000", "--seed", "0", "--anatomy", anatomy, "--prefix", f"{anatomy}_", *w, "-o", str(out))
    real = json.loads((out / "real_summary.json").read_text())
    row = {"real_score": real["score"]["mean_abs_log_gain"], "in_band": real["score"]["in_band"], "n": real["score"]["n"],
           "targets": real["targets"], "fit": real.get("score_fit")}
    for d in real["table"]:
        if d["angle_deg"] in (15.0, 25.0):
            row[f"{d['direction']}{int(d['angle_deg'])}"] = d["per_face_gain"]
    for anatomy in ("v1", "anatomical"):
        s = json.loads((out / f"{anatomy}_summary.json").read_text())
        row[anatomy] = s["variants"]["output"]["all"]["median"]
    # the network's own iris shift on the same faces, no locator (tools/flow_gain.py)
    fg = out / "flow_gain.json"
    if not fg.is_file():
        _cli_tool("flow_gain.py", *(["--weights", str(weights)] if weights else []), "--json", str(fg))
    flows = [r for r in json.loads(fg.read_text()) if r["angle_deg"] in (15.0, 25.0)]
    row["flow_along"] = float(np.mean([abs(np.log(max(r["along"], 1e-6))) for r in flows]))
    row["flow_cross"] = max(abs(r["cross"]) for r in flows)
    return row


def _cli_tool(name, *args):
    subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def table(rows) -> str:
    lines = ["| weights | real mean abs log gain | faces in 0.8-1.2 | limbus fit: score, in band | flow: mean abs log along, "
             "max abs cross | v1 median | anatomical median |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        fit = r.get("fit") or {}
        fit_s = f"{fit['mean_abs_log_gain']:.3f}, {fit['in_band']}/{fit['n']}" if fit.get("mean_abs_log_gain") is not None else "-"
        lines.append(f"| {name} | {r['real_score']:.3f} | {r['in_band']}/{r['n']} | {fit_s} | {r['flow_along']:.3f}, "
                     f"{r['flow_cross']:.2f} | {r['v1']:.4f} | {r['anatomical']:.4f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a training run's folder (holds weights_step<N>.safetensors)")
    ap.add_argument("--watch", action="store_true", help="keep evaluating new snapshots until the run's log stops growing")
    ap.add_argument("--augment", action="store_true",
                    help="score the real faces also mirrored and rescaled (5x the faces, a steadier score)")
    args = ap.parse_args()
    run = Path(args.run)
    cache = run / ("snapshot_eval_augmented" if args.augment else "snapshot_eval")
    from deepwarp_fast.weights import default_weights_path

    # the shipped weights change between sessions: their cache entry is named by content
    shipped = "shipped-" + hashlib.sha256(Path(default_weights_path()).read_bytes()).hexdigest()[:8]
    done = {}
    while True:
        snaps = sorted(run.glob("weights_step*.safetensors"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
        todo = [(shipped, None)] + [(p.stem.replace("weights_", ""), p) for p in snaps]
        for name, path in todo:
            if name not in done:
                done[name] = evaluate(path, cache / name, args.augment)
                print(f"{name}: {json.dumps(done[name])}", flush=True)
        rows = list(done.items())
        (cache / "table.md").write_text(table(rows) + "\n")
        if not args.watch:
            break
        metrics = run / "metrics.csv"
        if metrics.is_file() and time.time() - metrics.stat().st_mtime > 600:
            break  # the run has stopped
        time.sleep(60)
    print(table(list(done.items())))


if __name__ == "__main__":
    main()
