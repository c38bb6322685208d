"""The accelerated model (deepwarp_fast.accelerate) against the eager reference and torch.compile.

Rows per batch (B=2: one face, latency; B=256 and 1024 eyes: throughput), inference:
- ``reference``: the eager DeepWarp (BatchNorm unfolded), the ratio's denominator;
- ``folded_cl`` (CPU): the reference with BN folded and channels_last, the best plain PyTorch;
- ``compile`` / ``compile_cudagraphs`` (GPU): torch.compile of the reference, default mode
  and mode="reduce-overhead" (CUDA graphs);
- ``accelerated`` / ``accelerated_graphs``: accelerate(model), without and with
  cuda_graphs=True (GPU).
Each row checks parity with the reference first, and every row is timed with TF32 off (float32
arithmetic throughout, as the extension computes). CPU rows run on 2 threads (the
target: one face <= 5 ms and >= 1.5x the eager reference). Run:
``pytest benchmarks/bench_accelerated.py`` (``DEEPWARP_BENCH_CPU_1024=1`` adds the big CPU batches).
"""
from __future__ import annotations

import pytest
import torch

from conftest import (
    CPU_MAX_BATCH,
    DEVICE,
    RESULTS,
    assert_parity,
    cpu_threads,
    eye_inputs,
    no_tf32,
    perturbed_model,
    run_timed,
    skip_unless_backend,
    tensor_bytes,
)
from deepwarp_fast import accelerate
from deepwarp_fast.backends import backend_status

BATCHES = (2, 256, 1024)
CPU_THREADS = 2
BACKENDS = ["reference", "folded_cl", "compile", "compile_cudagraphs", "accelerated", "accelerated_graphs"]
_cache: dict = {}


def _reference():
    if "ref" not in _cache:
        # Nonzero heads: flows of up to ~27 pixels, as after training. (Larger random
        # weights make float32 itself ill-conditioned: two correct fp32 orders of
        # summation then differ by more than the 1e-4 parity bound.)
        _cache["ref"] = perturbed_model(scale=0.05).eval()
    return _cache["ref"]


def _runner(backend):
    """A callable (eyes, anchors, angles) -> output for ``backend``, built once."""
    if backend in _cache:
        return _cache[backend]
    ref = _reference()
    if backend == "reference":
        fn = lambda e, a, g: ref(e, a, g)  # noqa: E731
    elif backend == "folded_cl":
        folded = ref.fuse_bn().to(memory_format=torch.channels_last)
        fn = lambda e, a, g: folded(e.contiguous(memory_format=torch.channels_last), a, g, validate=False)  # noqa: E731
    elif backend in ("compile", "compile_cudagraphs"):
        mode = "reduce-overhead" if backend == "compile_cudagraphs" else None
        compiled = torch.compile(ref, mode=mode)
        fn = lambda e, a, g: compiled(e, a, g, validate=False)  # noqa: E731
    elif backend == "accelerated":
        acc = accelerate(ref)
        fn = lambda e, a, g: acc(e, a, g)  # noqa: E731
    elif backend == "accelerated_graphs":
        acc = accelerate(ref, cuda_graphs=True)
        fn = lambda e, a, g: acc(e, a, g)  # noqa: E731
    else:
        raise ValueError(backend)
    _cache[backend] = fn
    return fn


def _skip_unless_runs(backend, B):
    if DEVICE == "cpu":
        if B > CPU_MAX_BATCH:
            pytest.skip(f"B={B} on CPU is slow; set DEEPWARP_BENCH_CPU_1024=1 to run it")
        if backend in ("compile", "compile_cudagraphs", "accelerated_graphs"):
            pytest.skip(f"{backend} is a GPU row (torch.compile takes minutes to build on 2 CPU cores)")
    elif backend == "folded_cl":
        pytest.skip("folded_cl is a CPU row")
    if backend.startswith("accelerated") and not backend_status("cuda", DEVICE)[0]:
        pytest.skip(f"the extension is unavailable on {DEVICE} ({backend_status('cuda', DEVICE)[1]}); "
                    "the accelerated model would time its PyTorch fallback")


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_accelerated_model(benchmark, backend, B):
    _skip_unless_runs(backend, B)
    inputs = eye_inputs(B)
    fn = _runner(backend)
    with torch.inference_mode(), cpu_threads(CPU_THREADS):
        if backend != "reference":
            with no_tf32():
                expected = _runner("reference")(*inputs)
                got = fn(*inputs)
                if backend.startswith("compile"):
                    got = fn(*inputs)  # the CUDA-graph mode records on its second call
            # fp32 target: max abs error <= 1e-4 on [0, 1] images.
            assert_parity(got, expected, rtol=1e-4, what=f"{backend} B={B}")

        rounds = 100 if B == 2 else (20 if DEVICE == "cuda" else 3)
        group = f"accelerated model B={B}" + (f" ({CPU_THREADS} CPU threads)" if DEVICE == "cpu" else "")
        with no_tf32():  # every row in float32 arithmetic (cuDNN's TF32 default would favour the PyTorch rows)
            row = run_timed(
                benchmark, lambda: fn(*inputs), group=group, backend=backend, rounds=rounds, warmup=10 if B == 2 else 2,
                extra=lambda med: {"eyes_per_s": B / med, "threads": torch.get_num_threads() if DEVICE == "cpu" else None},
            )
    if row is None:
        return
    med = row["median_s"]
    ref = RESULTS[group].get("reference")
    if ref and backend != "reference":
        print(f"\n{group} {backend}: {med * 1e3:.3f} ms ({B / med:,.0f} eyes/s), {ref['median_s'] / med:.2f}x the eager reference")


# One conv + folded BN + ReLU layer of the accelerated model: the extension's kernel
# (direct convolution, fused epilogue) against cuDNN / oneDNN (F.conv2d, then ReLU). The
# measurement that decides which algorithm the layer should use.
LAYERS = {
    "coarse0 3->16 5x5 20x25": (3, 16, 5, 20, 25),
    "coarse1 16->32 3x3 20x25": (16, 32, 3, 20, 25),
    "coarse2 32->32 3x3 20x25": (32, 32, 3, 20, 25),
    "fine0 8->16 5x5 41x51": (8, 16, 5, 41, 51),
    "fine1 16->32 3x3 41x51": (16, 32, 3, 41, 51),
    "fine2 32->32 3x3 41x51": (32, 32, 3, 41, 51),
}


@pytest.mark.parametrize("B", (2, 1024))
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("backend", ["reference", "reference_tf32", "cuda"])
def test_conv_layer(benchmark, backend, layer, B):
    """``reference``: cuDNN / oneDNN in float32 (TF32 off: the arithmetic the extension's
    kernel does); ``reference_tf32`` (GPU): cuDNN allowed TF32 tensor cores, PyTorch's default
    for convolutions, whose error the parity bounds do not allow."""
    import contextlib

    from deepwarp_fast.fused import conv_bias_relu, conv_bias_relu_reference

    if backend == "reference_tf32" and DEVICE != "cuda":
        pytest.skip("TF32 is a GPU mode")
    skip_unless_backend("reference" if backend == "reference_tf32" else backend, B=B)
    cin, cout, k, h, w = LAYERS[layer]
    g = torch.Generator().manual_seed(k)
    x = torch.rand(B, cin, h, w, generator=g).to(DEVICE)
    weight = ((torch.rand(cout, cin, k, k, generator=g) - 0.5) * 0.3).to(DEVICE)
    bias = (torch.rand(cout, generator=g) - 0.5).to(DEVICE)
    with torch.inference_mode(), cpu_threads(CPU_THREADS):
        fn = (lambda: conv_bias_relu(x, weight, bias, None, True)) if backend == "cuda" else (lambda: conv_bias_relu_reference(x, weight, bias))
        if backend == "cuda":
            with no_tf32():
                assert_parity(fn(), conv_bias_relu_reference(x, weight, bias), rtol=1e-5, what=f"conv {layer} B={B}")
        out_bytes = B * cout * h * w * 4
        with (contextlib.nullcontext() if backend == "reference_tf32" else no_tf32()):
            run_timed(benchmark, fn, group=f"conv layer {layer} B={B}", backend=backend,
                      bytes_moved=tensor_bytes(x, weight, bias) + out_bytes)
