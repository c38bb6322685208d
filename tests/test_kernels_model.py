"""The whole model with backend="triton" (fused input stacks and warps, LCM kernel) against
backend="reference": forward (output and every intermediate) and the gradient of every
parameter, fp32 max abs error <= 1e-5 on [0, 1] images."""
import copy

import pytest
import torch

from conftest import rand
from deepwarp_fast.config import DeepWarpConfig

kernels = pytest.importorskip("deepwarp_fast.kernels")
from kernel_helpers import PARITY_SCALE, kernel_devices, perturbed_model, sensitivity  # noqa: E402

DEVICES = kernel_devices()
pytestmark = pytest.mark.skipif(not DEVICES, reason="no device runs Triton here (no GPU, TRITON_INTERPRET unset)")
ATOL = 1e-5


def _models(config, device, seed=0):
    # Perturbed weights: flows reach several pixels and the mask varies, and the model does
    # not amplify float32 rounding past the bound (kernel_helpers.PARITY_SCALE).
    ref = perturbed_model(config, scale=PARITY_SCALE, seed=seed, device=device)
    tri = copy.deepcopy(ref)
    tri.backend = "triton"
    return ref, tri


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,H,W", [(3, 41, 51), (3, 37, 53)], ids=["3x41x51", "3x37x53"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_triton_matches_reference(gen, device, B, H, W, mode):
    config = DeepWarpConfig(height=H, width=W)
    ref, tri = _models(config, device)
    getattr(ref, mode)()
    getattr(tri, mode)()
    eyes = rand(gen, B, 3, H, W, device=device)
    anchors = (rand(gen, B, 7, 2) * torch.tensor([W - 1.0, H - 1.0])).to(device)
    angles = rand(gen, B, 2, lo=-20, hi=20, device=device)
    out_r = ref(eyes, anchors, angles, return_intermediates=True)
    out_t = tri(eyes, anchors, angles, return_intermediates=True)
    assert out_r.flow.abs().max() > 3.0, "the test needs flows of several pixels"
    with torch.no_grad():
        noise = sensitivity(lambda *a: ref(*a), [eyes, anchors, angles])
    assert noise < ATOL, f"the reference moves {noise:.3g} under float32 rounding noise: no fair judge at {ATOL:g}"
    for name, a, b in zip(out_r._fields, out_r, out_t):
        err = (a - b).abs().max().item()
        assert err <= ATOL, f"{name}: max abs error {err:.3g}"
    weights = [rand(gen, *out_r.output.shape, lo=-1, hi=1, device=device) for _ in range(3)]

    def loss(o):
        return sum((img * w).mean() for img, w in zip((o.output, o.coarse, o.fine), weights))

    loss(out_r).backward()
    loss(out_t).backward()
    checked = 0
    for (name, p), (_, q) in zip(ref.named_parameters(), tri.named_parameters()):
        assert p.grad is not None and q.grad is not None, name
        err = (p.grad - q.grad).abs().max().item()
        assert err <= ATOL, f"grad of {name}: max abs error {err:.3g} (|grad| up to {p.grad.abs().max().item():.3g})"
        checked += 1
    assert checked == len(list(ref.parameters()))


@pytest.mark.parametrize("device", DEVICES)
def test_fused_bn_model_and_no_lcm_match(gen, device):
    config = DeepWarpConfig(use_lcm=False)
    ref, tri = _models(config, device, seed=1)
    ref = ref.eval().fuse_bn()
    tri = tri.eval().fuse_bn()
    tri.backend = "triton"
    eyes = rand(gen, 2, 3, 41, 51, device=device)
    anchors = (rand(gen, 2, 7, 2) * torch.tensor([50.0, 40.0])).to(device)
    angles = rand(gen, 2, 2, lo=-20, hi=20, device=device)
    with torch.no_grad():
        err = (ref(eyes, anchors, angles) - tri(eyes, anchors, angles)).abs().max().item()
    assert err <= ATOL
