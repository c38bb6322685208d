"""Whole-model benchmarks: DeepWarp with backend="reference" vs backend="triton".

Rows: inference forward (eval, no_grad) and forward+backward (train mode, a loss on the
output and the coarse and fine images) at B = 2, 64, 1024 eyes, and one training step
(forward, backward, Adam) at B = 128. Each pair is checked for parity first (with TF32
off during the check, so both backends' convolutions round alike). Run:
``pytest benchmarks/bench_model.py``.
"""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import BATCHES, assert_parity, eye_inputs, no_tf32, parity_scale, perturbed_model, run_timed, skip_unless_backend

_checked = set()


def _models():
    # Nonzero heads: flows of several pixels and a varying LCM mask, as after training, at a
    # scale where the model does not amplify float32 rounding past the parity bound.
    ref = perturbed_model(scale=parity_scale())
    tri = copy.deepcopy(ref)
    tri.backend = "triton"
    return {"reference": ref, "triton": tri}


def _forward(model, inputs):
    with torch.no_grad():
        return model(*inputs, validate=False)


def _loss(model, inputs):
    o = model(*inputs, return_intermediates=True, validate=False)
    return o.output.mean() + 0.5 * o.coarse.square().mean() + 0.5 * o.fine.abs().mean()


def _forward_backward(model, inputs):
    model.zero_grad(set_to_none=True)
    _loss(model, inputs).backward()
    return [p.grad for p in model.parameters()]


def _check(kind, B, models, inputs):
    if (kind, B) in _checked:
        return
    with no_tf32():
        if kind == "forward":
            ref, tri = (_forward(models[b].eval(), inputs) for b in ("reference", "triton"))
            assert_parity(tri, ref, rtol=1e-5, what=f"model forward B={B}")
        else:
            ref, tri = (_forward_backward(models[b].train(), inputs) for b in ("reference", "triton"))
            assert_parity(tri, ref, rtol=1e-4, what=f"model parameter grads B={B}")
    _checked.add((kind, B))


def _bench(benchmark, kind, backend, B):
    """Parity (fast rows) then timing of ``kind`` ("forward": eval, no_grad; "forward+backward": train)."""
    skip_unless_backend(backend, B=B)
    models, inputs = _models(), eye_inputs(B)
    if backend != "reference":
        _check(kind, B, models, inputs)
    if kind == "forward":
        model = models[backend].eval()
        run_timed(benchmark, lambda: _forward(model, inputs), group=f"model forward B={B}", backend=backend)
    else:
        model = models[backend].train()
        run_timed(benchmark, lambda: _forward_backward(model, inputs), group=f"model fwd+bwd B={B}", backend=backend)


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_model_forward(benchmark, backend, B):
    _bench(benchmark, "forward", backend, B)


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_model_forward_backward(benchmark, backend, B):
    _bench(benchmark, "forward+backward", backend, B)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_training_step(benchmark, backend):
    B = 128
    skip_unless_backend(backend, B=min(B, 64))
    models, inputs = _models(), eye_inputs(B)
    if backend != "reference":
        _check("forward+backward", B, models, inputs)
    model = models[backend].train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        _loss(model, inputs).backward()
        opt.step()

    run_timed(benchmark, step, group=f"training step B={B}", backend=backend)
