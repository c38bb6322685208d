"""Merge a results folder's per-file benchmark JSONs and write its summary table.

    python benchmarks/summarize.py benchmarks/results/<date>-<device> [--versions "torch ..., triton ..."]

Reads every ``bench-*.json`` there (pytest-benchmark's ``--benchmark-json``; an empty or
broken one, from a file that skipped or was stopped, is named and left out), writes
``benchmarks.json`` (all rows) and ``summary.md``: per group and backend the median, p20
and p80 in ms, GB/s, the speed-up over the reference row and the share of a plain copy's
GB/s. Needs no GPU: the device is read from the rows (``extra_info["device"]``).
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys


def merge(folder: str):
    merged, skipped = None, []
    for path in sorted(glob.glob(os.path.join(folder, "bench-*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            skipped.append(os.path.basename(path))
            continue
        if merged is None:
            merged = data
        else:
            merged["benchmarks"] += data["benchmarks"]
    return merged, skipped


def table(data, versions: str = "") -> str:
    rows = collections.defaultdict(dict)
    devices = set()
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        if "median_s" in info:
            rows[b["group"]][info["backend"]] = info
            devices.add(info.get("device", "?"))
    mi = data.get("machine_info", {})
    lines = [
        f"# deepwarp_fast benchmarks: {', '.join(sorted(devices)) or 'no timed rows'}",
        "",
        f"- date: {data.get('datetime', '')}; commit {data.get('commit_info', {}).get('id', '?')[:10]}"
        + (" (with uncommitted changes)" if data.get("commit_info", {}).get("dirty") else ""),
        f"- host: {mi.get('cpu', {}).get('brand_raw', '?')}, {mi.get('cpu', {}).get('count', '?')} cores, Python {mi.get('python_version', '?')}"
        + (f"; {versions}" if versions else ""),
        "- times in ms: median (p20 / p80); speed-up = reference median / backend median; GB/s from the bytes the op must move",
        "",
        "| group | backend | median ms | p20 ms | p80 ms | GB/s | speed-up vs reference | % of copy GB/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for group in sorted(rows):
        ref = rows[group].get("reference")
        copy = rows.get("copy " + group.rsplit(" ", 1)[-1], {}).get("torch")
        for backend, r in sorted(rows[group].items()):
            sp = f"{ref['median_s'] / r['median_s']:.2f}" if ref and backend != "reference" else ""
            pct = f"{100 * r['gbps'] / copy['gbps']:.0f}" if copy and r.get("gbps") and not group.startswith("copy") else ""
            gbps = f"{r['gbps']:.1f}" if r.get("gbps") else ""
            lines.append(
                f"| {group} | {backend} | {r['median_s'] * 1e3:.3f} | {r['p20_s'] * 1e3:.3f} | {r['p80_s'] * 1e3:.3f} | {gbps} | {sp} | {pct} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--versions", default="", help='e.g. "torch 2.11.0+cu130, triton 3.6.0"')
    args = ap.parse_args(argv)
    data, skipped = merge(args.folder)
    for name in skipped:
        print(f"summarize: left out {name} (empty or not JSON: that file skipped or was stopped)", file=sys.stderr)
    if data is None:
        print(f"summarize: no benchmark JSON in {args.folder}", file=sys.stderr)
        return 1
    with open(os.path.join(args.folder, "benchmarks.json"), "w") as f:
        json.dump(data, f, indent=1)
    text = table(data, args.versions)
    with open(os.path.join(args.folder, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
