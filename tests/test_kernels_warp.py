"""Triton warp kernels against ops.warp_reference: forward and every gradient (SPEC.md "warp").

On a machine without a GPU the kernels run on CPU tensors through TRITON_INTERPRET=1
(tests/conftest.py); with a GPU the same tests run on CUDA tensors.
"""
import pytest
import torch

from conftest import rand
from deepwarp_fast import ops

kernels = pytest.importorskip("deepwarp_fast.kernels")
from kernel_helpers import check_parity, kernel_devices, strided_like  # noqa: E402

DEVICES = kernel_devices()
pytestmark = pytest.mark.skipif(not DEVICES, reason="no device runs Triton here (no GPU, TRITON_INTERPRET unset)")
DTYPES = [torch.float32, torch.float16]
SHAPES = [(3, 3, 37, 53), (2, 3, 41, 51)]


def _flow(gen, B, H, W, reach):
    # Up to `reach` pixels each way: near the edges the samples leave the image on every side.
    return rand(gen, B, 2, H, W, lo=-reach, hi=reach)


_ref_normalized = ops.warp_normalized_reference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", [None, strided_like], ids=["contiguous", "strided"])
def test_warp_matches_reference(gen, device, dtype, shape, layout):
    B, C, H, W = shape
    image = rand(gen, B, C, H, W)
    flow = _flow(gen, B, H, W, reach=9.0)
    check_parity(kernels.warp, ops.warp_reference, [image, flow], [True, True], dtype, gen, device, layout, "warp")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape,low",
    [((3, 3, 37, 53), (18, 26)), ((2, 3, 41, 51), (20, 25)), ((2, 3, 41, 51), (41, 51)), ((2, 2, 23, 29), (5, 7))],
    ids=["37x53<-18x26", "41x51<-20x25", "same-size", "23x29<-5x7"],
)
@pytest.mark.parametrize("with_resid", [True, False], ids=["resid", "no-resid"])
def test_warp_normalized_matches_reference(gen, device, dtype, shape, low, with_resid):
    B, C, H, W = shape
    image = rand(gen, B, C, H, W)
    flow = rand(gen, B, 2, *low, lo=-0.4, hi=0.4)  # normalised: 0.4 is ~10 pixels across
    inputs, mask = [image, flow], [True, True]
    if with_resid:
        inputs.append(rand(gen, B, 2, H, W, lo=-0.3, hi=0.3))
        mask.append(True)
    check_parity(kernels.warp_normalized, _ref_normalized, inputs, mask, dtype, gen, device, strided_like, "warp_normalized")


@pytest.mark.parametrize("device", DEVICES)
def test_image_without_grad_gets_none_and_flow_grad_is_deterministic(gen, device):
    B, C, H, W = 3, 3, 37, 53
    image = rand(gen, B, C, H, W, device=device)
    flow = rand(gen, B, 2, 18, 26, lo=-0.4, hi=0.4, device=device).requires_grad_(True)
    resid = rand(gen, B, 2, H, W, lo=-0.3, hi=0.3, device=device).requires_grad_(True)
    grad_out = rand(gen, B, C, H, W, lo=-1, hi=1, device=device)
    first = torch.autograd.grad(kernels.warp_normalized(image, flow, resid), (flow, resid), grad_out)
    second = torch.autograd.grad(kernels.warp_normalized(image, flow, resid), (flow, resid), grad_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)  # gathers, no atomics: bitwise reproducible
    # An image that needs no gradient gets none: autograd returns only the flow's, and
    # asking for the image's fails because it is not part of the graph.
    flow_full = rand(gen, B, 2, H, W, lo=-2, hi=2, device=device).requires_grad_(True)
    out = kernels.warp(image, flow_full)
    assert out.requires_grad and image.grad is None
    (g_flow,) = torch.autograd.grad(out, (flow_full,), grad_out, retain_graph=True)
    assert g_flow.abs().sum() > 0
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(out, (image,), grad_out)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_flow_is_identity_and_integer_shift_is_slice(gen, device):
    B, C, H, W = 2, 3, 17, 23
    image = rand(gen, B, C, H, W, device=device)
    assert torch.equal(kernels.warp(image, torch.zeros(B, 2, H, W, device=device)), image)
    dx, dy = -3, 2
    flow = torch.empty(B, 2, H, W, device=device)
    flow[:, 0], flow[:, 1] = dx, dy
    out = kernels.warp(image, flow)
    assert torch.equal(out[:, :, : H - dy, -dx:], image[:, :, dy:, : W + dx])


@pytest.mark.parametrize("device", DEVICES)
def test_flow_past_every_border_replicates_edge_with_zero_flow_grad(gen, device):
    B, C, H, W = 2, 3, 9, 11
    image = rand(gen, B, C, H, W, device=device)
    far = 100.0
    cases = {(far, 0): image[:, :, :, W - 1 :], (-far, 0): image[:, :, :, :1], (0, far): image[:, :, H - 1 :, :], (0, -far): image[:, :, :1, :]}
    for (dx, dy), edge in cases.items():
        flow = torch.empty(B, 2, H, W, device=device)
        flow[:, 0], flow[:, 1] = dx, dy
        flow.requires_grad_(True)
        out = kernels.warp(image, flow)
        assert torch.equal(out, edge.expand_as(out)), (dx, dy)
        (g,) = torch.autograd.grad(out, flow, torch.rand(out.shape, generator=gen).to(device))
        clamped = 0 if dx else 1
        assert torch.all(g[:, clamped] == 0), (dx, dy)


def test_errors_name_the_argument(gen):
    device = DEVICES[0]
    image = rand(gen, 2, 3, 9, 11, device=device)
    with pytest.raises(ValueError, match="flow must have shape"):
        kernels.warp(image, rand(gen, 2, 3, 9, 11, device=device))
    with pytest.raises(ValueError, match="flow must have image's size"):
        kernels.warp(image, rand(gen, 2, 2, 9, 10, device=device))
    with pytest.raises(ValueError, match="resid must have image's size"):
        kernels.warp_normalized(image, rand(gen, 2, 2, 4, 5, device=device), rand(gen, 2, 2, 4, 5, device=device))
    with pytest.raises(TypeError, match="image must be float32"):
        kernels.warp(image.double(), rand(gen, 2, 2, 9, 11, device=device))
    with pytest.raises(ValueError, match="BLOCK must be a positive power of two"):
        kernels.warp(image, rand(gen, 2, 2, 9, 11, device=device), block=100)


@pytest.mark.parametrize("block", [16, 64])
def test_small_blocks_and_many_programs_agree(gen, block):
    device = DEVICES[0]
    B, C, H, W = 1, 3, 7, 9
    image = rand(gen, B, C, H, W, device=device)
    flow = rand(gen, B, 2, 3, 4, lo=-0.5, hi=0.5, device=device)
    resid = rand(gen, B, 2, H, W, lo=-0.3, hi=0.3, device=device)
    torch.testing.assert_close(kernels.warp_normalized(image, flow, resid, block=block), _ref_normalized(image, flow, resid), atol=1e-6, rtol=0)


def test_ops_dispatch_runs_the_kernel(gen):
    device = DEVICES[0]
    image = rand(gen, 2, 3, 9, 11, device=device)
    flow = rand(gen, 2, 2, 9, 11, lo=-3, hi=3, device=device)
    torch.testing.assert_close(ops.warp(image, flow, backend="triton"), kernels.warp(image, flow), atol=0, rtol=0)
