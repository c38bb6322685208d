"""One training step (forward + backward + Adam) at the paper's batch, B=128, per backend.

Rows: ``reference`` (pure PyTorch ops, the ratio's denominator), ``triton`` (GPU:
the Triton kernels with their fused backward) and ``cuda`` (the C++/CUDA extension,
wherever the model routes training through it). (A channels_last CPU row was dropped:
its fc1 weight gradient came out 1.1% off the float64 oracle, 7x the fp32 reference's
error, in PyTorch's own channels_last convolution backward.) The step is the trainer's: the losses of configs/paper.toml
(L2 on the output and on the coarse image). Before timing, each fast row checks the
loss and every parameter gradient against the reference on the same batch and weights.
CPU rows use 2 threads (DEEPWARP_BENCH_THREADS to change). Run:
``pytest benchmarks/bench_train.py`` (on a GPU: ``bash benchmarks/run_gpu.sh``).
"""
from __future__ import annotations

import copy
import os

import pytest
import torch

from conftest import DEVICE, RESULTS, assert_parity, cpu_threads, no_tf32, perturbed_model, run_timed
from deepwarp_fast.backends import backend_status
from deepwarp_fast.training.config import LossConfig
from deepwarp_fast.training.losses import training_loss

B = 128
H, W = 41, 51
THREADS = int(os.environ.get("DEEPWARP_BENCH_THREADS", "2"))
BACKENDS = ["reference", "triton", "cuda"]
_cache: dict = {}


def _model():
    if "model" not in _cache:
        # Nonzero heads: flows of a few pixels and a varying LCM mask, as in training.
        _cache["model"] = perturbed_model(scale=0.1).train()
    return _cache["model"]


def _batch():
    g = torch.Generator().manual_seed(B)
    eyes = torch.rand(B, 3, H, W, generator=g)
    target = (eyes + 0.1 * torch.rand(B, 3, H, W, generator=g)).clamp(0, 1)
    anchors = torch.rand(B, 7, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])
    angles = (torch.rand(B, 2, generator=g) - 0.5) * 60
    return [t.to(DEVICE) for t in (eyes, target, anchors, angles)]


def _model_routes(backend: str) -> bool:
    """Whether the model's ops dispatch on ``backend`` at all (otherwise that backend trains
    through the reference ops and its row would time the reference)."""
    from deepwarp_fast import ops

    return backend in ops.OP_BACKENDS


def _skip_unless_runs(backend):
    if backend != "reference" and not _model_routes(backend):
        pytest.skip(f"the model trains through the reference ops for backend {backend!r} (no dispatch to it yet)")
    if backend == "triton" and DEVICE != "cuda":
        pytest.skip("Triton rows need a GPU (the CPU interpreter is for tests, not timings)")
    if backend in ("triton", "cuda"):
        ok, why = backend_status(backend, DEVICE)
        if not ok:
            pytest.skip(f"backend {backend!r} unavailable: {why}")


def _stepper(backend, dtype=torch.float32):
    """(model, loss_and_grads(), step()) for ``backend``: step runs forward, loss, backward and Adam."""
    model = copy.deepcopy(_model()).to(dtype)
    model.backend = backend
    eyes, target, anchors, angles = [t.to(dtype) for t in _batch()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = LossConfig()

    def loss_and_grads():
        out = model(eyes, anchors, angles, return_intermediates=True, validate=False)
        loss = training_loss(out, target, cfg)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def step():
        loss_and_grads()
        opt.step()

    return model, loss_and_grads, step


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step(benchmark, backend):
    _skip_unless_runs(backend)
    with cpu_threads(THREADS), no_tf32():
        model, loss_and_grads, step = _stepper(backend)
        if backend != "reference":
            # The oracle is the reference in float64; the fast row's fp32 error may be at
            # most twice the fp32 reference's own (plus a floor of 1e-5 of the gradient's scale).
            ref_model, ref_loss_and_grads, _ = _stepper("reference")
            o_model, o_loss_and_grads, _ = _stepper("reference", torch.float64)
            o_loss, ref_loss, loss = o_loss_and_grads(), ref_loss_and_grads(), loss_and_grads()
            assert_parity(loss.detach(), o_loss.detach(), rtol=1e-5, what=f"{backend} loss")
            for (name, p), q, o in zip(model.named_parameters(), ref_model.parameters(), o_model.parameters()):
                scale = o.grad.abs().max().item() or 1.0
                err = (p.grad.double() - o.grad).abs().max().item() / scale
                ref_err = (q.grad.double() - o.grad).abs().max().item() / scale
                assert err <= 2 * ref_err + 1e-5, (
                    f"{backend} grad {name}: relative error {err:.3g} > 2 x the fp32 reference's {ref_err:.3g} + 1e-5")

        group = f"train step B={B}" + (f" ({THREADS} CPU threads)" if DEVICE == "cpu" else "")
        row = run_timed(
            benchmark, step, group=group, backend=backend, rounds=20 if DEVICE == "cuda" else 3,
            warmup=3 if DEVICE == "cuda" else 1, extra=lambda med: {"pairs_per_s": B / med},
        )
    if row is None:  # --benchmark-disable: parity checked, nothing timed
        return
    med = row["median_s"]
    ref = RESULTS[group].get("reference")
    msg = f"\n{group} {backend}: {med * 1e3:.1f} ms per step ({B / med:,.0f} pairs/s)"
    if ref and backend != "reference":
        msg += f", {ref['median_s'] / med:.2f}x the reference"
    print(msg)
