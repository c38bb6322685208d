"""One photo through the CLI, start to written file: `deepwarp-fast redirect photo -o out`
as a user runs it, in a fresh process each time (issue 15: start-up <= 1.5 s, dominated by
reading the models rather than by imports).

Rows: ``--backend auto`` (for a photo on the CPU: the NumPy backend, no PyTorch import)
and ``--backend cuda`` (accelerate() on the extension's CPU ops, the former default),
interleaved, medians. Both outputs are compared first (one 8-bit level at most).

    python benchmarks/bench_startup.py [--reps 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

BACKENDS = ("auto", "cuda")


def _photo(folder: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    skdata = pytest.importorskip("skimage.data")
    p = folder / "astronaut.png"
    cv2.imwrite(str(p), np.ascontiguousarray(skdata.astronaut()[..., ::-1]))
    return p


def _run(photo: Path, out: Path, backend: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deepwarp_fast", "redirect", str(photo), "-o", str(out), "--vertical", "10",
                    "--backend", backend, "--force", "-q"], check=True, capture_output=True)
    return time.perf_counter() - t0


def measure(reps: int = 7) -> dict:
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = _photo(tmp)
        outs = {b: tmp / f"out_{b}.png" for b in BACKENDS}
        for b in BACKENDS:  # parity first (and a warm file cache)
            _run(photo, outs[b], b)
        a, c = (cv2.imread(str(outs[b])).astype(int) for b in BACKENDS)
        src = cv2.imread(str(photo)).astype(int)
        assert (a != src).any(-1).sum() > 200, "the eyes must move"
        assert np.abs(a - c).max() <= 1, "the NumPy and extension paths must agree"
        times = {b: [] for b in BACKENDS}
        for _ in range(reps):
            for b in BACKENDS:
                times[b].append(_run(photo, outs[b], b))
    return {b: statistics.median(v) for b, v in times.items()}


def test_one_photo_start_to_file():
    pytest.importorskip("dlib")
    res = measure(int(__import__("os").environ.get("DEEPWARP_BENCH_ROUNDS", "3")))
    print("\n" + "  ".join(f"--backend {b}: {s:.2f} s" for b, s in res.items()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    res = measure(ap.parse_args().reps)
    for b, s in res.items():
        print(f"--backend {b:5s} one photo, start to written file: {s:.2f} s (median)")
