"""Shared benchmark helpers: the device and its name, synchronised timing, quantiles, bandwidth,
and a summary (speed-up over the plain-PyTorch reference, GB/s) printed at the end of the run.

Every benchmark checks parity before it times anything, synchronises the GPU inside the
timed function, and records median / p20 / p80 (seconds), the bytes the op must move and
the GB/s that follows in pytest-benchmark's ``extra_info`` (so ``--benchmark-json`` keeps
them). Triton rows skip where Triton cannot run natively (no GPU: the interpreter's
timings mean nothing).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import importlib.util
import os
import platform
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCHES = (2, 64, 1024)
# B=1024 through the reference on a CPU takes minutes per op: opt in with DEEPWARP_BENCH_CPU_1024=1.
CPU_MAX_BATCH = 1024 if os.environ.get("DEEPWARP_BENCH_CPU_1024", "0") not in ("", "0") else 64
ROUNDS = int(os.environ.get("DEEPWARP_BENCH_ROUNDS", "50" if DEVICE == "cuda" else "5"))
WARMUP = 5 if DEVICE == "cuda" else 1

# (group, backend) -> {"median": s, "gbps": float | None}
RESULTS: Dict[str, Dict[str, dict]] = collections.defaultdict(dict)


@functools.lru_cache(maxsize=None)
def _load_kernel_testing():
    # tests/kernel_helpers.py (the kernel tests' parity helpers; it needs no Triton), loaded
    # by path so that benchmarks and tests build their random models the same way.
    path = Path(__file__).resolve().parent.parent / "tests" / "kernel_helpers.py"
    spec = importlib.util.spec_from_file_location("_deepwarp_kernel_testing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity_scale() -> float:
    """The perturbation of the model parity checks: tests/kernel_helpers.py ``PARITY_SCALE``."""
    return _load_kernel_testing().PARITY_SCALE


def perturbed_model(scale: float, seed: int = 0, device: str = DEVICE, config=None):
    """The reference DeepWarp with random weights (seeded init + ``scale`` x N(0, 1)), as the
    kernel tests build it: tests/kernel_helpers.py ``perturbed_model``."""
    return _load_kernel_testing().perturbed_model(config, scale=scale, seed=seed, device=device)


def eye_inputs(B: int, H: int = 41, W: int = 51, device: str = DEVICE):
    """(eyes (B, 3, H, W) in [0, 1], anchors (B, 7, 2) in pixels, angles (B, 2) in +-15 degrees),
    drawn from a generator seeded with B."""
    g = torch.Generator().manual_seed(B)
    eyes = torch.rand(B, 3, H, W, generator=g).to(device)
    anchors = (torch.rand(B, 7, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])).to(device)
    angles = ((torch.rand(B, 2, generator=g) - 0.5) * 30).to(device)
    return eyes, anchors, angles


@contextlib.contextmanager
def no_tf32():
    """TF32 off for cuDNN and matmuls (parity checks: both sides' convolutions round alike)."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def cpu_threads(n: int, device: str = DEVICE):
    """torch's intra-op threads set to ``n`` on a CPU run (restored after)."""
    saved = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def device_name(device: str = DEVICE) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def sync(device: str = DEVICE) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def skip_unless_backend(backend: str, device: str = DEVICE, B: int = 0) -> None:
    """Skip a row whose backend cannot run natively here (and Triton on CPU always)."""
    if device == "cpu" and B > CPU_MAX_BATCH:
        pytest.skip(f"B={B} on CPU is slow; set DEEPWARP_BENCH_CPU_1024=1 to run it")
    if backend == "reference":
        return
    if backend == "triton" and device != "cuda":
        pytest.skip("Triton rows need a GPU (the CPU interpreter is for tests, not timings)")
    from deepwarp_fast.backends import backend_status

    ok, why = backend_status(backend, device)
    if not ok:
        pytest.skip(f"backend {backend!r} unavailable: {why}")


def quantile(sorted_data, q: float) -> float:
    if not sorted_data:
        return float("nan")
    pos = q * (len(sorted_data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_data) - 1)
    return sorted_data[lo] + (sorted_data[hi] - sorted_data[lo]) * (pos - lo)


def tensor_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def run_timed(
    benchmark,
    fn: Callable[[], object],
    *,
    group: str,
    backend: str,
    bytes_moved: Optional[int] = None,
    rounds: Optional[int] = None,
    warmup: Optional[int] = None,
    extra: Optional[Callable[[float], dict]] = None,
) -> Optional[dict]:
    """Time ``fn`` (the GPU synchronised inside the timed function) and record the row.

    rounds / warmup default to ROUNDS / WARMUP; ``extra(median_s)`` adds fields to the row.
    Returns None when nothing was timed (``--benchmark-disable``: parity checked only).
    """

    def timed():
        fn()
        sync()

    benchmark.group = group
    benchmark.pedantic(timed, rounds=ROUNDS if rounds is None else rounds, iterations=1,
                       warmup_rounds=WARMUP if warmup is None else warmup)
    if benchmark.stats is None:
        return None
    data = sorted(benchmark.stats.stats.data)
    med = quantile(data, 0.5)
    row = {
        "device": device_name(),
        "backend": backend,
        "median_s": med,
        "p20_s": quantile(data, 0.2),
        "p80_s": quantile(data, 0.8),
        "bytes": bytes_moved,
        "gbps": (bytes_moved / med / 1e9) if bytes_moved else None,
    }
    if extra is not None:
        row.update(extra(med))
    benchmark.extra_info.update(row)
    RESULTS[group][backend] = row
    return row


def assert_parity(actual, expected, rtol: float, what: str) -> None:
    """The parity check a benchmark runs before timing: max abs error <= rtol * max(1, max |expected|)."""
    if isinstance(actual, (tuple, list)):
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_parity(a, e, rtol, f"{what}[{i}]")
        return
    err = (actual.double() - expected.double()).abs().max().item()
    bound = rtol * max(1.0, expected.double().abs().max().item())
    assert err <= bound, f"{what}: max abs error {err:.3g} > {bound:.3g}; not timing a wrong kernel"


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section(f"deepwarp_fast: speed-up over the reference on {device_name()}")
    tr.write_line(f"{'group':30s} {'reference ms':>13s} {'fast':>8s} {'fast ms':>10s} {'speed-up':>9s} {'GB/s':>8s} {'% of copy':>9s}")
    nan = float("nan")
    for group in sorted(RESULTS):
        rows = RESULTS[group]
        ref = rows.get("reference")
        fast = [(b, r) for b, r in rows.items() if b != "reference"] or [("-", None)]
        for backend, row in fast:
            shown = row or ref
            if shown is None:
                continue
            ratio = ref["median_s"] / row["median_s"] if ref and row else nan
            copy = RESULTS.get(_copy_group(group), {}).get("torch")
            pct = 100.0 * shown["gbps"] / copy["gbps"] if copy and shown.get("gbps") and copy is not shown else nan
            tr.write_line(
                f"{group:30s} {ref['median_s'] * 1e3 if ref else nan:13.3f} {backend:>8s} "
                f"{row['median_s'] * 1e3 if row else nan:10.3f} {ratio:9.2f} {shown['gbps'] or nan:8.1f} {pct:9.1f}"
            )


def _copy_group(group: str) -> str:
    # "warp fwd B=1024" -> "copy B=1024": the copy bandwidth of the same run and batch.
    return "copy " + group.rsplit(" ", 1)[-1]


def make_face_clip(path, frames: int) -> None:
    """A 1280x720 face video, mp4v at 30 fps: scikit-image's astronaut (a real face, public
    domain) scaled to 720 px high on a grey canvas, panning, with sensor noise (the clip of
    bench_pipeline.py and bench_video.py)."""
    import cv2
    import numpy as np
    from skimage import data as skdata

    face = cv2.resize(np.ascontiguousarray(skdata.astronaut()[..., ::-1]), (720, 720), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1280, 720))
    for i in range(frames):
        f = np.full((720, 1280, 3), 90, np.uint8)
        x = 280 + int(round(120 * np.sin(i / 20)))
        f[:, x:x + 720] = face
        w.write(np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8))
    w.release()
