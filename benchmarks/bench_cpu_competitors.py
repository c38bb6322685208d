"""The CPU side by side: accelerate() against what a user deploying on a CPU would try first.

Rows, all fp32, the shipped weights, in one process:
- ``reference``: the eager DeepWarp (BatchNorm unfolded);
- ``accelerated``: deepwarp_fast.accelerate (the extension's CPU ops);
- ``torch.compile``: inductor with freezing, of the BN-folded reference (built once per batch size);
- ``onnxruntime``: the file from deepwarp_fast.export_onnx in ONNX Runtime (CPU provider);
- ``openvino``: the same file compiled by OpenVINO for the CPU (fp32 inference precision).
Optional rows skip with the reason when their package is missing (``pip install .[onnx]``,
``pip install openvino``). Every row's output is checked against the reference first (max
abs error <= 1e-4 on [0, 1] images). Then the rows are timed in interleaved *blocks*: each
round runs every row in turn, a block of calls each, so that a change in the machine's load
hits every row alike; the calls of a block's first ``SETTLE_S`` (and its first call) are
not counted. Each runtime keeps its own worker threads, which spin for a while after a call
(ONNX Runtime's for ~20 ms): timed call by call in alternation, every call of every row
paid for the previous row's spinning threads and cold caches (OpenVINO 4.1 ms per call
instead of 2.0 at B=2; measured 2026-12-05), which is not how any of them is deployed. ``x
best`` is each row's median over the fastest row's.

Batches: B=2 (one face: latency), 64 and 256 eyes (throughput); threads 1 and 2. Run
``pytest benchmarks/bench_cpu_competitors.py -s`` or ``python benchmarks/bench_cpu_competitors.py``
(prints the table). torch.compile takes about a minute per batch size to build on 2 cores.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import DEVICE, RESULTS, device_name, eye_inputs  # noqa: E402

BATCHES = (2, 64, 256)
THREADS = (1, 2)
ROUNDS = {2: 8, 64: 5, 256: 4}  # blocks per row
BLOCK = {2: 30, 64: 4, 256: 2}  # timed calls per block
SETTLE_S = 0.04  # not counted at the start of a block: the previous row's threads still spin
TOL = 1e-4
_state: dict = {}


def _model():
    if "model" not in _state:
        from deepwarp_fast import load_model

        _state["model"] = load_model().eval()
    return _state["model"]


def _onnx_path() -> str:
    if "onnx" not in _state:
        from deepwarp_fast import export_onnx

        folder = tempfile.mkdtemp(prefix="deepwarp_bench_")
        _state["onnx"] = export_onnx(_model(), os.path.join(folder, "deepwarp.onnx"), check=False)
    return _state["onnx"]


def runners(B: int, threads: int) -> Tuple[Dict[str, Callable], Dict[str, str]]:
    """({row: fn(eyes, anchors, angles) -> (B, 3, H, W) tensor}, {row: why skipped})."""
    model = _model()
    rows: Dict[str, Callable] = {"reference": lambda e, a, g: model(e, a, g, validate=False)}
    skipped: Dict[str, str] = {}
    from deepwarp_fast import accelerate
    from deepwarp_fast.backends import backend_status

    ok, why = backend_status("cuda", "cpu")
    if ok:
        acc = _state.setdefault("acc", accelerate(model).eval())
        rows["accelerated"] = lambda e, a, g: acc(e, a, g, validate=False)
    else:
        skipped["accelerated"] = f"the extension is not built: {why}"

    key = ("compile", B)
    if key not in _state:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        _state[key] = torch.compile(model.fuse_bn(), dynamic=False)
    compiled = _state[key]
    rows["torch.compile"] = lambda e, a, g: compiled(e, a, g, validate=False)

    have_onnx = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
    if not have_onnx:
        skipped["onnxruntime"] = skipped["openvino"] = "needs onnx and onnxscript for the export: pip install .[onnx]"
        return rows, skipped
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(_onnx_path(), opts, providers=["CPUExecutionProvider"])
        rows["onnxruntime"] = lambda e, a, g: torch.from_numpy(
            sess.run(None, {"eyes": e.numpy(), "anchors": a.numpy(), "angles": g.numpy()})[0])
    else:
        skipped["onnxruntime"] = "onnxruntime is not installed: pip install .[onnx]"
    if importlib.util.find_spec("openvino") is not None:
        import openvino as ov

        core = ov.Core()
        net = core.read_model(_onnx_path())
        cfg = model.config
        net.reshape({"eyes": [B, 3, cfg.height, cfg.width], "anchors": [B, cfg.num_anchors, 2], "angles": [B, 2]})
        compiled_ov = core.compile_model(net, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                                                      "PERFORMANCE_HINT": "LATENCY"})
        request = compiled_ov.create_infer_request()

        def run_ov(e, a, g):
            request.infer({"eyes": e.numpy(), "anchors": a.numpy(), "angles": g.numpy()})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())

        rows["openvino"] = run_ov
    else:
        skipped["openvino"] = "openvino is not installed: pip install openvino"
    return rows, skipped


def timed_block(fn: Callable, inputs, n: int, settle_s: float = SETTLE_S) -> List[float]:
    """Seconds per call of ``n`` calls of ``fn``, after the calls of the block's first
    ``settle_s`` seconds (at least one), which are not returned."""
    start = time.perf_counter()
    fn(*inputs)
    while time.perf_counter() - start < settle_s:
        fn(*inputs)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(*inputs)
        out.append(time.perf_counter() - t0)
    return out


def measure(B: int, threads: int, rounds: int = 0) -> Tuple[List[dict], Dict[str, str]]:
    """Parity, then timing in interleaved blocks (see the module docstring): [{row, median_s, p20_s, p80_s, eyes_per_s, x_best}]."""
    rounds = rounds or ROUNDS[B]
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            fns, skipped = runners(B, threads)
            inputs = eye_inputs(B, device="cpu")
            expected = fns["reference"](*inputs)
            for name, fn in fns.items():
                for _ in range(2):  # builds (torch.compile), first-call allocations
                    got = fn(*inputs)
                err = float((got.double() - expected.double()).abs().max())
                assert err <= TOL, f"{name} B={B}: max abs error {err:.3g} against the reference > {TOL:g}"
            times: Dict[str, List[float]] = {n: [] for n in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    times[name] += timed_block(fn, inputs, BLOCK.get(B, 4))
    finally:
        torch.set_num_threads(saved)
    rows = []
    for name, ts in times.items():
        ts = sorted(ts)
        q = statistics.quantiles(ts, n=5) if len(ts) >= 5 else [ts[0]] * 4
        rows.append({"row": name, "median_s": statistics.median(ts), "p20_s": q[0], "p80_s": q[3]})
    best = min(r["median_s"] for r in rows)
    for r in rows:
        r["eyes_per_s"] = B / r["median_s"]
        r["x_best"] = r["median_s"] / best
    return sorted(rows, key=lambda r: r["median_s"]), skipped


def format_rows(B: int, threads: int, rows: List[dict], skipped: Dict[str, str]) -> str:
    lines = [f"B={B}, {threads} thread(s), {device_name('cpu')}, load {os.getloadavg()[0]:.2f}:",
             "| row | median ms | p20 / p80 ms | eyes/s | x best |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['median_s'] * 1e3:.2f} | {r['p20_s'] * 1e3:.2f} / {r['p80_s'] * 1e3:.2f} | "
                     f"{r['eyes_per_s']:,.0f} | {r['x_best']:.2f} |")
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | |")
    return "\n".join(lines)


@pytest.mark.skipif(DEVICE != "cpu", reason="the CPU comparison runs on machines without a GPU")
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("B", BATCHES)
def test_cpu_side_by_side(benchmark, B, threads):
    if benchmark.disabled:
        rows, skipped = measure(B, threads, rounds=1)  # parity only
        return
    rows, skipped = measure(B, threads)
    group = f"cpu side by side B={B} threads={threads}"
    for r in rows:
        RESULTS[group][r["row"]] = {"device": device_name("cpu"), "backend": r["row"], "median_s": r["median_s"],
                                    "p20_s": r["p20_s"], "p80_s": r["p80_s"], "gbps": None}
    benchmark.group = group
    benchmark.extra_info.update({"rows": rows, "skipped": skipped, "threads": threads, "B": B})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the table is in extra_info
    print("\n" + format_rows(B, threads, rows, skipped))


if __name__ == "__main__":
    for B in BATCHES:
        for n in THREADS:
            print(format_rows(B, n, *measure(B, n)) + "\n", flush=True)
