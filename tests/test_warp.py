"""warp (SPEC.md "warp"): the reference's known answers, parity with grid_sample and its
gradients, then every fast backend (Triton) against it: forward and every gradient."""
import pytest
import torch
import torch.nn.functional as F

from conftest import non_integer, rand
from deepwarp_fast import ops
from deepwarp_fast.ops import flow_to_pixels, warp, warp_reference
from kernel_helpers import check_parity, strided_like, triton_kernels

kernels, DEVICES, needs_triton = triton_kernels()  # the kernel tests skip where Triton does not run


def grid_sample_warp(image, flow):
    B, C, H, W = image.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=flow.dtype), torch.arange(W, dtype=flow.dtype), indexing="ij")
    gx = 2 * (xs + flow[:, 0]) / (W - 1) - 1
    gy = 2 * (ys + flow[:, 1]) / (H - 1) - 1
    return F.grid_sample(image, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=True)


@pytest.mark.parametrize("shape", [(2, 3, 41, 51), (3, 3, 37, 53)])
def test_zero_flow_is_identity_exactly(gen, shape):
    img = rand(gen, *shape)
    flow = torch.zeros(shape[0], 2, *shape[2:])
    assert torch.equal(warp_reference(img, flow), img)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 2), (-3, 1), (2, -2)])
def test_integer_flow_is_shifted_slice(gen, dx, dy):
    B, C, H, W = 2, 3, 17, 23
    img = rand(gen, B, C, H, W)
    flow = torch.empty(B, 2, H, W)
    flow[:, 0], flow[:, 1] = dx, dy
    out = warp_reference(img, flow)
    # out[y, x] = img[y + dy, x + dx] wherever that stays inside the image.
    ys = slice(max(0, -dy), H - max(0, dy))
    xs = slice(max(0, -dx), W - max(0, dx))
    src_y = slice(ys.start + dy, ys.stop + dy)
    src_x = slice(xs.start + dx, xs.stop + dx)
    assert torch.equal(out[:, :, ys, xs], img[:, :, src_y, src_x])


def test_flow_past_border_replicates_edge(gen):
    B, C, H, W = 2, 3, 9, 11
    img = rand(gen, B, C, H, W)
    far = 100.0
    cases = {(far, 0): img[:, :, :, W - 1 :], (-far, 0): img[:, :, :, :1], (0, far): img[:, :, H - 1 :, :], (0, -far): img[:, :, :1, :]}
    for (dx, dy), edge in cases.items():
        flow = torch.empty(B, 2, H, W)
        flow[:, 0], flow[:, 1] = dx, dy
        out = warp_reference(img, flow)
        assert torch.equal(out, edge.expand_as(out)), (dx, dy)


@pytest.mark.parametrize("shape", [(2, 3, 41, 51), (3, 3, 37, 53)])
def test_matches_grid_sample_on_random_flows(gen, shape):
    B, C, H, W = shape
    img = rand(gen, B, C, H, W)
    flow = rand(gen, B, 2, H, W, lo=-8, hi=8)  # pushes samples past every border too
    torch.testing.assert_close(warp_reference(img, flow), grid_sample_warp(img, flow), atol=1e-5, rtol=0)


def test_non_contiguous_inputs(gen):
    img = rand(gen, 2, 19, 23, 3).permute(0, 3, 1, 2)  # channels-last view
    flow = rand(gen, 2, 19, 23, 2, lo=-3, hi=3).permute(0, 3, 1, 2)
    assert not img.is_contiguous() and not flow.is_contiguous()
    torch.testing.assert_close(warp_reference(img, flow), warp_reference(img.contiguous(), flow.contiguous()), atol=0, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_flow_and_image(seed):
    g = torch.Generator().manual_seed(seed)
    B, C, H, W = 2, 2, 5, 6
    img = torch.rand(B, C, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    # Samples stay inside the image and off integer coordinates (one-sided derivatives).
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    cx = non_integer(torch.rand(B, H, W, generator=g, dtype=torch.float64) * (W - 1.2) + 0.1)
    cy = non_integer(torch.rand(B, H, W, generator=g, dtype=torch.float64) * (H - 1.2) + 0.1)
    flow = torch.stack([cx - xs, cy - ys], 1).requires_grad_(True)
    assert torch.autograd.gradcheck(warp_reference, (img, flow), eps=1e-6, atol=1e-6)


def test_clamped_coordinates_have_zero_gradient(gen):
    img = rand(gen, 1, 1, 5, 6, dtype=torch.float64)
    flow = torch.full((1, 2, 5, 6), 50.0, dtype=torch.float64, requires_grad=True)
    warp_reference(img, flow).sum().backward()
    assert torch.equal(flow.grad, torch.zeros_like(flow))


def test_flow_to_pixels_scale():
    f = torch.ones(1, 2, 41, 51)
    p = flow_to_pixels(f)
    assert torch.all(p[:, 0] == 25.0) and torch.all(p[:, 1] == 20.0)


def test_dispatcher_reference_matches(gen):
    img, flow = rand(gen, 2, 3, 7, 9), rand(gen, 2, 2, 7, 9, lo=-2, hi=2)
    assert torch.equal(warp(img, flow, backend="reference"), warp_reference(img, flow))


def test_low_precision_coordinates_are_float32(gen):
    img = rand(gen, 2, 3, 41, 51)
    flow = rand(gen, 2, 2, 41, 51, lo=-5, hi=5)
    ref = warp_reference(img, flow.to(torch.bfloat16).float())  # same flow values, fp32 image
    out = warp_reference(img.to(torch.bfloat16), flow.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    # Only the image and interpolation weights are bf16 (~3 significant digits).
    assert (out.float() - ref).abs().max() < 2e-2


# ----------------------------------------------------------------- every fast backend
# The Triton kernels against the reference (tests/kernel_helpers.check_parity: forward and
# gradients, float32 and float16, contiguous and strided). Without a GPU they run on CPU
# tensors through TRITON_INTERPRET=1 (tests/conftest.py); with a GPU on CUDA tensors. The
# extension's versions of these ops run inside its fused tails: tests/test_extension.py.
DTYPES = [torch.float32, torch.float16]
SHAPES = [(3, 3, 37, 53), (2, 3, 41, 51)]


def _flow(gen, B, H, W, reach):
    # Up to `reach` pixels each way: near the edges the samples leave the image on every side.
    return rand(gen, B, 2, H, W, lo=-reach, hi=reach)


_ref_normalized = ops.warp_normalized_reference


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", [None, strided_like], ids=["contiguous", "strided"])
def test_warp_matches_reference(gen, device, dtype, shape, layout):
    B, C, H, W = shape
    image = rand(gen, B, C, H, W)
    flow = _flow(gen, B, H, W, reach=9.0)
    check_parity(kernels.warp, ops.warp_reference, [image, flow], [True, True], dtype, gen, device, layout, "warp")


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape,low",
    [((3, 3, 37, 53), (18, 26)), ((2, 3, 41, 51), (20, 25)), ((2, 3, 41, 51), (41, 51)), ((2, 2, 23, 29), (5, 7))],
    ids=["37x53<-18x26", "41x51<-20x25", "same-size", "23x29<-5x7"],
)
@needs_triton
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


@needs_triton
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


@needs_triton
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


@needs_triton
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


@needs_triton
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


@needs_triton
@pytest.mark.parametrize("block", [16, 64])
def test_small_blocks_and_many_programs_agree(gen, block):
    device = DEVICES[0]
    B, C, H, W = 1, 3, 7, 9
    image = rand(gen, B, C, H, W, device=device)
    flow = rand(gen, B, 2, 3, 4, lo=-0.5, hi=0.5, device=device)
    resid = rand(gen, B, 2, H, W, lo=-0.3, hi=0.3, device=device)
    torch.testing.assert_close(kernels.warp_normalized(image, flow, resid, block=block), _ref_normalized(image, flow, resid), atol=1e-6, rtol=0)


@needs_triton
def test_ops_dispatch_runs_the_kernel(gen):
    device = DEVICES[0]
    image = rand(gen, 2, 3, 9, 11, device=device)
    flow = rand(gen, 2, 2, 9, 11, lo=-3, hi=3, device=device)
    torch.testing.assert_close(ops.warp(image, flow, backend="triton"), kernels.warp(image, flow), atol=0, rtol=0)
