"""BlazeFace (Bazarevsky et al., 2019), MediaPipe's short-range face detector, in PyTorch.

The weights and the graph come from MediaPipe's ``face_detection_short_range.tflite``
(Apache License 2.0, Copyright Google LLC), converted by tools/convert_blazeface.py into
``deepwarp_fast/weights/blazeface_short_range.safetensors``, which ships in the package:
nothing is downloaded at run time. The graph (90 ops: convolutions, depthwise
convolutions, residual adds, channel pads, max pools) is kept in the file's metadata and
run op by op in NCHW; TFLite's "same" padding (extra row/column at the bottom/right) is
reproduced exactly.

``BlazeFace`` maps (B, 3, 128, 128) RGB in [-1, 1] (or (B, 1, H, W) grayscale, the
same as three equal channels) to raw regressors (B, 896, 16) and score logits (B, 896); ``decode`` turns them into boxes, scores and 6 keypoints (right
eye, left eye, nose tip, mouth, right ear tragion, left ear tragion; the subject's
sides) in input pixels, with MediaPipe's SSD anchors; ``weighted_nms`` merges them
(those helpers are numpy only and live in blazeface_numpy, next to ``BlazeFaceNumpy``,
the same network without torch).
The network is fully convolutional, so it also runs on a whole frame of any size: it
finds faces about 25 to 110 pixels wide in its input, and a pyramid of resized frames
covers bigger and smaller faces (see landmarks.FaceDetector).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

# numpy only, shared with the torch-free port (blazeface_numpy.BlazeFaceNumpy); kept importable from here
from .blazeface_numpy import (INPUT_SIZE, NUM_KEYPOINTS, WEIGHTS, _same_pad, anchors, decode,  # noqa: F401
                              iou_matrix, weighted_nms)


class _ChannelPad:
    """A residual whose channels TFLite pads with zeros before an add: forward() adds it
    into the other operand's first channels instead."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class BlazeFace(torch.nn.Module):
    def __init__(self, path: str = WEIGHTS):
        super().__init__()
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            for k in f.keys():
                self.register_buffer(k, f.get_tensor(k).float(), persistent=False)
        self.graph: List[Dict] = json.loads(meta["graph"])
        self.input_name = json.loads(meta["inputs"])[0]
        outs = json.loads(meta["outputs"])
        self.out_reg, self.out_cls = outs["regressors"], outs["classificators"]
        # For forward(): how often each tensor is read (one reader: it may be overwritten),
        # which tensors an op creates (not inputs, weights or views), the first
        # convolution's weights for a grayscale input, and the channel pads that only
        # feed an add.
        consumers: Dict[str, List[str]] = {}
        for n in self.graph:
            for t in n["in"]:
                consumers.setdefault(t, []).append(n["op"])
        self._uses = Counter({t: len(ops) for t, ops in consumers.items()})
        self._uses.update([self.out_reg, self.out_cls])
        self._fresh = {n["out"] for n in self.graph if n["op"] != "reshape"}
        self._gray_weights = {n["in"][1]: getattr(self, n["in"][1]).sum(1, keepdim=True) for n in self.graph
                              if n["op"] == "conv_2d" and getattr(self, n["in"][1]).shape[1] == 3}
        # 1x1 convolutions (stride 1, with a bias) as (Cin, Cout) matrices
        self._pointwise = {n["in"][1]: getattr(self, n["in"][1]).flatten(1).t().contiguous() for n in self.graph
                           if n["op"] == "conv_2d" and len(n["in"]) > 2 and n["stride"] == [1, 1]
                           and tuple(getattr(self, n["in"][1]).shape[2:]) == (1, 1)}
        self._channel_pads = {n["out"] for n in self.graph if n["op"] == "pad" and consumers.get(n["out"]) == ["add"]
                              and n["pads"][0] == [0, 0] and n["pads"][1] == [0, 0] and n["pads"][2] == [0, 0]
                              and n["pads"][3][0] == 0}

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The same outputs as :meth:`forward_reference`, with fewer passes over memory
        (a 720p frame's pyramid: 57 -> ~30 ms on one CPU thread): a symmetric "same"
        padding goes into the convolution, a residual's zero channel padding is an
        in-place add into the first channels, adds and ReLUs whose input is used once run
        in place, and TFLite's 2x2 "same" max pool is PyTorch's ceil mode."""
        B = x.shape[0]
        env = {self.input_name: x}

        def owned(name: str) -> bool:  # a tensor made here that nothing else reads: writable
            return self._uses[name] == 1 and name in self._fresh
        for n in self.graph:
            op, names = n["op"], n["in"]
            if op == "pad" and n["out"] in self._channel_pads:
                env[n["out"]] = _ChannelPad(env[names[0]])  # added into its consumer's first channels
                continue
            ins = [env[t] if t in env else getattr(self, t) for t in names]
            if op in ("conv_2d", "depthwise_conv_2d"):
                h, w = ins[0], ins[1]
                sh, sw = n["stride"]
                pad = (0, 0)
                if n["padding"] == "same":
                    ph, pw = _same_pad(h.shape[2], w.shape[2], sh), _same_pad(h.shape[3], w.shape[3], sw)
                    if ph[0] == ph[1] and pw[0] == pw[1]:
                        pad = (ph[0], pw[0])
                    else:
                        h = F.pad(h, (pw[0], pw[1], ph[0], ph[1]))
                groups = h.shape[1] if op == "depthwise_conv_2d" else 1
                if groups == 1 and h.shape[1] == 1 and w.shape[1] == 3:
                    w = self._gray_weights[names[1]]
                pointwise = self._pointwise.get(names[1])
                if pointwise is not None and pad == (0, 0) and h.is_contiguous(memory_format=torch.channels_last):
                    # a 1x1 convolution on channels-last pixels is one matrix product (PyTorch's
                    # CPU path for it copies the input first: ~2x slower)
                    Bh, C, H, W = h.shape
                    y = torch.addmm(ins[2], h.permute(0, 2, 3, 1).reshape(-1, C), pointwise)
                    y = y.view(Bh, H, W, -1).permute(0, 3, 1, 2)
                else:
                    y = F.conv2d(h, w, ins[2] if len(ins) > 2 else None, stride=(sh, sw), padding=pad, groups=groups)
                if not y.is_contiguous(memory_format=torch.channels_last):
                    # a 1-channel input is NCHW and channels-last at once, and oneDNN then
                    # keeps NCHW: its depthwise convolutions and max pools run ~7x slower
                    y = y.contiguous(memory_format=torch.channels_last)
                fresh = True
            elif op == "max_pool_2d":
                k, s = tuple(n["kernel"]), tuple(n["stride"])
                if n["padding"] == "same" and k == s == (2, 2):  # TFLite pads after: ceil mode's partial windows
                    y = F.max_pool2d(ins[0], k, s, ceil_mode=True)
                else:
                    h = ins[0]
                    if n["padding"] == "same":
                        ph, pw = _same_pad(h.shape[2], k[0], s[0]), _same_pad(h.shape[3], k[1], s[1])
                        h = F.pad(h, (pw[0], pw[1], ph[0], ph[1]), value=-math.inf)
                    y = F.max_pool2d(h, k, s)
                fresh = True
            elif op == "add":
                pads = [i for i, v in enumerate(ins) if isinstance(v, _ChannelPad)]
                if pads:  # the other operand's first channels take the residual
                    r, i = ins[pads[0]].tensor, 1 - pads[0]
                    y = ins[i] if owned(names[i]) else ins[i].clone()
                    y[:, : r.shape[1]] += r
                elif owned(names[0]):
                    y = ins[0].add_(ins[1])
                elif owned(names[1]):
                    y = ins[1].add_(ins[0])
                else:
                    y = ins[0] + ins[1]
                fresh = True
            elif op == "relu":
                y = ins[0]
                fresh = owned(names[0])
            elif op == "pad":
                (_, _), (t, b), (l, r), (c0, c1) = n["pads"]  # NHWC
                y = F.pad(ins[0], (l, r, t, b, c0, c1))
                fresh = True
            elif op == "reshape":
                y = ins[0].permute(0, 2, 3, 1).reshape(B, -1, n["shape"][-1])
                fresh = False
            elif op == "concatenation":
                y = torch.cat(ins, dim=n["axis"])
                fresh = True
            else:  # pragma: no cover - the converter admits only the ops above
                raise ValueError(f"unsupported op {op}")
            if op == "relu" or n.get("act") == "relu":
                y = torch.relu_(y) if fresh else torch.relu(y)
            env[n["out"]] = y
        return env[self.out_reg], env[self.out_cls][..., 0]

    def forward_reference(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The graph op by op, as TFLite runs it (every \"same\" padding and channel pad
        materialised): the oracle that :meth:`forward` is tested against."""
        B = x.shape[0]
        env = {self.input_name: x}
        for n in self.graph:
            op, ins = n["op"], [env[t] if t in env else getattr(self, t) for t in n["in"]]
            if op in ("conv_2d", "depthwise_conv_2d"):
                h = ins[0]
                w = ins[1]
                sh, sw = n["stride"]
                if n["padding"] == "same":
                    ph, pw = _same_pad(h.shape[2], w.shape[2], sh), _same_pad(h.shape[3], w.shape[3], sw)
                    if any(ph + pw):
                        h = F.pad(h, (pw[0], pw[1], ph[0], ph[1]))
                groups = h.shape[1] if op == "depthwise_conv_2d" else 1
                if groups == 1 and h.shape[1] == 1 and w.shape[1] == 3:
                    w = w.sum(1, keepdim=True)  # a grayscale input: its 3 channels are equal
                y = F.conv2d(h, w, ins[2] if len(ins) > 2 else None, stride=(sh, sw), groups=groups)
            elif op == "max_pool_2d":
                h = ins[0]
                if n["padding"] == "same":
                    ph = _same_pad(h.shape[2], n["kernel"][0], n["stride"][0])
                    pw = _same_pad(h.shape[3], n["kernel"][1], n["stride"][1])
                    h = F.pad(h, (pw[0], pw[1], ph[0], ph[1]), value=-math.inf)
                y = F.max_pool2d(h, n["kernel"], n["stride"])
            elif op == "add":
                y = ins[0] + ins[1]
            elif op == "relu":
                y = ins[0]
            elif op == "pad":
                (_, _), (t, b), (l, r), (c0, c1) = n["pads"]  # NHWC
                y = F.pad(ins[0], (l, r, t, b, c0, c1))
            elif op == "reshape":
                # TFLite reshapes NHWC; the anchor count follows the input size (fully convolutional)
                y = ins[0].permute(0, 2, 3, 1).reshape(B, -1, n["shape"][-1])
            elif op == "concatenation":
                y = torch.cat(ins, dim=n["axis"])
            else:  # pragma: no cover - the converter admits only the ops above
                raise ValueError(f"unsupported op {op}")
            if op == "relu" or n.get("act") == "relu":
                y = torch.relu(y)
            env[n["out"]] = y
        return env[self.out_reg], env[self.out_cls][..., 0]
