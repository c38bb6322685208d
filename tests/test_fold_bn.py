"""BatchNorm folding (ops.fold_bn), which the accelerated model and DeepWarp.fuse_bn use."""
import torch

from conftest import rand
from deepwarp_fast.ops import fold_bn


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
