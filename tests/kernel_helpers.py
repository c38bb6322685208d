"""Parity helpers for the kernel tests and benchmarks (which load this file by path):
devices, tolerances, measured fp16 bounds.

Tolerances live in one table keyed by dtype. For float32 the kernels must match the
reference to ``TOL[torch.float32]`` times the magnitude of the result; for float16 the
bound is measured, not guessed: against a float64 oracle run on the same (rounded)
inputs, the kernel's error must be at most twice the error of the reference run in
float16 itself.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from deepwarp_fast.backends import triton_interpreter_enabled

# Relative to max(1, max |expected|).
TOL: Dict[torch.dtype, float] = {torch.float32: 1e-5}


def perturbed_model(config=None, scale: float = 0.15, seed: int = 0, device="cpu"):
    """A reference DeepWarp with random weights: the seeded default initialisation plus
    ``scale`` x N(0, 1) on every parameter (drawn from the global generator, seeded here).

    The heads start at zero (identity warp, LCM off); the perturbation gives flows of
    several pixels and a varying LCM mask, as after training, so that parity checks and
    timings exercise the real paths. Shared by tests/test_kernels_model.py and benchmarks/
    (which load this file directly: it needs no Triton).
    """
    from deepwarp_fast.model import DeepWarp

    torch.manual_seed(seed)
    model = DeepWarp(config, backend="reference")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * scale)
    return model.to(device)


# The perturbation scale of the model parity checks (tests/test_kernels_model.py,
# benchmarks/bench_model.py). A model is only a fair judge of a kernel's float32 error if it
# does not amplify rounding: at scale 0.15 the flows saturate (~50 px) and one float32 ulp
# of input noise moves the output by ~2e-3 (measured on the CPU), so a GPU run, whose
# kernels round differently from the reference's, fails a 1e-5 check without any kernel
# being wrong. At 0.03 flows still reach several pixels and the same noise moves the output
# by ~5e-6; ``sensitivity`` measures it on every run.
PARITY_SCALE = 0.03


def sensitivity(fn, inputs, index: int = 0, trials: int = 3, seed: int = 0) -> float:
    """How far ``fn(*inputs)`` moves when ``inputs[index]`` gets float32-rounding noise
    (relative N(0, 2^-23)): the max abs change over ``trials`` draws. A parity bound below
    this would compare rounding, not kernels."""
    base = fn(*inputs)
    g = torch.Generator(device=inputs[index].device).manual_seed(seed)
    worst = 0.0
    for _ in range(trials):
        x = inputs[index]
        noisy = x * (1 + torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype) * 2.0**-23)
        moved = fn(*[noisy if i == index else t for i, t in enumerate(inputs)])
        worst = max(worst, max_err(moved, base))
    return worst


def triton_kernels():
    """(the deepwarp_fast.kernels module or None, the devices it runs on here, a skip mark
    for tests that need it): an op's test module runs its reference tests everywhere and
    its kernel tests where Triton runs."""
    import pytest

    try:
        from deepwarp_fast import kernels
    except ImportError:  # no Triton
        kernels = None
    devices = kernel_devices() if kernels is not None else []
    mark = pytest.mark.skipif(not devices, reason="no device runs Triton here (no GPU, TRITON_INTERPRET unset)")
    return kernels, devices, mark


def kernel_devices() -> List[str]:
    """Devices the Triton kernels run on here: CPU through the interpreter, CUDA natively."""
    devices = []
    if triton_interpreter_enabled():
        devices.append("cpu")
    elif torch.cuda.is_available():
        devices.append("cuda")
    return devices


def max_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.double() - expected.double()).abs().max().item()


def assert_close_fp32(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = max(1.0, expected.double().abs().max().item())
    err = max_err(actual, expected)
    assert err <= TOL[torch.float32] * scale, f"{what}: max abs error {err:.3g} > {TOL[torch.float32]:g} x {scale:.3g}"


def assert_measured_lowp(actual: torch.Tensor, reference_lowp: torch.Tensor, oracle: torch.Tensor, what: str = "") -> None:
    """err(kernel, oracle) <= 2 * err(reference in the same low precision, oracle)."""
    assert actual.dtype == reference_lowp.dtype, f"{what}: dtype {actual.dtype} != {reference_lowp.dtype}"
    err_k = max_err(actual, oracle)
    err_r = max_err(reference_lowp, oracle)
    assert err_k <= 2 * err_r, f"{what}: kernel error {err_k:.3g} > 2 x reference {actual.dtype} error {err_r:.3g}"


def check_parity(kernel_fn, reference_fn, inputs, grad_mask, dtype, gen, device="cpu", layout=None, what=""):
    """Run ``kernel_fn`` and ``reference_fn`` on the same inputs; compare the output and the
    gradient of every input flagged in ``grad_mask`` (for a seeded random grad_out).

    inputs: float tensors (any dtype; cast to ``dtype`` first, so all runs see the same
    rounded values). ``layout(i, t)`` may return a non-contiguous view with t's values
    for the kernel's i-th input. float32: compared with ``assert_close_fp32``; lower
    precisions: with ``assert_measured_lowp`` against a float64 oracle.
    """
    base = [t.to(dtype=dtype, device=device) for t in inputs]

    def run(fn, ts, grad_out=None):
        leafs = [t for t in ts]
        out = fn(*leafs)
        if grad_out is None:
            grad_out = (torch.rand(out.shape, generator=gen, dtype=torch.float64) * 2 - 1).to(device=device)
        wanted = [t for t, g in zip(leafs, grad_mask) if g]
        grads = torch.autograd.grad(out, wanted, grad_out.to(out.dtype)) if wanted else ()
        return out, grads, grad_out

    k_in = []
    for i, (t, g) in enumerate(zip(base, grad_mask)):
        leaf = t.clone().requires_grad_(g) if layout is None else _layout_leaf(layout, i, t, g)
        k_in.append(leaf)
    out_k, grads_k, grad_out = run(kernel_fn, k_in)
    r_in = [t.clone().requires_grad_(g) for t, g in zip(base, grad_mask)]
    out_r, grads_r, _ = run(reference_fn, r_in, grad_out)
    names = ["output"] + [f"grad[{i}]" for i, g in enumerate(grad_mask) if g]
    if dtype == torch.float32:
        for name, a, e in zip(names, (out_k,) + tuple(grads_k), (out_r,) + tuple(grads_r)):
            assert_close_fp32(a, e, f"{what} {name}")
        return
    o_in = [t.double().requires_grad_(g) for t, g in zip(base, grad_mask)]
    out_o, grads_o, _ = run(reference_fn, o_in, grad_out)
    for name, a, r, o in zip(names, (out_k,) + tuple(grads_k), (out_r,) + tuple(grads_r), (out_o,) + tuple(grads_o)):
        assert_measured_lowp(a, r, o, f"{what} {name} ({dtype})")


def _layout_leaf(layout, i, t, requires_grad):
    # The leaf is the (possibly strided) tensor the kernel reads; gradients flow to it.
    view = layout(i, t)
    assert torch.equal(view, t)
    return view.detach().requires_grad_(requires_grad)


def strided_like(i: int, t: torch.Tensor) -> torch.Tensor:
    """A non-contiguous tensor equal to ``t``: channels-last storage for 4-d tensors, every
    other element of a wider buffer for 3-d ones, transposed storage for 2-d ones."""
    if t.dim() == 4:
        v = t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    elif t.dim() == 3:
        buf = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        buf[..., ::2] = t
        v = buf[..., ::2]
    else:
        v = t.t().contiguous().t()
    assert not v.is_contiguous() or t.numel() <= 1 or min(t.shape) == 1
    return v
