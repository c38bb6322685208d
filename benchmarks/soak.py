"""Soak run (issue 13): a long 320x240 video with a face through the whole pipeline
(decode, detect/track, landmarks, crop, model, paste, encode), recording the process's
memory so that a leak shows as growth between the first and the last thousand frames.

    python benchmarks/soak.py --frames 10000 -o benchmarks/results/<date>-<machine>-soak

Writes soak.json (every sample: frame, RSS in MB, seconds) and summary.md. Not part of
`pytest benchmarks/`: it runs for minutes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def make_video(path: Path, frames: int, fps: float = 30.0) -> None:
    """The astronaut's face (87 px) in a 320x240 frame, drifting a few pixels like a
    talking head, with sensor noise so no two frames are equal."""
    import cv2
    import numpy as np
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[..., ::-1])
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for i in range(frames):
        dx = int(round(6 * np.sin(i / 40.0)))
        dy = int(round(4 * np.sin(i / 55.0)))
        frame = img[20 + dy:260 + dy, 140 + dx:460 + dx]
        noise = rng.integers(-3, 4, frame.shape, dtype=np.int16)
        w.write(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    w.release()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument("--every", type=int, default=50, help="sample memory every N frames")
    p.add_argument("-o", "--out", required=True, help="results folder (created)")
    args = p.parse_args(argv)

    import torch

    from deepwarp_fast.face import GazeRedirector
    from deepwarp_fast.face.video import redirect_video

    torch.set_num_threads(1)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deepwarp-soak-") as tmp:
        src, dst = Path(tmp) / "soak_in.avi", Path(tmp) / "soak_out.avi"
        t0 = time.perf_counter()
        make_video(src, args.frames)
        made_s = time.perf_counter() - t0
        gr = GazeRedirector(device="cpu")
        samples = []
        start = time.perf_counter()
        eyes = [0]

        def on_frame(i, res):
            if res is not None:
                eyes[0] += res.eyes_redirected
            if i % args.every == 0 or i == args.frames - 1:
                samples.append({"frame": i, "rss_mb": round(_status_mb("VmRSS"), 2),
                                "seconds": round(time.perf_counter() - start, 3)})

        summary = redirect_video(gr, src, dst, 8.0, 0.0, progress=False, on_frame=on_frame)
    peak = _status_mb("VmHWM")

    def mean_rss(lo, hi):
        vals = [s["rss_mb"] for s in samples if lo <= s["frame"] < hi]
        return sum(vals) / len(vals) if vals else float("nan")

    n = summary.frames
    first, last = mean_rss(0, 1000), mean_rss(n - 1000, n)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "frames_in": args.frames, "frames_out": n, "frames_dropped": summary.frames_dropped,
        "frames_without_face": summary.frames_without_face, "eyes_redirected": eyes[0],
        "seconds": round(summary.seconds, 1), "fps": round(summary.fps, 1),
        "rss_first_1000_mb": round(first, 1), "rss_last_1000_mb": round(last, 1),
        "growth_mb": round(last - first, 1), "peak_rss_mb": round(peak, 1),
        "load_average_at_end": os.getloadavg(), "video_made_in_s": round(made_s, 1),
        "samples": samples,
    }
    (out_dir / "soak.json").write_text(json.dumps(result, indent=1))
    (out_dir / "summary.md").write_text(
        f"# Soak run, {result['date']}\n\n"
        f"`python benchmarks/soak.py --frames {args.frames}`: a 320x240 MJPG video of a face (the astronaut, "
        f"87 px, drifting), through `redirect_video` (vertical 8 degrees, CPU, 1 torch thread).\n\n"
        f"| frames in / out | without a face | eyes redirected | fps | RSS first 1000 frames | RSS last 1000 frames | "
        f"growth | peak RSS |\n|---|---|---|---|---|---|---|---|\n"
        f"| {args.frames} / {n} | {summary.frames_without_face} | {eyes[0]} | {result['fps']} | {first:.1f} MB | "
        f"{last:.1f} MB | {last - first:+.1f} MB | {peak:.1f} MB |\n\n"
        f"Machine: {result['machine']}, shared with other jobs (load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}); Python {result['python']}, "
        f"torch {result['torch']}. Every sample (RSS every {args.every} frames): soak.json.\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
