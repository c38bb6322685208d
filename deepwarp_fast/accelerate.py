"""The accelerated DeepWarp: BN folded once, fused ops, the fastest backend for every op.

``accelerate(model)`` (a :class:`~deepwarp_fast.DeepWarp` or a weights file) returns an
:class:`AcceleratedDeepWarp` with the same weights and the same outputs (fp32: within
1e-4 of the reference on [0, 1] images; SPEC.md) that accepts and validates the same
inputs. Its forward runs five fused ops:

- the first conv of each tower (conv + folded BN + ReLU) reads only the *image*
  channels (eyes; for the fine tower also O_c and U_c). The other input maps are
  affine in the pixel position (anchor maps ``x - x_i``, ``y - y_i``) or constant
  (angle maps), so their convolution is ``P + A[b] @ inb``: ``P`` (from the anchor maps'
  ``x`` and ``y`` parts) and ``inb`` (which taps fall inside the zero padding) are
  fixed when the model is built, ``A[b]`` is a (D + 2K) x (Cout k^2) product per image.
  This removes 30 of the 33/38 input channels, about half of the model's FLOPs,
  and the input maps are never materialised. It is exact algebra; only the float
  rounding differs;
- the other k x k layers: conv + folded BN + ReLU (``conv_bias_relu``);
- ``coarse_tail``: the coarse head (1x1 conv-ReLU, 1x1 conv, tanh), nearest upsampling
  and the warp to O_c, writing the fine tower's image channels cat(eyes, O_c, U_c);
- ``fine_tail``: the fine head, flow = pixels(U_c + F_r), the warp, the whole LCM
  (three 1x1 layers, softmax) and the blend, one pass per pixel.

Backends, per op: ``"cuda"`` (the C++/CUDA extension deepwarp_fast._C; it has CPU
ops too), else the PyTorch formulation of the same fused op (``*_reference``
below), whose warp and blend run on Triton when that backend is available.
``cuda_graphs=True`` captures one CUDA graph per batch size and replays it.
Configurations whose towers do not end in exactly one 1x1 layer before the head, or
whose LCM does not have two hidden layers, run the BN-folded reference model.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _ext, ops
from .backends import backend_status, resolve_backend
from .config import DeepWarpConfig
from .model import DeepWarp, DeepWarpOutput
from .validation import check_inputs

Tensor = torch.Tensor


# --------------------------------------------------------------------------- ops
# Each fused op: ``<op>_reference`` in PyTorch (the parity oracle and the fallback),
# and a torch.library custom op over the extension (so opcheck and torch.compile see
# a real op with a fake-tensor implementation).
def conv_bias_relu_reference(x: Tensor, weight: Tensor, bias: Tensor, extra: Optional[Tensor] = None, relu: bool = True) -> Tensor:
    """'same' conv (stride 1) + bias, plus ``extra`` (B, Cout, H, W) when given, then ReLU."""
    out = F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), padding=weight.shape[-1] // 2)
    if extra is not None:
        out = out + extra.to(out.dtype)
    return F.relu(out) if relu else out


def _head_reference(feat: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    h = F.relu(F.conv2d(feat, w1[:, :, None, None].to(feat.dtype), b1.to(feat.dtype)))
    return torch.tanh(F.conv2d(h, w2[:, :, None, None].to(feat.dtype), b2.to(feat.dtype)))


def _pixel_scale(flow: Tensor, scale_x: float, scale_y: float) -> Tensor:
    return flow * flow.new_tensor([scale_x, scale_y]).view(1, 2, 1, 1)


def coarse_tail_reference(feat, w1, b1, w2, b2, eyes, scale_x: float, scale_y: float, backend: str = "reference") -> Tensor:
    """cat(eyes, O_c, U_c): the coarse head on ``feat`` (B, C, h, w) gives the flow F_c in
    normalised units; U_c = nearest-upsample(F_c) to the eyes' size; O_c = warp(eyes,
    (U_c_x * scale_x, U_c_y * scale_y))."""
    H, W = eyes.shape[-2:]
    up = F.interpolate(_head_reference(feat, w1, b1, w2, b2), size=(H, W), mode="nearest")
    coarse = ops.warp(eyes, _pixel_scale(up, scale_x, scale_y), backend=backend)
    return torch.cat([eyes, coarse, up], dim=1)


def _lcm_logits_reference(feat_f: Tensor, feat_c: Tensor, lcm) -> Tensor:
    """The LCM's logits (B, 2, H, W) from cat(nearest-upsample(feat_c), feat_f) and its
    folded parameters ``lcm`` = (w1, b1, w2, b2, w3, b3)."""
    lw1, lb1, lw2, lb2, lw3, lb3 = (t.to(feat_f.dtype) for t in lcm)
    x = torch.cat([F.interpolate(feat_c, size=feat_f.shape[-2:], mode="nearest"), feat_f], dim=1)
    x = F.relu(F.conv2d(x, lw1[:, :, None, None], lb1))
    x = F.relu(F.conv2d(x, lw2[:, :, None, None], lb2))
    return F.conv2d(x, lw3[:, :, None, None], lb3)


def fields_tail_reference(feat_f, feat_c, up_c, w1, b1, w2, b2, lcm=None, scale_x: float = 1.0, scale_y: float = 1.0):
    """(flow, mask) of ``fine_tail_reference`` without the warp and the blend: flow =
    pixels(U_c + head(feat_f)); mask = sigmoid(l1 - l0), or None without ``lcm``."""
    flow = _pixel_scale(up_c + _head_reference(feat_f, w1, b1, w2, b2), scale_x, scale_y)
    if lcm is None:
        return flow, None
    logits = _lcm_logits_reference(feat_f, feat_c, lcm)
    return flow, torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])


def fine_tail_reference(feat_f, feat_c, eyes, up_c, w1, b1, w2, b2, lcm=None, scale_x: float = 1.0, scale_y: float = 1.0,
                        intermediates: bool = False, backend: str = "reference"):
    """(output, fine, flow, mask): flow = pixels(U_c + head(feat_f)), fine = warp(eyes, flow);
    with ``lcm`` = (w1, b1, w2, b2, w3, b3), logits = LCM(cat(nearest-upsample(feat_c),
    feat_f)) and output = lcm_blend(fine, logits), mask = sigmoid(l1 - l0). Without
    ``intermediates`` fine, flow and mask are empty tensors."""
    H, W = eyes.shape[-2:]
    flow = _pixel_scale(up_c + _head_reference(feat_f, w1, b1, w2, b2), scale_x, scale_y)
    fine = ops.warp(eyes, flow, backend=backend)
    mask = eyes.new_empty(0)
    out = fine
    if lcm is not None:
        logits = _lcm_logits_reference(feat_f, feat_c, lcm)
        out = ops.lcm_blend(fine, logits, backend=backend)
        if intermediates:
            mask = torch.sigmoid(logits[:, 1:2] - logits[:, 0:1])
    if not intermediates:
        return out, eyes.new_empty(0), eyes.new_empty(0), eyes.new_empty(0)
    return out, fine, flow, mask


@torch.library.custom_op("deepwarp_fast::conv_bias_relu", mutates_args=())
def conv_bias_relu(x: Tensor, weight: Tensor, bias: Tensor, extra: Optional[Tensor] = None, relu: bool = True) -> Tensor:
    """The extension's ``conv_bias_relu`` (contract: :func:`conv_bias_relu_reference`)."""
    return _ext.require().conv_bias_relu(x, weight, bias, extra, relu)


@conv_bias_relu.register_fake
def _(x, weight, bias, extra=None, relu=True):
    return x.new_empty(x.shape[0], weight.shape[0], x.shape[2], x.shape[3])


@torch.library.custom_op("deepwarp_fast::coarse_tail", mutates_args=())
def coarse_tail(feat: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, eyes: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """The extension's ``coarse_tail`` (contract: :func:`coarse_tail_reference`)."""
    return _ext.require().coarse_tail(feat, w1, b1, w2, b2, eyes, scale_x, scale_y)


@coarse_tail.register_fake
def _(feat, w1, b1, w2, b2, eyes, scale_x, scale_y):
    B, C, H, W = eyes.shape
    return eyes.new_empty(B, 2 * C + 2, H, W)


@torch.library.custom_op("deepwarp_fast::fine_tail", mutates_args=())
def fine_tail(
    feat_f: Tensor, feat_c: Optional[Tensor], eyes: Tensor, up_c: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
    lcm_w1: Optional[Tensor], lcm_b1: Optional[Tensor], lcm_w2: Optional[Tensor], lcm_b2: Optional[Tensor],
    lcm_w3: Optional[Tensor], lcm_b3: Optional[Tensor], scale_x: float, scale_y: float, intermediates: bool,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The extension's ``fine_tail`` (contract: :func:`fine_tail_reference`)."""
    return _ext.require().fine_tail(feat_f, feat_c, eyes, up_c, w1, b1, w2, b2, lcm_w1, lcm_b1, lcm_w2, lcm_b2,
                                    lcm_w3, lcm_b3, scale_x, scale_y, intermediates)


@fine_tail.register_fake
def _(feat_f, feat_c, eyes, up_c, w1, b1, w2, b2, lcm_w1, lcm_b1, lcm_w2, lcm_b2, lcm_w3, lcm_b3, scale_x, scale_y, intermediates):
    B, C, H, W = eyes.shape
    out = eyes.new_empty(B, C, H, W)
    if not intermediates:  # three distinct empty tensors, as the extension returns
        return out, eyes.new_empty(0), eyes.new_empty(0), eyes.new_empty(0)
    mask = eyes.new_empty(B, 1, H, W) if lcm_w1 is not None else eyes.new_empty(0)
    return out, eyes.new_empty(B, C, H, W), eyes.new_empty(B, 2, H, W), mask


# ------------------------------------------------------------------ the model
def fused_path_supported(config: DeepWarpConfig) -> Tuple[bool, str]:
    """Whether the fused forward covers ``config`` (else the folded reference runs), and why not."""
    for name in ("coarse", "fine"):
        ks = getattr(config, f"{name}_kernels")
        if len(ks) < 2 or ks[-1] != 1:
            return False, f"the {name} tower must end in a 1x1 conv-BN-ReLU layer before its head, got kernels {ks}"
        if config.use_lcm and config.lcm_feature_layer != len(ks) - 2:
            return False, f"the LCM must read the {name} tower's last k x k layer (lcm_feature_layer={len(ks) - 2})"
    if config.use_lcm and len(config.lcm_channels) != 2:
        return False, f"the fused LCM has two hidden layers, got lcm_channels={config.lcm_channels}"
    return True, ""


def _coordinate_maps(H: int, W: int, pool: bool) -> Tuple[Tensor, Tensor]:
    """The anchor maps' position parts x and y (float64), average-pooled 2x2 like the
    coarse tower's input when ``pool``."""
    xs = torch.arange(W, dtype=torch.float64).view(1, 1, 1, W).expand(1, 1, H, W)
    ys = torch.arange(H, dtype=torch.float64).view(1, 1, H, 1).expand(1, 1, H, W)
    if pool:
        xs, ys = F.avg_pool2d(xs, 2), F.avg_pool2d(ys, 2)
    return xs, ys


def _split_first_layer(weight: Tensor, config: DeepWarpConfig, image_channels, pool: bool, H: int, W: int):
    """Split a first-layer folded weight (Cout, Cin, k, k) into the image part and the
    map term's fixed factors: (w_img, M (D+2K, Cout k^2), P (Cout, h w), inb (k^2, h w))."""
    K, D = config.num_anchors, config.angle_dim
    w = weight.double()
    Cout, _, k, _ = w.shape
    anchor_x = w[:, 3:3 + 2 * K:2]
    anchor_y = w[:, 4:3 + 2 * K:2]
    angle = w[:, 3 + 2 * K:3 + 2 * K + D]
    w_img = torch.cat([w[:, a:b] for a, b in image_channels], dim=1)
    # A[b] = vec[b] @ M with vec = cat(embedding, anchors_x, anchors_y).
    M = torch.cat([angle, -anchor_x, -anchor_y], dim=1).permute(1, 0, 2, 3).reshape(D + 2 * K, Cout * k * k)
    xs, ys = _coordinate_maps(H, W, pool)
    p = k // 2
    P = F.conv2d(xs, anchor_x.sum(1, keepdim=True), padding=p) + F.conv2d(ys, anchor_y.sum(1, keepdim=True), padding=p)
    h, w_ = xs.shape[-2:]
    inb = F.unfold(torch.ones(1, 1, h, w_, dtype=torch.float64), k, padding=p)[0]
    dt = weight.dtype
    return w_img.to(dt), M.to(dt), P.reshape(Cout, h * w_).to(dt), inb.to(dt)


def _folded(layer) -> Tuple[Tensor, Tensor]:
    if hasattr(layer, "bn"):
        w, b = ops.fold_bn(layer.conv.weight, layer.bn)
    else:  # already folded (DeepWarp.fuse_bn())
        w, b = layer.weight, layer.bias
    return w.detach(), b.detach()


class AcceleratedDeepWarp(nn.Module):
    """DeepWarp for inference with BN folded and fused ops (see the module docstring).

    ``model(eyes, anchors, angles)`` takes and validates the inputs of
    :class:`~deepwarp_fast.DeepWarp` and returns the same output;
    ``return_intermediates=True`` returns a :class:`~deepwarp_fast.DeepWarpOutput`.

    backend: "auto" (the extension where it runs, else PyTorch with Triton's warp and
    blend where available), "cuda" (the extension, else an error saying why),
    "triton" or "reference" (the PyTorch formulation of the fused ops).
    dtype: activation dtype (float32; float16/bfloat16 on CUDA), weights stay float32.
    cuda_graphs: capture one CUDA graph per (batch size, device, dtype) and replay it
    (CUDA inputs, no intermediates); the output is a fresh tensor every call.
    """

    def __init__(self, model: DeepWarp, backend: str = "auto", dtype: Optional[torch.dtype] = None, cuda_graphs: bool = False):
        super().__init__()
        if not isinstance(model, DeepWarp):
            raise TypeError(f"model must be a deepwarp_fast.DeepWarp, got {type(model).__name__}")
        if backend not in ("auto", "cuda", "triton", "reference"):
            raise ValueError(f"backend must be 'auto', 'cuda', 'triton' or 'reference', got {backend!r}")
        if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be None, torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
        if cuda_graphs and not torch.cuda.is_available():
            raise ValueError("cuda_graphs=True needs a CUDA device, and torch sees none: use cuda_graphs=False")
        self.config = cfg = model.config
        self.backend = backend
        self.dtype = dtype
        self.cuda_graphs = cuda_graphs
        self.provenance = getattr(model, "provenance", None)
        self._graphs: Dict[tuple, tuple] = {}
        device = next(model.parameters()).device
        self.fused, self.unfused_reason = fused_path_supported(cfg)
        if not self.fused:
            warnings.warn(f"deepwarp_fast.accelerate: {self.unfused_reason}; running the BN-folded reference model", stacklevel=3)
            self.reference = model.fuse_bn().to(device)
            return
        H, W = cfg.height, cfg.width
        self.scale_x, self.scale_y = (W - 1) / 2.0, (H - 1) / 2.0
        import copy

        self.angle_embedding = copy.deepcopy(model.angle_embedding).eval().requires_grad_(False)
        K, D = cfg.num_anchors, cfg.angle_dim
        img = 3 + 2 * K + D
        with torch.no_grad():
            for name, tower, image_channels, pool in (
                ("coarse", model.coarse, [(0, 3)], True),
                ("fine", model.fine, [(0, 3), (img, img + 5)], False),
            ):
                w0, b0 = _folded(tower.layers[0])
                w_img, M, P, inb = _split_first_layer(w0.cpu(), cfg, image_channels, pool, H, W)
                b0 = b0.cpu()
                self._buf(f"{name}_w0", w_img)
                self._buf(f"{name}_b0", b0)
                self._buf(f"{name}_M", M)
                self._buf(f"{name}_P", P)
                self._buf(f"{name}_inb", inb)
                for i, layer in enumerate(tower.layers[1:-1], start=1):
                    w, b = _folded(layer)
                    self._buf(f"{name}_w{i}", w)
                    self._buf(f"{name}_b{i}", b)
                wh, bh = _folded(tower.layers[-1])
                self._buf(f"{name}_head_w1", wh.flatten(1))
                self._buf(f"{name}_head_b1", bh)
                self._buf(f"{name}_head_w2", tower.head.weight.detach().flatten(1))
                self._buf(f"{name}_head_b2", tower.head.bias.detach())
            self.n_body = len(cfg.coarse_kernels) - 1, len(cfg.fine_kernels) - 1
            if model.lcm is not None:
                for i, layer in enumerate(model.lcm.layers, start=1):
                    w, b = _folded(layer)
                    self._buf(f"lcm_w{i}", w.flatten(1))
                    self._buf(f"lcm_b{i}", b)
                self._buf("lcm_w3", model.lcm.head.weight.detach().flatten(1))
                self._buf("lcm_b3", model.lcm.head.bias.detach())
        self.to(device)

    def _buf(self, name: str, t: Tensor) -> None:
        self.register_buffer(name, t.detach().contiguous().clone())

    # ------------------------------------------------------------ backends
    def op_backends(self, device: "torch.device | str", dtype: torch.dtype = torch.float32) -> Dict[str, str]:
        """The backend each op runs on for activations of ``dtype`` on ``device``."""
        device = torch.device(device)
        dtypes = (torch.float32, torch.float16, torch.bfloat16) if device.type == "cuda" else (torch.float32,)
        params_fp32 = self.fused and self.coarse_M.dtype == torch.float32
        ext_ok = backend_status("cuda", device)[0] and dtype in dtypes and params_fp32
        if self.backend == "cuda":
            resolve_backend("cuda", device)  # raises with the reason when unavailable
            if not ext_ok:
                raise ValueError(
                    f"the extension runs float32 parameters and {[str(d) for d in dtypes]} activations on "
                    f"{device.type}, got {self.coarse_M.dtype} parameters and {dtype} activations"
                )
            return {"conv": "cuda", "tails": "cuda", "warp": "cuda"}
        if self.backend == "auto" and ext_ok:
            return {"conv": "cuda", "tails": "cuda", "warp": "cuda"}
        warp_be = self.backend
        if warp_be == "auto":
            # Triton's kernels take float32/float16/bfloat16: float64 runs the PyTorch ops.
            warp_be = "triton" if dtype != torch.float64 and backend_status("triton", device)[0] else "reference"
        elif warp_be == "triton":
            resolve_backend("triton", device)
        return {"conv": "reference", "tails": "reference", "warp": warp_be}

    # ------------------------------------------------------------ forward
    def forward(self, eyes: Tensor, anchors: Tensor, angles: Tensor, *, return_intermediates: bool = False, validate: bool = True):
        if validate:
            check_inputs(eyes, anchors, angles, self.config, check_range=True)
        if not self.fused:
            return self.reference(eyes, anchors, angles, return_intermediates=return_intermediates, validate=False)
        if self.cuda_graphs and eyes.is_cuda and not return_intermediates:
            return self._graph_forward(eyes, anchors, angles)
        with torch.no_grad():
            return self._forward(eyes, anchors, angles, "intermediates" if return_intermediates else "output")

    def fields(self, eyes: Tensor, anchors: Tensor, angles: Tensor, *, validate: bool = True):
        """``(flow, mask)``: the warp without applying it (see :meth:`DeepWarp.fields`). The
        towers run fused; the heads and the LCM's 1x1 layers run in PyTorch, and the
        patch-resolution warp and blend are skipped."""
        if validate:
            check_inputs(eyes, anchors, angles, self.config, check_range=True)
        if not self.fused:
            return self.reference.fields(eyes, anchors, angles, validate=False)
        with torch.no_grad():
            return self._forward(eyes, anchors, angles, "fields")

    def _map_term(self, name: str, vec: Tensor) -> Tensor:
        """P + A[b] @ inb, (B, Cout, h, w): the first layer's response to the input maps."""
        M, P, inb = getattr(self, f"{name}_M"), getattr(self, f"{name}_P"), getattr(self, f"{name}_inb")
        B = vec.shape[0]
        Cout = P.shape[0]
        A = (vec @ M).view(B, Cout, -1)
        return torch.baddbmm(P.unsqueeze(0), A, inb.expand(B, *inb.shape))

    def _forward(self, eyes: Tensor, anchors: Tensor, angles: Tensor, mode: str):
        return_intermediates = mode == "intermediates"
        cfg = self.config
        in_dtype = eyes.dtype
        dt = self.dtype or in_dtype
        pdt = self.coarse_M.dtype  # float32, or float64 after .double()
        be = self.op_backends(eyes.device, dt)
        ext = be["conv"] == "cuda"
        conv = conv_bias_relu if ext else conv_bias_relu_reference
        B = eyes.shape[0]
        H, W = cfg.height, cfg.width
        eyes_c = eyes.to(dt).contiguous()
        emb = self.angle_embedding(angles.to(self.angle_embedding.fc1.weight.dtype)).to(pdt)
        anchors = anchors.to(pdt)
        vec = torch.cat([emb, anchors[..., 0], anchors[..., 1]], dim=1)
        h, w = H // 2, W // 2

        x = conv(F.avg_pool2d(eyes_c, 2), self.coarse_w0, self.coarse_b0, self._map_term("coarse", vec).view(B, -1, h, w), True)
        for i in range(1, self.n_body[0]):
            x = conv(x, getattr(self, f"coarse_w{i}"), getattr(self, f"coarse_b{i}"), None, True)
        feat_c = x
        head_c = (self.coarse_head_w1, self.coarse_head_b1, self.coarse_head_w2, self.coarse_head_b2)
        if ext:
            x_fine = coarse_tail(feat_c, *head_c, eyes_c, self.scale_x, self.scale_y)
        else:
            x_fine = coarse_tail_reference(feat_c, *head_c, eyes_c, self.scale_x, self.scale_y, backend=be["warp"])

        x = conv(x_fine, self.fine_w0, self.fine_b0, self._map_term("fine", vec).view(B, -1, H, W), True)
        for i in range(1, self.n_body[1]):
            x = conv(x, getattr(self, f"fine_w{i}"), getattr(self, f"fine_b{i}"), None, True)
        feat_f = x
        C = eyes_c.shape[1]
        up_c = x_fine[:, 2 * C:2 * C + 2]
        head_f = (self.fine_head_w1, self.fine_head_b1, self.fine_head_w2, self.fine_head_b2)
        lcm = tuple(getattr(self, n) for n in ("lcm_w1", "lcm_b1", "lcm_w2", "lcm_b2", "lcm_w3", "lcm_b3")) if cfg.use_lcm else None
        if mode == "fields":
            flow, mask = fields_tail_reference(feat_f, feat_c, up_c, *head_f, lcm=lcm, scale_x=self.scale_x, scale_y=self.scale_y)
            return flow.to(in_dtype), (mask.to(in_dtype) if mask is not None else None)
        if ext:
            out, fine, flow, mask = fine_tail(feat_f, feat_c if lcm else None, x_fine[:, :C], up_c, *head_f,
                                              *(lcm or (None,) * 6), self.scale_x, self.scale_y, return_intermediates)
        else:
            out, fine, flow, mask = fine_tail_reference(feat_f, feat_c, x_fine[:, :C], up_c, *head_f, lcm=lcm,
                                                        scale_x=self.scale_x, scale_y=self.scale_y,
                                                        intermediates=return_intermediates, backend=be["warp"])
        out = out.to(in_dtype)
        if not return_intermediates:
            return out
        coarse = x_fine[:, C:2 * C].to(in_dtype)
        coarse_flow = _pixel_scale(up_c.to(pdt), self.scale_x, self.scale_y).to(in_dtype)
        return DeepWarpOutput(out, coarse, fine.to(in_dtype), flow.to(in_dtype), coarse_flow,
                              mask.to(in_dtype) if lcm is not None else None)

    # ------------------------------------------------------------ CUDA graphs
    def _graph_forward(self, eyes: Tensor, anchors: Tensor, angles: Tensor) -> Tensor:
        key = (eyes.shape[0], eyes.device, eyes.dtype, anchors.dtype, angles.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            static = (eyes.detach().clone().contiguous(), anchors.detach().clone().contiguous(), angles.detach().clone().contiguous())
            self.op_backends(eyes.device, self.dtype or eyes.dtype)  # resolve (and announce) outside the capture
            stream = torch.cuda.Stream(eyes.device)
            stream.wait_stream(torch.cuda.current_stream(eyes.device))
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(2):  # warm-up: lazy inits and allocator pools outside the capture
                    self._forward(*static, "output")
            torch.cuda.current_stream(eyes.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.no_grad():
                out = self._forward(*static, "output")
            entry = self._graphs[key] = (graph, static, out)
        graph, static, out = entry
        for dst, src in zip(static, (eyes, anchors, angles)):
            dst.copy_(src)
        graph.replay()
        return out.clone()

    def reset_graphs(self) -> None:
        """Drop the captured CUDA graphs (they hold their inputs, outputs and memory pools)."""
        self._graphs.clear()

    def _apply(self, fn, *args, **kwargs):
        self._graphs.clear()  # captured graphs point at the old tensors
        return super()._apply(fn, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}, dtype={self.dtype}, cuda_graphs={self.cuda_graphs}, fused={self.fused}"


def accelerate(
    model: "Union[DeepWarp, str, os.PathLike, None]" = None,
    *,
    backend: str = "auto",
    dtype: Optional[torch.dtype] = None,
    cuda_graphs: bool = False,
    device: "Optional[Union[str, torch.device]]" = None,
) -> AcceleratedDeepWarp:
    """The accelerated model for ``model``: a DeepWarp, a weights file, or None for the
    bundled default weights. Same weights, same outputs, same inputs (see
    :class:`AcceleratedDeepWarp`). ``device`` moves it (default: where ``model`` is, or
    the CPU for a file)."""
    if model is None or isinstance(model, (str, os.PathLike)):
        from .weights import load_model

        model = load_model(model)
    if not isinstance(model, DeepWarp):
        raise TypeError(f"model must be a DeepWarp, a weights file path or None, got {type(model).__name__}")
    if cuda_graphs:
        target = torch.device(device) if device is not None else next(model.parameters()).device
        if target.type != "cuda":
            raise ValueError(f"cuda_graphs=True captures CUDA graphs, but the model is on {target}: "
                             f"pass a CUDA model (model.cuda()) or device='cuda'")
    acc = AcceleratedDeepWarp(model, backend=backend, dtype=dtype, cuda_graphs=cuda_graphs)
    return acc.to(device) if device is not None else acc
