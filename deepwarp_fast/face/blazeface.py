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
sides) in input pixels, with MediaPipe's SSD anchors; ``weighted_nms`` merges them.
The network is fully convolutional, so it also runs on a whole frame of any size: it
finds faces about 25 to 110 pixels wide in its input, and a pyramid of resized frames
covers bigger and smaller faces (see landmarks.FaceDetector).
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                       "blazeface_short_range.safetensors")
INPUT_SIZE = 128
NUM_KEYPOINTS = 6


def _same_pad(size: int, k: int, s: int) -> Tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


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

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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
