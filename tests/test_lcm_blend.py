"""lcm_blend (SPEC.md eq. (6)): the reference written out and its gradients, then every fast
backend (Triton) against it: forward and gradients."""
import pytest
import torch

from conftest import rand
from deepwarp_fast import ops
from deepwarp_fast.ops import lcm_blend_reference
from kernel_helpers import check_parity, strided_like, triton_kernels

kernels, DEVICES, needs_triton = triton_kernels()  # the kernel tests skip where Triton does not run


def test_lcm_blend_equals_O_1_minus_M_plus_M(gen):
    img = rand(gen, 3, 3, 7, 9, dtype=torch.float64)
    logits = rand(gen, 3, 2, 7, 9, lo=-5, hi=5, dtype=torch.float64)
    M = torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])
    torch.testing.assert_close(lcm_blend_reference(img, logits), img * (1 - M) + M, atol=1e-12, rtol=0)


def test_lcm_blend_gradcheck(gen):
    img = rand(gen, 2, 3, 4, 5, dtype=torch.float64).requires_grad_(True)
    logits = rand(gen, 2, 2, 4, 5, lo=-3, hi=3, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lcm_blend_reference, (img, logits))


# ----------------------------------------------------------------- every fast backend
# The Triton kernels against the reference (tests/kernel_helpers.check_parity: forward and
# gradients, float32 and float16, contiguous and strided). Without a GPU they run on CPU
# tensors through TRITON_INTERPRET=1 (tests/conftest.py); with a GPU on CUDA tensors. The
# extension's versions of these ops run inside its fused tails: tests/test_extension.py.
@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("shape", [(3, 3, 37, 53), (2, 3, 41, 51)], ids=str)
@pytest.mark.parametrize("layout", [None, strided_like], ids=["contiguous", "strided"])
@pytest.mark.parametrize("image_grad", [True, False], ids=["image-grad", "no-image-grad"])
def test_lcm_blend_matches_reference(gen, device, dtype, shape, layout, image_grad):
    B, C, H, W = shape
    image = rand(gen, B, C, H, W)
    logits = rand(gen, B, 2, H, W, lo=-6, hi=6)  # both saturated and balanced masks
    check_parity(kernels.lcm_blend, ops.lcm_blend_reference, [image, logits], [image_grad, True], dtype, gen, device, layout, "lcm_blend")


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
def test_lcm_blend_known_answers_and_dispatch(gen, device):
    image = rand(gen, 2, 3, 9, 11, device=device)
    big = torch.full((2, 2, 9, 11), 30.0, device=device)
    big[:, 1] = -30.0  # w0 = 1: the image passes through
    torch.testing.assert_close(kernels.lcm_blend(image, big), image, atol=1e-12, rtol=0)
    torch.testing.assert_close(kernels.lcm_blend(image, -big), torch.ones_like(image), atol=1e-12, rtol=0)  # white
    logits = rand(gen, 2, 2, 9, 11, lo=-3, hi=3, device=device)
    assert torch.equal(ops.lcm_blend(image, logits, backend="triton"), kernels.lcm_blend(image, logits))
    with pytest.raises(ValueError, match=r"logits must have shape \(2, 2, 9, 11\)"):
        kernels.lcm_blend(image, logits[:, :1])
