"""warp_reference: known answers, parity with grid_sample, gradients (SPEC.md "warp")."""
import pytest
import torch
import torch.nn.functional as F

from conftest import non_integer, rand
from deepwarp_fast.ops import flow_to_pixels, warp, warp_reference


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
