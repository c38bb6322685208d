"""720p video end to end, as the CLI runs it (`deepwarp-fast redirect clip.mp4 -o out.mp4`):
frames per second for `.mp4` (mp4v) and `.mkv` (HuffYUV, lossless), and the same with the
face detector's op-by-op graph (``BlazeFace.forward_reference``, what detection ran before
2026-12-05) in place of its fast forward, interleaved so that a change in the machine's load
hits every row alike.

The clip: scikit-image's astronaut (a real face, public domain) scaled to 720 px high on a
1280x720 canvas, panning, with sensor noise, 150 frames (the one benchmarks/bench_pipeline.py
makes). The model is the shipped one through ``accelerate()`` on the CPU with one torch and
one OpenCV thread, decode and encode in their own threads: the CLI's defaults. Every run must
redirect both eyes of the face in every frame.

    python benchmarks/bench_video.py [--reps 3] [--frames 150]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="interleaved runs per row (default 3)")
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args(argv)

    import cv2
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import make_face_clip
    from deepwarp_fast.face import GazeRedirector
    from deepwarp_fast.face.blazeface import BlazeFace
    from deepwarp_fast.face.video import redirect_video

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    folder = tempfile.mkdtemp(prefix="deepwarp_video_")
    clip = os.path.join(folder, "clip720.mp4")
    make_face_clip(clip, args.frames)
    gr = GazeRedirector(None, device="cpu")  # the CLI's default model: accelerate() on the CPU
    fast = BlazeFace.forward
    rows = {}
    for rep in range(args.reps):
        for ext in (".mp4", ".mkv"):
            for detector in ("fast", "op by op"):
                BlazeFace.forward = fast if detector == "fast" else BlazeFace.forward_reference
                try:
                    s = redirect_video(gr, clip, os.path.join(folder, "out" + ext), 10, 0, progress=False)
                finally:
                    BlazeFace.forward = fast
                assert s.frames == args.frames and s.eyes_redirected == 2 * args.frames, s.format()
                rows.setdefault((ext, detector), []).append(s.fps)
    print(f"1280x720, {args.frames} frames, {args.reps} interleaved runs per row, "
          f"{time.strftime('%Y-%m-%d')}, load {os.getloadavg()[0]:.2f}, torch {torch.__version__}")
    print("| output | face detector | fps (median) | runs |")
    print("|---|---|---:|---|")
    for (ext, detector), v in rows.items():
        print(f"| {ext} | {detector} | {statistics.median(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
