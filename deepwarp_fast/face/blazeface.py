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
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

# numpy only, shared with the torch-free port (blazeface_numpy.BlazeFaceNumpy); kept importable from here
from .blazeface_numpy import (INPUT_SIZE, NUM_KEYPOINTS, WEIGHTS, _same_pad, anchors, decode,  # noqa: F401
                              iou_matrix, weighted_nms)


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
