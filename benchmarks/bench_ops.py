"""Per-op benchmarks: the plain-PyTorch reference vs the Triton kernels at B = 2, 64, 1024 eyes.

Each (op, B) is checked for parity before either backend is timed; GB/s come from the
bytes the op must move (every input read once, every output written once); the end of
the run prints the speed-up and, for the warps, the share of the copy bandwidth measured
in the same run (group "copy B=..."). Run: ``pytest benchmarks/bench_ops.py``.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from conftest import BATCHES, DEVICE, assert_parity, run_timed, skip_unless_backend, tensor_bytes
from deepwarp_fast import ops

H, W, C, K, D = 41, 51, 3, 7, 16
h, w = H // 2, W // 2


@functools.lru_cache(maxsize=None)
def _inputs(B: int):
    g = torch.Generator().manual_seed(B)

    def r(*shape, lo=0.0, hi=1.0):
        return (torch.rand(*shape, generator=g) * (hi - lo) + lo).to(DEVICE)

    return {
        "image": r(B, C, H, W),
        "flow": r(B, 2, H, W, lo=-6, hi=6),
        "flow_c": r(B, 2, h, w, lo=-0.3, hi=0.3),
        "flow_r": r(B, 2, H, W, lo=-0.2, hi=0.2),
        "anchors": r(B, K, 2) * torch.tensor([W - 1.0, H - 1.0], device=DEVICE),
        "embedding": r(B, D, hi=3.0),
        "logits": r(B, 2, H, W, lo=-5, hi=5),
        "grad_out": r(B, C, H, W, lo=-1, hi=1),
    }


_ref_warp_normalized = ops.warp_normalized_reference
_ref_fine_inputs = ops.fine_inputs_reference


def _fwd_bwd(fn, args, grad_idx, grad_out):
    args = [a.detach().requires_grad_(i in grad_idx) for i, a in enumerate(args)]
    out = fn(*args)
    return torch.autograd.grad(out, [args[i] for i in grad_idx], grad_out)


def _case(op: str, B: int):
    """(reference fn, triton fn, bytes moved) for one op at batch B; fns take no arguments."""
    from deepwarp_fast import kernels  # imported lazily: on CPU it needs TRITON_INTERPRET

    t = _inputs(B)
    image, flow, flow_c, flow_r = t["image"], t["flow"], t["flow_c"], t["flow_r"]
    anchors, emb, logits, go = t["anchors"], t["embedding"], t["logits"], t["grad_out"]
    stack = torch.empty(B, C + 2 * K + D, H, W, device=DEVICE)
    if op == "warp fwd":
        return (lambda: ops.warp_reference(image, flow), lambda: kernels.warp(image, flow), tensor_bytes(image, flow, image))
    if op == "warp fwd+bwd":
        nbytes = tensor_bytes(image, flow, image) + tensor_bytes(go, image, flow, flow)
        return (
            lambda: _fwd_bwd(ops.warp_reference, [image, flow], [1], go),
            lambda: _fwd_bwd(kernels.warp, [image, flow], [1], go),
            nbytes,
        )
    if op == "fine warp fwd":  # warp(image, pixels(up(F_c) + F_r)) as the model runs it
        return (
            lambda: _ref_warp_normalized(image, flow_c, flow_r),
            lambda: kernels.warp_normalized(image, flow_c, flow_r),
            tensor_bytes(image, flow_c, flow_r, image),
        )
    if op == "fine warp fwd+bwd":
        nbytes = tensor_bytes(image, flow_c, flow_r, image) + tensor_bytes(go, image, flow_c, flow_r, flow_c, flow_r)
        return (
            lambda: _fwd_bwd(_ref_warp_normalized, [image, flow_c, flow_r], [1, 2], go),
            lambda: _fwd_bwd(kernels.warp_normalized, [image, flow_c, flow_r], [1, 2], go),
            nbytes,
        )
    if op == "input maps fwd":
        return (
            lambda: ops.input_maps_reference(image, anchors, emb),
            lambda: kernels.input_maps(image, anchors, emb),
            tensor_bytes(image, anchors, emb, stack),
        )
    if op == "pooled input maps fwd":  # the coarse tower's input: avg_pool2d(stack, 2)
        return (
            lambda: F.avg_pool2d(ops.input_maps_reference(image, anchors, emb), 2),
            lambda: kernels.input_maps(image, anchors, emb, pool=2),
            tensor_bytes(image, anchors, emb) + B * (C + 2 * K + D) * h * w * 4,
        )
    if op == "fine inputs fwd":  # cat(stack, O_c, U_c): the fine tower's 38-map input
        return (
            lambda: _ref_fine_inputs(image, anchors, emb, flow_c),
            lambda: kernels.fine_inputs(image, anchors, emb, flow_c),
            tensor_bytes(image, anchors, emb, flow_c) + B * (C + 2 * K + D + C + 2) * H * W * 4,
        )
    if op == "lcm blend fwd":
        return (
            lambda: ops.lcm_blend_reference(image, logits),
            lambda: kernels.lcm_blend(image, logits),
            tensor_bytes(image, logits, image),
        )
    if op == "lcm blend fwd+bwd":
        nbytes = tensor_bytes(image, logits, image) + tensor_bytes(go, image, logits, logits, image)
        return (
            lambda: _fwd_bwd(ops.lcm_blend_reference, [image, logits], [0, 1], go),
            lambda: _fwd_bwd(kernels.lcm_blend, [image, logits], [0, 1], go),
            nbytes,
        )
    raise ValueError(op)


OPS = [
    "warp fwd", "warp fwd+bwd", "fine warp fwd", "fine warp fwd+bwd",
    "input maps fwd", "pooled input maps fwd", "fine inputs fwd", "lcm blend fwd", "lcm blend fwd+bwd",
]
_checked = set()


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("op", OPS)
def test_op(benchmark, op, backend, B):
    skip_unless_backend(backend, B=B)
    ref_fn, tri_fn, nbytes = _case(op, B)
    if backend != "reference" and (op, B) not in _checked:
        # Parity before timing. The image gradient is never requested, so every gradient
        # here is a gather: the comparison is exact up to float32 rounding.
        assert_parity(tri_fn(), ref_fn(), rtol=1e-5, what=f"{op} B={B}")
        _checked.add((op, B))
    run_timed(benchmark, tri_fn if backend == "triton" else ref_fn, group=f"{op} B={B}", backend=backend, bytes_moved=nbytes)


@pytest.mark.parametrize("B", BATCHES)
def test_copy(benchmark, B):
    """The copy bandwidth of this device in this run: the yardstick for the warps' GB/s."""
    skip_unless_backend("reference", B=B)
    src = torch.rand(B, C + 2, H, W, device=DEVICE)
    dst = torch.empty_like(src)
    run_timed(benchmark, lambda: dst.copy_(src), group=f"copy B={B}", backend="torch", bytes_moved=2 * tensor_bytes(src))
