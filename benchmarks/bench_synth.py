"""Throughput of the procedural eye-pair renderer (deepwarp_fast.data.render_pairs), pairs/s.

Rows:
- ``cpu_1thread``: one process, one intra-op thread (the unit a DataLoader worker runs);
- ``cpu_2threads``: one process, two intra-op threads;
- ``cpu_2workers``: a DataLoader with two worker processes of one thread each rendering
  SyntheticPairs batches: how training feeds itself on 2 CPU cores (target >= 2000 pairs/s);
- ``cuda`` (GPU only): render_pairs(device="cuda").
Each row first checks the contract (shapes, value range) and determinism (same seed, same
pixels); the ratio printed is against ``cpu_1thread`` measured in the same run (there is
no slower "reference" renderer). Run: ``pytest benchmarks/bench_synth.py -s``.
"""
from __future__ import annotations

import time

import pytest
import torch

from conftest import device_name
from deepwarp_fast.data import SyntheticPairs, render_pairs

N = 1024          # pairs per timed call (1 and 2 threads)
BATCH = 256       # SyntheticPairs batch for the DataLoader row
RESULTS = {}


def _check(batch, n):
    assert batch["input"].shape == (n, 3, 41, 51) and batch["anchors"].shape == (n, 7, 2)
    assert float(batch["input"].min()) >= 0.0 and float(batch["input"].max()) <= 1.0


def _parity(device="cpu"):
    a = render_pairs(64, 99, device=device)
    b = render_pairs(64, 99, device=device)
    _check(a, 64)
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])


def _report():
    base = RESULTS.get("cpu_1thread")
    print("\nrender_pairs throughput (41x51, supersample 2, camera effects on):")
    for k, v in RESULTS.items():
        ratio = f"  {v / base:.2f}x cpu_1thread" if base else ""
        print(f"  {k:14s} {v:8.0f} pairs/s{ratio}")


def _time_calls(fn, rounds):
    best = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    best.sort()
    return best[len(best) // 2]


@pytest.mark.parametrize("threads", [1, 2])
def test_render_cpu(benchmark, threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _parity()
        render_pairs(N, 0)  # warm-up
        benchmark.group = "synth"
        benchmark.pedantic(lambda: render_pairs(N, 1), rounds=3, iterations=1, warmup_rounds=0)
        med = benchmark.stats.stats.median
        RESULTS[f"cpu_{threads}thread{'s' if threads > 1 else ''}"] = N / med
        benchmark.extra_info["pairs_per_s"] = N / med
        benchmark.extra_info["device"] = device_name("cpu")
    finally:
        torch.set_num_threads(old)
    _report()


def _one_thread(_):
    torch.set_num_threads(1)


def test_render_dataloader_2workers(benchmark):
    _parity()
    ds = SyntheticPairs(seed=0, batch_size=BATCH)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, worker_init_fn=_one_thread,
                                         prefetch_factor=2, persistent_workers=True)
    it = iter(loader)
    for _ in range(4):  # start-up and warm-up
        _check(next(it), BATCH)
    nb = 16

    def consume():
        for _ in range(nb):
            next(it)

    benchmark.group = "synth"
    benchmark.pedantic(consume, rounds=3, iterations=1, warmup_rounds=0)
    rate = nb * BATCH / benchmark.stats.stats.median
    RESULTS["cpu_2workers"] = rate
    benchmark.extra_info["pairs_per_s"] = rate
    benchmark.extra_info["device"] = device_name("cpu")
    del it, loader
    _report()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_render_cuda(benchmark):
    _parity("cuda")
    n = 8192
    render_pairs(n, 0, device="cuda", chunk=2048)
    torch.cuda.synchronize()

    def run():
        render_pairs(n, 1, device="cuda", chunk=2048)
        torch.cuda.synchronize()

    benchmark.group = "synth"
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    rate = n / benchmark.stats.stats.median
    RESULTS["cuda"] = rate
    benchmark.extra_info["pairs_per_s"] = rate
    benchmark.extra_info["device"] = device_name("cuda")
    _report()
