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

The fused ops and their references live in :mod:`deepwarp_fast.fused`, the weight
folding and the first-layer split in :mod:`deepwarp_fast.fold`; this module holds the
model, the backend choice and the CUDA graphs. Backends, per op: ``"cuda"`` (the C++/CUDA
extension deepwarp_fast._C; it has CPU ops too), else the PyTorch formulation of the same
fused op (``fused.*_reference``), whose warp and blend run on Triton when that backend is
available.
``cuda_graphs=True`` captures one CUDA graph per batch size and replays it.
Configurations whose towers do not end in exactly one 1x1 layer before the head, or
whose LCM does not have two hidden layers, run the BN-folded reference model.
"""
from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backends import backend_status, resolve_backend
from .model import DeepWarp, DeepWarpOutput
from .fold import folded, fused_path_supported, split_first_layer
from .fused import (
    coarse_tail,
    coarse_tail_reference,
    conv_bias_relu,
    conv_bias_relu_reference,
    extension_ops,
    fields_tail_reference,
    fine_tail,
    fine_tail_reference,
    pixel_scale,
)
from .validation import check_inputs

Tensor = torch.Tensor
# Eyes per call on a CPU (see AcceleratedDeepWarp._chunked).
CPU_CHUNK = 16
# With several intra-op threads, a CPU batch is split over that many threads, each running
# whole chunks on one core (its activations stay in that core's caches), instead of
# splitting every small convolution over the cores: inside the extension's whole-forward
# call (OpenMP, no Python between the layers), else over worker threads (see _eye_pool).
CPU_EYE_THREADS = True
# ... when every core gets at least this many eyes: inside the C++ call one (B=2 on 2 threads:
# 1.44 ms side by side, 1.49 op by op; 2-core Xeon, 2026-12-05), over Python worker threads
# two (at B=2 the hand-offs cost more than they save: 2.3-2.6 ms against 1.9 op by op).
CPU_EYE_MIN = 1
CPU_POOL_MIN = 2
# The whole-forward call runs one eye's small k x k layers (16 or 32 output channels, under
# ~15M multiply-adds) on the extension's own register-blocked loops, everything else on
# oneDNN (csrc/bindings.cpp: forward_cpu). False: oneDNN for every layer.
CPU_DIRECT_CONV = True

_POOLS: dict = {}
_POOL_LOCK = threading.Lock()


def _with_grad_mode(fn, inference: bool):
    """``fn`` run under the caller's no-grad or inference mode (both are per thread)."""
    def run(*args):
        with torch.inference_mode() if inference else torch.no_grad():
            return fn(*args)
    return run


def _version(t: Tensor) -> int:
    """The tensor's in-place version counter (-1 for an inference tensor, which has none)."""
    return -1 if t.is_inference() else t._version


def _eye_pool(n: int) -> ThreadPoolExecutor:
    """``n`` persistent worker threads whose own ATen/OpenMP thread count is 1. A forward
    of 2 eyes, 41x51 maps of 16-32 channels, has too little work per convolution to split
    over cores (OpenMP barriers cost more than they save), but two whole eyes side by side
    scale. ``torch.set_num_threads`` is per thread for OpenMP; it also resets MKL's global
    count, which the caller's own setting restores once the workers are up."""
    with _POOL_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            mine = torch.get_num_threads()
            pool = ThreadPoolExecutor(n, thread_name_prefix="deepwarp-eyes")
            barrier = threading.Barrier(n)

            def init():
                torch.set_num_threads(1)
                barrier.wait(timeout=30)  # every worker started (and set) before the restore

            for f in [pool.submit(init) for _ in range(n)]:
                f.result()
            torch.set_num_threads(mine)
            _POOLS[n] = pool
        return pool

# The fused ops live in deepwarp_fast.fused; their names stay importable from here.
__all__ = [
    "AcceleratedDeepWarp", "accelerate", "fused_path_supported",
    "conv_bias_relu", "conv_bias_relu_reference", "coarse_tail", "coarse_tail_reference",
    "fine_tail", "fine_tail_reference", "fields_tail_reference",
]


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
        self._plan = None  # see _cpu_plan
        self._whole_ok: Dict[torch.dtype, bool] = {}
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
                w0, b0 = folded(tower.layers[0])
                w_img, M, P, inb = split_first_layer(w0.cpu(), cfg, image_channels, pool, H, W)
                b0 = b0.cpu()
                self._buf(f"{name}_w0", w_img)
                self._buf(f"{name}_b0", b0)
                self._buf(f"{name}_M", M)
                self._buf(f"{name}_P", P)
                self._buf(f"{name}_inb", inb)
                for i, layer in enumerate(tower.layers[1:-1], start=1):
                    w, b = folded(layer)
                    self._buf(f"{name}_w{i}", w)
                    self._buf(f"{name}_b{i}", b)
                wh, bh = folded(tower.layers[-1])
                self._buf(f"{name}_head_w1", wh.flatten(1))
                self._buf(f"{name}_head_b1", bh)
                self._buf(f"{name}_head_w2", tower.head.weight.detach().flatten(1))
                self._buf(f"{name}_head_b2", tower.head.bias.detach())
            self.n_body = len(cfg.coarse_kernels) - 1, len(cfg.fine_kernels) - 1
            if model.lcm is not None:
                for i, layer in enumerate(model.lcm.layers, start=1):
                    w, b = folded(layer)
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
            return self._chunked(eyes, anchors, angles, "intermediates" if return_intermediates else "output")

    def fields(self, eyes: Tensor, anchors: Tensor, angles: Tensor, *, validate: bool = True):
        """``(flow, mask)``: the warp without applying it (see :meth:`DeepWarp.fields`). The
        towers run fused; the heads and the LCM's 1x1 layers run in PyTorch, and the
        patch-resolution warp and blend are skipped."""
        if validate:
            check_inputs(eyes, anchors, angles, self.config, check_range=True)
        if not self.fused:
            return self.reference.fields(eyes, anchors, angles, validate=False)
        with torch.no_grad():
            return self._chunked(eyes, anchors, angles, "fields")

    def _chunked(self, eyes: Tensor, anchors: Tensor, angles: Tensor, mode: str):
        """The forward on a CPU, in chunks of at most CPU_CHUNK eyes (a big batch's
        activations, B x 32 x 41 x 51 floats per layer, spill out of the caches: 256 eyes in
        one call cost ~1.8x what they cost in chunks of 16) split over the cores, each core
        running whole chunks: the output and the fields in one C++ call (the extension's
        forward_cpu, which chunks and splits by itself), the intermediates layer by layer
        on worker threads (see _eye_pool). Inference only: the caller runs no_grad."""
        B = eyes.shape[0]
        if eyes.device.type != "cpu":
            return self._forward(eyes, anchors, angles, mode)
        cores = torch.get_num_threads() if CPU_EYE_THREADS else 1
        if mode != "intermediates" and self._whole_forward_ok(eyes):
            # every layer in one C++ call, which chunks and splits over the cores by itself
            return self._whole_forward_cpu(eyes, anchors, angles, mode, max(min(cores, B // CPU_EYE_MIN), 1))
        threads = min(cores, B // CPU_POOL_MIN)
        if threads <= 1 and B <= CPU_CHUNK:
            return self._forward(eyes, anchors, angles, mode)
        forward = self._forward
        size = min(CPU_CHUNK, -(-B // threads))
        spans = [(i, min(i + size, B)) for i in range(0, B, size)]
        run = lambda s: forward(eyes[s[0]:s[1]], anchors[s[0]:s[1]], angles[s[0]:s[1]], mode)  # noqa: E731
        if threads > 1:
            # ``threads`` groups of consecutive spans; the caller's thread runs the first group
            # itself, on one core, while the workers run the others (a hand-off each way
            # costs ~0.1 ms, a third of one eye's forward)
            per = -(-len(spans) // threads)
            groups = [spans[i:i + per] for i in range(0, len(spans), per)]
            run_group = lambda g: [run(s) for s in g]  # noqa: E731
            pool = _eye_pool(threads - 1)
            rest = [pool.submit(_with_grad_mode(run_group, torch.is_inference_mode_enabled()), g) for g in groups[1:]]
            mine = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                parts = run_group(groups[0])
            finally:
                torch.set_num_threads(mine)
            for f in rest:
                parts += f.result()
        else:
            parts = [run(s) for s in spans]
        if isinstance(parts[0], Tensor):
            return torch.cat(parts)
        joined = [None if p0 is None else torch.cat([p[k] for p in parts]) for k, p0 in enumerate(parts[0])]
        return type(parts[0])(*joined) if isinstance(parts[0], DeepWarpOutput) else tuple(joined)

    def _whole_forward_ok(self, eyes: Tensor) -> bool:
        """Does the extension's ``forward_cpu`` apply (its backend, float32, an extension
        built with it)? Cached per dtype (cleared when the model moves)."""
        dt = self.dtype or eyes.dtype
        ok = self._whole_ok.get(dt)
        if ok is None:
            ok = dt == torch.float32 and self.op_backends(eyes.device, dt)["conv"] == "cuda"
            if ok:
                from . import _ext

                ok = hasattr(_ext.require(), "forward_cpu")
            self._whole_ok[dt] = ok
        return ok

    def _cpu_plan(self) -> tuple:
        """The model's arguments of the extension's ``forward_cpu``: the k x k weights
        channels-last and as (Cin, k, k, Cout) (for oneDNN and for the extension's own
        loops), the map terms' P and inb transposed, the rest as they are. Built once
        and reused while no tensor it comes from has changed (in-place updates bump a
        tensor's version; moving the model clears it). A model built under inference mode
        has inference tensors, which keep no version: an in-place change of one of those
        (possible only under inference mode) is not seen; build a new model instead."""
        plan = self._plan
        if plan is not None and all(_version(t) == v for t, v in plan[0]):
            return plan[1]
        CL = torch.channels_last
        cfg = self.config

        def tower(n, k):
            ws = [getattr(self, f"{n}_w{i}") for i in range(k)]
            return ([w.contiguous(memory_format=CL) for w in ws], [w.permute(1, 2, 3, 0).contiguous() for w in ws],
                    [getattr(self, f"{n}_b{i}") for i in range(k)],
                    getattr(self, f"{n}_M"), getattr(self, f"{n}_P").t().contiguous(),
                    getattr(self, f"{n}_inb").t().contiguous(),
                    [getattr(self, f"{n}_head_{s}") for s in ("w1", "b1", "w2", "b2")])

        lcm = [getattr(self, n) for n in ("lcm_w1", "lcm_b1", "lcm_w2", "lcm_b2", "lcm_w3", "lcm_b3")] if cfg.use_lcm else []
        emb = self.angle_embedding
        emb = [t.detach() for t in (emb.fc1.weight, emb.fc1.bias, emb.fc2.weight, emb.fc2.bias)]
        args = (emb, *tower("coarse", self.n_body[0]), *tower("fine", self.n_body[1]), lcm)
        # Only the tensors copied into another layout need watching: the others are passed
        # as themselves (an in-place update reaches them; moving the model clears the plan).
        sources = [getattr(self, f"{n}_{s}") for n, k in (("coarse", self.n_body[0]), ("fine", self.n_body[1]))
                   for s in [f"w{i}" for i in range(k)] + ["P", "inb"]]
        self._plan = ([(t, _version(t)) for t in sources], args)
        return args

    def _whole_forward_cpu(self, eyes: Tensor, anchors: Tensor, angles: Tensor, mode: str = "output", eye_threads: int = 1):
        """The output, or the fields (mode "fields"), through the extension's
        ``forward_cpu``: every layer in one C++ call (chunks of CPU_CHUNK eyes, side by side
        on ``eye_threads`` threads, the GIL released), where ``_whole_forward_ok``."""
        from . import _ext

        f32 = torch.float32
        res = _ext.require().forward_cpu(eyes.to(self.dtype or eyes.dtype).contiguous(), anchors.to(f32), angles.to(f32),
                                         *self._cpu_plan(), self.scale_x, self.scale_y, CPU_CHUNK, eye_threads,
                                         mode == "fields", CPU_DIRECT_CONV)
        if mode == "fields":
            flow, mask = res
            return flow.to(eyes.dtype), (mask.to(eyes.dtype) if self.config.use_lcm else None)
        return res[0].to(eyes.dtype)

    def _vec(self, anchors: Tensor, angles: Tensor) -> Tensor:
        """(B, D + 2K): the angle embedding and the anchors' x and y, what the first layers'
        map terms multiply (see _map_term)."""
        pdt = self.coarse_M.dtype  # float32, or float64 after .double()
        emb = self.angle_embedding(angles.to(self.angle_embedding.fc1.weight.dtype)).to(pdt)
        anchors = anchors.to(pdt)
        return torch.cat([emb, anchors[..., 0], anchors[..., 1]], dim=1)

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
        if ext:
            conv, coarse_tail_op, fine_tail_op = extension_ops()
        else:
            conv = conv_bias_relu_reference
        B = eyes.shape[0]
        H, W = cfg.height, cfg.width
        eyes_c = eyes.to(dt).contiguous()
        vec = self._vec(anchors, angles)
        h, w = H // 2, W // 2

        x = conv(F.avg_pool2d(eyes_c, 2), self.coarse_w0, self.coarse_b0, self._map_term("coarse", vec).view(B, -1, h, w), True)
        for i in range(1, self.n_body[0]):
            x = conv(x, getattr(self, f"coarse_w{i}"), getattr(self, f"coarse_b{i}"), None, True)
        feat_c = x
        head_c = (self.coarse_head_w1, self.coarse_head_b1, self.coarse_head_w2, self.coarse_head_b2)
        if ext:
            x_fine = coarse_tail_op(feat_c, *head_c, eyes_c, self.scale_x, self.scale_y)
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
            out, fine, flow, mask = fine_tail_op(feat_f, feat_c if lcm else None, x_fine[:, :C], up_c, *head_f,
                                              *(lcm or (None,) * 6), self.scale_x, self.scale_y, return_intermediates)
        else:
            out, fine, flow, mask = fine_tail_reference(feat_f, feat_c, x_fine[:, :C], up_c, *head_f, lcm=lcm,
                                                        scale_x=self.scale_x, scale_y=self.scale_y,
                                                        intermediates=return_intermediates, backend=be["warp"])
        out = out.to(in_dtype)
        if not return_intermediates:
            return out
        coarse = x_fine[:, C:2 * C].to(in_dtype)
        coarse_flow = pixel_scale(up_c.to(pdt), self.scale_x, self.scale_y).to(in_dtype)
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
        self._plan = None
        self._whole_ok = {}
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
