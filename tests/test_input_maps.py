"""input_maps, anchor_maps and fine_inputs (SPEC.md eq. (5)): the references written out, then
every fast backend (Triton) against them: the 33-map stack (eyes, anchor maps, angle maps),
its 2x2-pooled form, the fine tower's 38-map input, and their gradients. (The extension
replaces these maps by a fixed term of the first convolution: deepwarp_fast/fold.py, tested
through tests/test_accelerate.py.)"""
import pytest
import torch
import torch.nn.functional as F

from conftest import rand
from deepwarp_fast import ops
from deepwarp_fast.ops import anchor_maps_reference, input_maps_reference
from kernel_helpers import check_parity, strided_like, triton_kernels

kernels, DEVICES, needs_triton = triton_kernels()  # the kernel tests skip where Triton does not run


def test_anchor_maps_eq5_written_out(gen):
    B, K, H, W = 2, 7, 5, 6
    anchors = rand(gen, B, K, 2, lo=-2, hi=8, dtype=torch.float64)
    maps = anchor_maps_reference(anchors, H, W)
    assert maps.shape == (B, 2 * K, H, W)
    for b in range(B):
        for i in range(K):
            for y in range(H):
                for x in range(W):
                    assert maps[b, 2 * i, y, x] == x - anchors[b, i, 0]
                    assert maps[b, 2 * i + 1, y, x] == y - anchors[b, i, 1]


def test_input_maps_layout(gen):
    B, H, W = 3, 7, 9
    eyes, anchors, emb = rand(gen, B, 3, H, W), rand(gen, B, 7, 2, hi=8), rand(gen, B, 16, lo=-1)
    x = input_maps_reference(eyes, anchors, emb)
    assert x.shape == (B, 33, H, W)
    assert torch.equal(x[:, :3], eyes)
    assert torch.equal(x[:, 3:17], anchor_maps_reference(anchors, H, W))
    assert torch.equal(x[:, 17:], emb.view(B, 16, 1, 1).expand(B, 16, H, W))


# ----------------------------------------------------------------- every fast backend
# The Triton kernels against the reference (tests/kernel_helpers.check_parity: forward and
# gradients, float32 and float16, contiguous and strided). Without a GPU they run on CPU
# tensors through TRITON_INTERPRET=1 (tests/conftest.py); with a GPU on CUDA tensors. The
# extension's versions of these ops run inside its fused tails: tests/test_extension.py.
DTYPES = [torch.float32, torch.float16]
SHAPES = [(3, 3, 37, 53), (2, 3, 41, 51)]


def _inputs(gen, B, C, H, W, D=16):
    eyes = rand(gen, B, C, H, W)
    anchors = rand(gen, B, 7, 2) * torch.tensor([W - 1.0, H - 1.0], dtype=torch.float64).to(torch.float32)
    embedding = rand(gen, B, D, lo=0.0, hi=3.0)
    return eyes, anchors, embedding


def _ref_pooled(pool):
    def ref(eyes, anchors, embedding):
        x = ops.input_maps_reference(eyes, anchors.detach(), embedding)
        return x if pool == 1 else F.avg_pool2d(x, pool)

    return ref


def _ref_fine_inputs(eyes, anchors, embedding, flow_c):
    return ops.fine_inputs_reference(eyes, anchors.detach(), embedding, flow_c)


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("pool", [1, 2])
@pytest.mark.parametrize("layout", [None, strided_like], ids=["contiguous", "strided"])
def test_input_maps_match_reference(gen, device, dtype, shape, pool, layout):
    eyes, anchors, embedding = _inputs(gen, *shape)
    check_parity(
        lambda e, a, m: kernels.input_maps(e, a, m, pool=pool), _ref_pooled(pool),
        [eyes, anchors, embedding], [True, False, True], dtype, gen, device, layout, f"input_maps pool={pool}",
    )


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,low", [((3, 3, 37, 53), (18, 26)), ((2, 3, 41, 51), (20, 25))], ids=["37x53", "41x51"])
@pytest.mark.parametrize("eyes_grad", [False, True], ids=["eyes-no-grad", "eyes-grad"])
def test_fine_inputs_match_reference(gen, device, dtype, shape, low, eyes_grad):
    eyes, anchors, embedding = _inputs(gen, *shape)
    flow_c = rand(gen, shape[0], 2, *low, lo=-0.4, hi=0.4)
    check_parity(
        kernels.fine_inputs, _ref_fine_inputs, [eyes, anchors, embedding, flow_c],
        [eyes_grad, False, True, True], dtype, gen, device, strided_like, "fine_inputs",
    )


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_anchor_maps_match_reference_exactly(gen, device, shape):
    B, _, H, W = shape
    _, anchors, _ = _inputs(gen, *shape)
    anchors = strided_like(0, anchors.to(device))
    assert torch.equal(kernels.anchor_maps(anchors, H, W), ops.anchor_maps_reference(anchors, H, W))
    assert torch.equal(ops.anchor_maps(anchors, H, W, backend="triton"), ops.anchor_maps_reference(anchors, H, W))


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
def test_embedding_grad_is_deterministic_and_ops_dispatch(gen, device):
    eyes, anchors, embedding = (t.to(device) for t in _inputs(gen, 2, 3, 41, 51))
    embedding.requires_grad_(True)
    grad_out = rand(gen, 2, 33, 41, 51, lo=-1, hi=1, device=device)
    a = torch.autograd.grad(kernels.input_maps(eyes, anchors, embedding), embedding, grad_out)[0]
    b = torch.autograd.grad(ops.input_maps(eyes, anchors, embedding, backend="triton"), embedding, grad_out)[0]
    assert torch.equal(a, b)


@needs_triton
def test_errors_name_the_argument(gen):
    device = DEVICES[0]
    eyes, anchors, embedding = (t.to(device) for t in _inputs(gen, 2, 3, 41, 51))
    with pytest.raises(ValueError, match="anchors must not require grad"):
        kernels.input_maps(eyes, anchors.clone().requires_grad_(True), embedding)
    with pytest.raises(ValueError, match=r"anchors must have shape \(2, K, 2\)"):
        kernels.input_maps(eyes, anchors[:1], embedding)
    with pytest.raises(ValueError, match=r"embedding must have shape \(2, D\)"):
        kernels.input_maps(eyes, anchors, embedding[:, None])
    with pytest.raises(ValueError, match="flow_c must have shape"):
        kernels.fine_inputs(eyes, anchors, embedding, rand(gen, 2, 3, 20, 25, device=device))
    with pytest.raises(ValueError, match="pool must be >= 1"):
        kernels.input_maps(eyes, anchors, embedding, pool=0)
