"""The DeepWarp network in plain PyTorch (SPEC.md, "Architecture"): the reference model.

Every op it calls goes through ``deepwarp_fast.ops`` with the model's ``backend``, so
the same module runs the reference ops (the parity oracle) or the fast kernels.
"""
from __future__ import annotations

import copy
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops
from .config import DeepWarpConfig
from .validation import check_inputs


class DeepWarpOutput(NamedTuple):
    """Everything a forward computes that training and inspection need.

    output: the final image (after the LCM when it is on); coarse: O_c, the eyes
    warped by the coarse flow; fine: O, the eyes warped by the full flow; flow: the
    full flow in pixels (B, 2, H, W); coarse_flow: the upsampled coarse flow in
    pixels; lcm_mask: M = sigmoid(l1 - l0) (B, 1, H, W), or None without the LCM.
    """

    output: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    flow: torch.Tensor
    coarse_flow: torch.Tensor
    lcm_mask: Optional[torch.Tensor]


class ConvBNReLU(nn.Module):
    """Conv2d (no bias, 'same' zero padding, stride 1) -> BatchNorm2d -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    def folded(self) -> "FoldedConvReLU":
        """The eval-mode equivalent with the BN folded into the conv's weight and bias."""
        w, b = ops.fold_bn(self.conv.weight, self.bn)
        return FoldedConvReLU(w.detach().clone(), b.detach().clone())


class FoldedConvReLU(nn.Module):
    """Conv2d with bias ('same' padding) -> ReLU: a ConvBNReLU after BN folding."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2))


class AngleEmbedding(nn.Module):
    """E(angles) = ReLU(FC(ReLU(FC(angles)))): (B, 2) degrees -> (B, angle_dim)."""

    def __init__(self, hidden: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(angles))))


class WarpTower(nn.Module):
    """conv-BN-ReLU layers, then a 1x1 conv (bias) to 2 channels and tanh: a flow in
    normalised units. Also returns the features of layer ``feature_layer`` (for the LCM)."""

    def __init__(self, cin: int, channels, kernels, eps: float, feature_layer: int):
        super().__init__()
        layers = []
        for cout, k in zip(channels, kernels):
            layers.append(ConvBNReLU(cin, cout, k, eps))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(cin, 2, 1, bias=True)
        self.feature_layer = feature_layer
        # Start as the identity warp: zero flow until training says otherwise.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor):
        feat = None
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.feature_layer:
                feat = x
        return torch.tanh(self.head(x)), feat


class LightnessCorrection(nn.Module):
    """The LCM: 1x1 conv-BN-ReLU layers then a 1x1 conv (bias) to the 2 palette logits."""

    def __init__(self, cin: int, channels, eps: float):
        super().__init__()
        layers = []
        for cout in channels:
            layers.append(ConvBNReLU(cin, cout, 1, eps))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(cin, 2, 1, bias=True)
        # Start with M = sigmoid(l1 - l0) ~ 3e-4: the LCM leaves the image as it is.
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([4.0, -4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class DeepWarp(nn.Module):
    """DeepWarp (Ganin et al., ECCV 2016): coarse-to-fine warping plus lightness correction.

    ``model(eyes, anchors, angles)`` returns the redirected eyes (B, 3, H, W);
    ``return_intermediates=True`` returns a :class:`DeepWarpOutput` with the coarse
    and fine images that the training losses need. Tensor conventions: SPEC.md.

    backend: "reference" (pure PyTorch, the oracle), "triton" or "auto" (the fastest of
    those two for the tensors' device). The C++/CUDA extension runs through
    ``deepwarp_fast.accelerate(model)``, which takes this model's weights.
    """

    def __init__(self, config: Optional[DeepWarpConfig] = None, backend: str = "reference"):
        super().__init__()
        from .backends import BACKENDS, check_backend_name

        check_backend_name(backend, ("auto",) + BACKENDS)
        self.config = config = config or DeepWarpConfig()
        self.backend = backend
        self.angle_embedding = AngleEmbedding(config.angle_hidden, config.angle_dim)
        cin = config.input_channels
        self.coarse = WarpTower(cin, config.coarse_channels, config.coarse_kernels, config.bn_eps, config.lcm_feature_layer)
        self.fine = WarpTower(cin + 3 + 2, config.fine_channels, config.fine_kernels, config.bn_eps, config.lcm_feature_layer)
        if config.use_lcm:
            lcm_in = config.coarse_channels[config.lcm_feature_layer] + config.fine_channels[config.lcm_feature_layer]
            self.lcm = LightnessCorrection(lcm_in, config.lcm_channels, config.bn_eps)
        else:
            self.lcm = None

    def forward(self, eyes, anchors, angles, *, return_intermediates: bool = False, validate: bool = True):
        if validate:
            # In eval mode angles must lie in the trained range, as in the face pipeline;
            # training may draw its own.
            check_inputs(eyes, anchors, angles, self.config, check_range=not self.training)
        return self._run(eyes, anchors, angles, "intermediates" if return_intermediates else "output")

    def fields(self, eyes, anchors, angles, *, validate: bool = True):
        """The warp the network predicts, without applying it: ``(flow, mask)`` with the
        total backward flow in patch pixels (B, 2, H, W) and the LCM mask
        M = sigmoid(l1 - l0) (B, 1, H, W) (None without the LCM). ``forward`` equals
        ``lcm_blend(warp(eyes, flow), M)``; the face pipeline applies these fields to the
        frame's own pixels instead (SPEC.md, "warp_frame")."""
        if validate:
            check_inputs(eyes, anchors, angles, self.config, check_range=not self.training)
        return self._run(eyes, anchors, angles, "fields")

    def _run(self, eyes, anchors, angles, mode: str):
        pdt = self.angle_embedding.fc1.weight.dtype
        if eyes.dtype != pdt and eyes.dtype.is_floating_point:
            # Eyes in another float dtype than the weights (float64 or float16 eyes for a
            # float32 model) run in the weights' dtype and come back in their own, like
            # the accelerated model's.
            res = self._run(eyes.to(pdt), anchors.to(pdt), angles.to(pdt), mode)
            if mode == "intermediates":
                return DeepWarpOutput(*(None if t is None else t.to(eyes.dtype) for t in res))
            if mode == "fields":
                return tuple(None if t is None else t.to(eyes.dtype) for t in res)
            return res.to(eyes.dtype)
        be = self.backend
        H, W = self.config.height, self.config.width
        eyes = eyes.contiguous()
        embedding = self.angle_embedding(angles.to(eyes.dtype))
        want_image = mode != "fields"
        coarse = fine = coarse_flow = None
        if ops.resolve_backend(be, eyes.device, "DeepWarp") == "triton":
            # Fused path: the pooled stack is written directly, the fine input stack
            # cat(x, O_c, U_c) is one buffer filled by two kernels, and the fine warp reads
            # the low-resolution F_c and F_r itself: no pixel flow, upsampled flow or sum.
            from . import kernels

            anchors = anchors.detach()
            flow_c, feat_c = self.coarse(kernels.input_maps(eyes, anchors, embedding, pool=2))
            x_f = kernels.fine_inputs(eyes, anchors, embedding, flow_c)
            c_in = self.config.input_channels
            coarse = x_f[:, c_in : c_in + eyes.shape[1]]
            flow_r, feat_f = self.fine(x_f)
            if want_image:
                fine = kernels.warp_normalized(eyes, flow_c, flow_r)
            if mode != "output":
                up_c = F.interpolate(flow_c, size=(H, W), mode="nearest")
                coarse_flow = ops.flow_to_pixels(up_c)
                flow = ops.flow_to_pixels(up_c + flow_r)
        else:
            x = ops.input_maps(eyes, anchors, embedding, backend=be)

            flow_c, feat_c = self.coarse(F.avg_pool2d(x, 2))
            up_c = F.interpolate(flow_c, size=(H, W), mode="nearest")
            coarse_flow = ops.flow_to_pixels(up_c)
            coarse = ops.warp(eyes, coarse_flow, backend=be)

            flow_r, feat_f = self.fine(torch.cat([x, coarse, up_c], dim=1))
            flow = ops.flow_to_pixels(up_c + flow_r)
            if want_image:
                fine = ops.warp(eyes, flow, backend=be)

        mask = None
        out = fine
        if self.lcm is not None:
            feat_c_up = F.interpolate(feat_c, size=(H, W), mode="nearest")
            logits = self.lcm(torch.cat([feat_c_up, feat_f], dim=1))
            if want_image:
                out = ops.lcm_blend(fine, logits, backend=be)
            if mode != "output":
                mask = torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])
        if mode == "fields":
            return flow, mask
        if mode == "intermediates":
            return DeepWarpOutput(out, coarse, fine, flow, coarse_flow, mask)
        return out

    def fuse_bn(self) -> "DeepWarp":
        """An eval-mode copy in which every BatchNorm is folded into its conv.

        The copy's outputs equal this model's in eval mode (up to float rounding);
        it is for inference only (its folded parameters do not train).
        """
        fused = copy.deepcopy(self).eval()
        for tower in [fused.coarse, fused.fine] + ([fused.lcm] if fused.lcm is not None else []):
            tower.layers = nn.ModuleList([layer.folded() for layer in tower.layers])
        return fused


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
