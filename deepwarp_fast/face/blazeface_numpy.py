"""BlazeFace in numpy alone: the one-photo CLI finds its face without ``import torch``
(~1.2 s, longer than the detection itself).

``BlazeFaceNumpy`` walks the same graph with the same weights as blazeface.BlazeFace
(see there for the model, its licence and its outputs) and computes the same thing to
float32 rounding, in NHWC: the channels are the contiguous axis, so a 1x1 convolution
is one float32 BLAS matmul, a depthwise convolution is k*k shifted slices times
per-channel weights, and the first (5x5, stride 2) convolution is an im2col matmul.
The anchors, ``decode`` and ``weighted_nms`` live here too (numpy only); blazeface.py
re-exports them.

Imports only numpy and safetensors (its numpy reader): keep it that way (a test checks).
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Dict, List, Tuple

import numpy as np

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                       "blazeface_short_range.safetensors")
INPUT_SIZE = 128
NUM_KEYPOINTS = 6


def _same_pad(size: int, k: int, s: int) -> Tuple[int, int]:
    """TFLite's "same" padding (before, after): the odd pixel goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad_hw(x: np.ndarray, k: Tuple[int, int], s: Tuple[int, int], value: float = 0.0) -> np.ndarray:
    (t, b), (l, r) = _same_pad(x.shape[1], k[0], s[0]), _same_pad(x.shape[2], k[1], s[1])
    if not (t or b or l or r):
        return x
    out = np.full((x.shape[0], x.shape[1] + t + b, x.shape[2] + l + r, x.shape[3]), value, x.dtype)
    out[:, t:t + x.shape[1], l:l + x.shape[2]] = x
    return out


def _phases(x: np.ndarray, s: Tuple[int, int], k: Tuple[int, int]) -> Dict[Tuple[int, int], np.ndarray]:
    """A padded NHWC ``x`` split by stride phase (x[:, a::sh, b::sw], contiguous): a
    strided convolution's tap (i, j) is then the plain shifted slice of phase
    (i % sh, j % sw) by (i // sh, j // sw), whose rows are contiguous W*C runs."""
    if s == (1, 1):
        return {(0, 0): np.ascontiguousarray(x)}
    return {(a, b): np.ascontiguousarray(x[:, a::s[0], b::s[1]])
            for a in range(min(s[0], k[0])) for b in range(min(s[1], k[1]))}


def _out_size(x: np.ndarray, k: Tuple[int, int], s: Tuple[int, int]) -> Tuple[int, int]:
    return (x.shape[1] - k[0]) // s[0] + 1, (x.shape[2] - k[1]) // s[1] + 1


class BlazeFaceNumpy:
    """blazeface.BlazeFace without torch: ``__call__(x)`` with x (B, 3, H, W) RGB in
    [-1, 1] or (B, 1, H, W) grayscale (as three equal channels: the first convolution's
    weights are summed over its input channels) returns raw regressors (B, N, 16) and
    score logits (B, N), float32 (N = 896 at 128x128)."""

    # rows of a depthwise convolution done at a time: the band, its taps and its partial
    # sums stay in the L2 cache (with the flat rows below, ~1.7x faster than whole-tensor
    # passes over (H, W, C) arrays on a 704x544 frame)
    BAND_BYTES = 1 << 18

    def __init__(self, path: str = WEIGHTS):
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            meta = f.metadata()
            # float16 in the file; computed in float32 as the torch port does
            self.tensors: Dict[str, np.ndarray] = {k: f.get_tensor(k).astype(np.float32) for k in f.keys()}
        self.graph: List[Dict] = json.loads(meta["graph"])
        self.input_name = json.loads(meta["inputs"])[0]
        outs = json.loads(meta["outputs"])
        self.out_reg, self.out_cls = outs["regressors"], outs["classificators"]
        # kernels in matmul layout, built once: (kh*kw*I, O) for convolutions (rows in
        # (tap, channel) order, as _conv stacks its columns), (kh, kw, C) for depthwise ones
        self._w: Dict[str, np.ndarray] = {}
        for n in self.graph:
            w = self.tensors[n["in"][1]] if n["op"] in ("conv_2d", "depthwise_conv_2d") else None
            if n["op"] == "conv_2d":
                self._w[n["in"][1]] = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))
                if w.shape[1] == 3:  # a grayscale input: its 3 channels are equal
                    g = w.sum(1, keepdims=True)
                    self._w[n["in"][1] + ":gray"] = np.ascontiguousarray(g.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))
            elif n["op"] == "depthwise_conv_2d":
                self._w[n["in"][1]] = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
        # tensors that one op alone reads may be overwritten by it (in-place add and relu);
        # not the caller's input, nor a reshape's output (a view of its input)
        uses: Dict[str, int] = {}
        for n in self.graph:
            for t in n["in"]:
                uses[t] = uses.get(t, 0) + 1
        views = {n["out"] for n in self.graph if n["op"] == "reshape"} | {self.input_name}
        self._once = {t for t, c in uses.items() if c == 1 and t not in self.tensors and t not in views}

    def _conv(self, n, x):
        w_name = n["in"][1]
        w = self.tensors[w_name]
        k, s = tuple(w.shape[2:]), tuple(n["stride"])
        if n["padding"] == "same":
            x = _pad_hw(x, k, s)
        wm = self._w[w_name + ":gray" if x.shape[3] == 1 and w.shape[1] == 3 else w_name]
        B, C = x.shape[0], x.shape[3]
        if k == (1, 1) and s == (1, 1):
            y = x.reshape(-1, C) @ wm
            ho, wo = x.shape[1:3]
        else:  # im2col, channel-planar (kh*kw*C, N): each tap's copy is a contiguous write, one matmul
            ho, wo = _out_size(x, k, s)
            ph = _phases(x, s, k)
            cols = np.empty((k[0] * k[1] * C, B, ho, wo), np.float32)
            for i in range(k[0]):
                for j in range(k[1]):
                    v = ph[i % s[0], j % s[1]][:, i // s[0]:i // s[0] + ho, j // s[1]:j // s[1] + wo]
                    t = (i * k[1] + j) * C
                    cols[t:t + C] = v.transpose(3, 0, 1, 2)
            y = cols.reshape(cols.shape[0], -1).T @ wm
        if len(n["in"]) > 2:
            y += self.tensors[n["in"][2]]
        return y.reshape(B, ho, wo, wm.shape[1])

    def _depthwise(self, n, x):
        w = self._w[n["in"][1]]
        k, s = w.shape[:2], tuple(n["stride"])
        if n["padding"] == "same":
            x = _pad_hw(x, k, s)
        B, C = x.shape[0], x.shape[3]
        ho, wo = _out_size(x, k, s)
        L = wo * C
        # flat rows (B, H, W*C) and weights tiled along them: numpy's inner loops run over
        # whole rows, not over C (24 to 96) channels
        ph = {ab: p.reshape(B, p.shape[1], -1) for ab, p in _phases(x, s, k).items()}
        wt = np.tile(w, (1, 1, wo))
        bias = np.tile(self.tensors[n["in"][2]], wo) if len(n["in"]) > 2 else None
        y = np.empty((B, ho, L), np.float32)
        rows = max(1, self.BAND_BYTES // (4 * L * B))
        tmp = np.empty((B, min(rows, ho), L), np.float32)
        for r in range(0, ho, rows):
            yb = y[:, r:r + rows]
            tb = tmp[:, :yb.shape[1]]
            for i in range(k[0]):
                for j in range(k[1]):
                    di, dj = i // s[0], j // s[1]
                    v = ph[i % s[0], j % s[1]][:, r + di:r + di + yb.shape[1], dj * C:dj * C + L]
                    if i == j == 0:
                        np.multiply(v, wt[0, 0], out=yb)
                    else:
                        np.multiply(v, wt[i, j], out=tb)
                        yb += tb
            if bias is not None:
                yb += bias
        return y.reshape(B, ho, wo, C)

    def __call__(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.float32)
        B = x.shape[0]
        env = {self.input_name: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}  # NCHW -> NHWC
        for n in self.graph:
            op, ins = n["op"], [env[t] if t in env else self.tensors[t] for t in n["in"]]
            own = [t in self._once for t in n["in"]]  # may be overwritten
            if op == "conv_2d":
                y = self._conv(n, ins[0])
            elif op == "depthwise_conv_2d":
                y = self._depthwise(n, ins[0])
            elif op == "max_pool_2d":
                k, s = tuple(n["kernel"]), tuple(n["stride"])
                h = _pad_hw(ins[0], k, s, -math.inf) if n["padding"] == "same" else ins[0]
                ho, wo = _out_size(h, k, s)
                y = None
                for i in range(k[0]):
                    for j in range(k[1]):
                        v = h[:, i:i + s[0] * (ho - 1) + 1:s[0], j:j + s[1] * (wo - 1) + 1:s[1]]
                        y = v.copy() if y is None else np.maximum(y, v, out=y)
            elif op == "add":
                a, b = ins
                if own[0] and a.shape == np.broadcast_shapes(a.shape, b.shape):
                    y = np.add(a, b, out=a)
                elif own[1] and b.shape == np.broadcast_shapes(a.shape, b.shape):
                    y = np.add(b, a, out=b)
                else:
                    y = a + b
            elif op == "relu":
                y = ins[0] if own[0] else ins[0].copy()
            elif op == "pad":
                pads = n["pads"]  # TFLite's pads are NHWC already
                y = np.zeros(tuple(d + p0 + p1 for d, (p0, p1) in zip(ins[0].shape, pads)), np.float32)
                y[tuple(slice(p0, p0 + d) for d, (p0, _) in zip(ins[0].shape, pads))] = ins[0]
            elif op == "reshape":
                y = ins[0].reshape(B, -1, n["shape"][-1])
            elif op == "concatenation":
                y = np.concatenate(ins, axis=n["axis"])
            else:  # pragma: no cover - the converter admits only the ops above
                raise ValueError(f"unsupported op {op}")
            if op == "relu" or n.get("act") == "relu":
                y = np.maximum(y, 0.0, out=y if op != "reshape" else None)  # a reshape is a view of its input
            env[n["out"]] = y
        return env[self.out_reg], env[self.out_cls][..., 0]


@functools.lru_cache(maxsize=16)
def anchors(height: int = INPUT_SIZE, width: int = INPUT_SIZE) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in input pixels: MediaPipe's SSD anchors of the
    short-range model (strides 8, 16, 16, 16: 2 anchors per stride-8 cell, then 6 per
    stride-16 cell; fixed size), for any input size (the network is fully convolutional;
    at 128x128 there are 896)."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        gh, gw = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid((np.arange(gh) + 0.5) / gh * height, (np.arange(gw) + 0.5) / gw * width, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode(reg: np.ndarray, logits: np.ndarray, min_score: float = 0.5, height: int = INPUT_SIZE,
           width: int = INPUT_SIZE):
    """Boxes (N, 4) as (x0, y0, x1, y1), scores (N,) and keypoints (N, 6, 2), in input
    pixels, of the anchors scoring at least ``min_score`` (before NMS). The regressors are
    in pixels of a 128-pixel input (MediaPipe's x/y/w/h scale 128), so in input pixels."""
    logits = np.clip(logits, -80.0, 80.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.nonzero(scores >= min_score)[0]
    a = anchors(height, width)[keep]
    r = reg[keep]
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = r[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + a[:, None, :]
    return boxes, scores[keep], kp


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou: float = 0.3):
    """MediaPipe's weighted NMS: each cluster (IoU > ``iou`` with its best member) becomes
    the score-weighted mean of its boxes and keypoints, scored by its best member."""
    order = np.argsort(-scores)
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    left = np.ones(len(boxes), dtype=bool)
    out_b, out_s, out_k = [], [], []
    overlaps = iou_matrix(boxes, boxes) if len(boxes) else np.zeros((0, 0))
    for i in range(len(boxes)):
        if not left[i]:
            continue
        members = left & (overlaps[i] > iou)
        members[i] = True
        wts = scores[members][:, None]
        out_b.append((boxes[members] * wts).sum(0) / wts.sum())
        out_k.append((keypoints[members] * wts[:, :, None]).sum(0) / wts.sum())
        out_s.append(scores[i])
        left &= ~members
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32)
    return np.array(out_b, np.float32), np.array(out_s, np.float32), np.array(out_k, np.float32)
