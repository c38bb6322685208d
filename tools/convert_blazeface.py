"""Convert MediaPipe's BlazeFace short-range face detector (a .tflite file) into
deepwarp_fast/weights/blazeface_short_range.safetensors: its float weights plus its graph,
a short list of ops in the safetensors metadata, run by deepwarp_fast.face.blazeface.

    pip download mediapipe==0.10.21 --no-deps      # a cp311 wheel; do not install it
    unzip -j mediapipe-0.10.21-*.whl mediapipe/modules/face_detection/face_detection_short_range.tflite
    pip install tflite safetensors numpy            # any venv: tflite is pure Python
    python tools/convert_blazeface.py face_detection_short_range.tflite

The model is (c) Google LLC, Apache License 2.0 (the mediapipe wheel's LICENSE). Weights
are stored as float16 in the .tflite and are kept exactly (float16).
"""
import argparse
import json
import os
import sys

import numpy as np
import tflite
from safetensors.numpy import save_file

OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
TYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.INT32: np.int32}
PADDING = {tflite.Padding.SAME: "same", tflite.Padding.VALID: "valid"}
ACT = {tflite.ActivationFunctionType.NONE: None, tflite.ActivationFunctionType.RELU: "relu"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tflite")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "deepwarp_fast", "weights",
                                                  "blazeface_short_range.safetensors"))
    args = ap.parse_args()
    buf = open(args.tflite, "rb").read()
    model = tflite.Model.GetRootAsModel(buf, 0)
    sg = model.Subgraphs(0)

    def const(t):
        tensor = sg.Tensors(t)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or len(data) == 0:
            return None
        return np.frombuffer(data.tobytes(), dtype=TYPES[tensor.Type()]).reshape(tensor.ShapeAsNumpy())

    def shape(t):
        return [int(v) for v in sg.Tensors(t).ShapeAsNumpy()]

    alias = {}  # DEQUANTIZE outputs -> the constant they come from
    tensors, graph = {}, []
    name = lambda t: f"t{alias.get(t, t)}"
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = OPS[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out = op.Outputs(0)
        opts = op.BuiltinOptions()
        if kind == "DEQUANTIZE":
            alias[out] = ins[0]
            tensors[f"t{ins[0]}"] = const(ins[0])  # float16, as stored in the .tflite
            continue
        node = {"op": kind.lower(), "in": [name(t) for t in ins], "out": f"t{out}", "shape": shape(out)}
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = (tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)()
            o.Init(opts.Bytes, opts.Pos)
            assert o.DilationHFactor() == 1 and o.DilationWFactor() == 1
            node.update(stride=[o.StrideH(), o.StrideW()], padding=PADDING[o.Padding()], act=ACT[o.FusedActivationFunction()])
            w = tensors[name(ins[1])]
            # TFLite: conv (O, kh, kw, I), depthwise (1, kh, kw, C) -> torch (O, I, kh, kw) / (C, 1, kh, kw)
            tensors[name(ins[1])] = np.ascontiguousarray(w.transpose(0, 3, 1, 2) if kind == "CONV_2D" else w.transpose(3, 0, 1, 2))
        elif kind == "MAX_POOL_2D":
            o = tflite.Pool2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            node.update(kernel=[o.FilterHeight(), o.FilterWidth()], stride=[o.StrideH(), o.StrideW()],
                        padding=PADDING[o.Padding()], act=ACT[o.FusedActivationFunction()])
        elif kind == "ADD":
            o = tflite.AddOptions()
            o.Init(opts.Bytes, opts.Pos)
            node.update(act=ACT[o.FusedActivationFunction()])
        elif kind == "PAD":
            node["pads"] = const(ins[1]).tolist()  # NHWC [[before, after]] * 4
            node["in"] = node["in"][:1]
        elif kind == "RESHAPE":
            node["in"] = node["in"][:1]
        elif kind == "CONCATENATION":
            o = tflite.ConcatenationOptions()
            o.Init(opts.Bytes, opts.Pos)
            node.update(axis=o.Axis())
        elif kind != "RELU":
            sys.exit(f"unsupported op {kind}")
        graph.append(node)
    inputs = [f"t{sg.Inputs(j)}" for j in range(sg.InputsLength())]
    outputs = {sg.Tensors(sg.Outputs(j)).Name().decode(): f"t{sg.Outputs(j)}" for j in range(sg.OutputsLength())}
    used = {t for n in graph for t in n["in"]}
    tensors = {k: v for k, v in tensors.items() if k in used}
    meta = {"graph": json.dumps(graph), "inputs": json.dumps(inputs), "outputs": json.dumps(outputs),
            "source": "MediaPipe face_detection_short_range.tflite (mediapipe 0.10.21 wheel)",
            "license": "Apache-2.0, Copyright Google LLC"}
    save_file(tensors, args.out, metadata=meta)
    print(f"{len(graph)} ops, {len(tensors)} tensors, {sum(v.size for v in tensors.values())} parameters -> {args.out}")


if __name__ == "__main__":
    main()
