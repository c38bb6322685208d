"""anchor_maps, angle maps, input stack, lcm_blend, BN folding: references vs SPEC.md written out."""
import torch

from conftest import rand
from deepwarp_fast.ops import anchor_maps_reference, fold_bn, input_maps_reference, lcm_blend_reference


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


def test_lcm_blend_equals_O_1_minus_M_plus_M(gen):
    img = rand(gen, 3, 3, 7, 9, dtype=torch.float64)
    logits = rand(gen, 3, 2, 7, 9, lo=-5, hi=5, dtype=torch.float64)
    M = torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])
    torch.testing.assert_close(lcm_blend_reference(img, logits), img * (1 - M) + M, atol=1e-12, rtol=0)


def test_lcm_blend_gradcheck(gen):
    img = rand(gen, 2, 3, 4, 5, dtype=torch.float64).requires_grad_(True)
    logits = rand(gen, 2, 2, 4, 5, lo=-3, hi=3, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lcm_blend_reference, (img, logits))


def test_fold_bn_matches_conv_then_bn(gen):
    conv = torch.nn.Conv2d(5, 4, 3, padding=1, bias=False).double()
    bn = torch.nn.BatchNorm2d(4, eps=1e-3).double()
    with torch.no_grad():
        bn.running_mean.copy_(rand(gen, 4, lo=-1, dtype=torch.float64))
        bn.running_var.copy_(rand(gen, 4, lo=0.5, hi=2, dtype=torch.float64))
        bn.weight.copy_(rand(gen, 4, lo=-2, hi=2, dtype=torch.float64))
        bn.bias.copy_(rand(gen, 4, lo=-1, dtype=torch.float64))
    bn.eval()
    x = rand(gen, 2, 5, 6, 7, dtype=torch.float64)
    w, b = fold_bn(conv.weight, bn)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)), atol=1e-12, rtol=0)
