"""ONNX export: the DeepWarp network as an ``.onnx`` file, for ONNX Runtime, OpenVINO,
TensorRT or anything else that reads ONNX.

    import deepwarp_fast
    deepwarp_fast.export_onnx(None, "deepwarp.onnx")          # the bundled weights
    deepwarp_fast.export_onnx("my.safetensors", "f.onnx", outputs="fields")

The file holds the plain PyTorch model (BatchNorm folded into the convolutions, the
same arithmetic as the reference) with a dynamic batch axis:

- inputs ``eyes`` (B, 3, H, W) float32 in [0, 1], ``anchors`` (B, K, 2) float32 patch
  pixels, ``angles`` (B, 2) float32 degrees: the model's own inputs (SPEC.md);
- outputs ``outputs="image"``: ``output`` (B, 3, H, W), the redirected eye;
  ``outputs="fields"``: ``flow`` (B, 2, H, W) in patch pixels and ``mask`` (B, 1, H, W),
  the warp without applying it (what the native paste reads; SPEC.md ``warp_frame``;
  a model without the LCM gives a mask of ones).

``check=True`` (the default when onnxruntime is installed) runs the file in ONNX Runtime
on random inputs at two batch sizes and raises if it differs from the PyTorch model by
more than ``CHECK_TOL``. Export needs ``onnx`` and ``onnxscript`` (``pip install
.[onnx]``): torch's exporter builds the graph with them.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Optional, Union

import torch

from .model import DeepWarp

OUTPUTS = ("image", "fields")
OPSET = 18
# Max abs difference from the PyTorch model on [0, 1] images (ONNX Runtime's convolutions
# sum in another order; measured ~4e-6).
CHECK_TOL = 1e-4


class ExportError(RuntimeError):
    """The export could not be made or did not match the PyTorch model."""


class _Graph(torch.nn.Module):
    def __init__(self, model: DeepWarp, outputs: str):
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, eyes, anchors, angles):
        if self.outputs == "fields":
            flow, mask = self.model.fields(eyes, anchors, angles, validate=False)
            if mask is None:  # no LCM: the warped image is the output everywhere
                mask = torch.ones_like(flow[:, :1])
            return flow, mask
        return self.model(eyes, anchors, angles, validate=False)


def _random_inputs(model: DeepWarp, B: int, seed: int):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    eyes = torch.rand(B, 3, cfg.height, cfg.width, generator=g)
    anchors = torch.rand(B, cfg.num_anchors, 2, generator=g) * torch.tensor([cfg.width - 1.0, cfg.height - 1.0])
    angles = (torch.rand(B, 2, generator=g) - 0.5) * 30
    return eyes, anchors, angles


def export_onnx(
    model: "Union[DeepWarp, str, os.PathLike, None]",
    path: "Union[str, os.PathLike]",
    *,
    outputs: str = "image",
    opset: int = OPSET,
    check: Optional[bool] = None,
) -> str:
    """Write ``model`` (a DeepWarp, a weights file, or None for the bundled weights) to
    ``path`` as ONNX; returns the path. See the module docstring for the graph's inputs
    and outputs. ``check``: compare the file in ONNX Runtime against the PyTorch model
    (None: when onnxruntime is installed)."""
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    if model is None or isinstance(model, (str, os.PathLike)):
        from .weights import load_model

        model = load_model(model)
    if not isinstance(model, DeepWarp):
        hint = " (export the DeepWarp it was built from: accelerate() output holds fused ops ONNX cannot express)" \
            if type(model).__name__ == "AcceleratedDeepWarp" else ""
        raise TypeError(f"model must be a DeepWarp, a weights file path or None, got {type(model).__name__}{hint}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder of {path} does not exist")
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: pip install onnx onnxscript (or .[onnx])")

    ref = model.fuse_bn().cpu()  # a copy: the caller's model keeps its device and mode
    ref.backend = "reference"  # plain PyTorch ops: what ONNX can express
    graph = _Graph(ref, outputs).eval()
    example = _random_inputs(ref, 2, seed=0)
    batch = torch.export.Dim("batch", min=1)
    names_out = ["output"] if outputs == "image" else ["flow", "mask"]
    import logging
    import warnings

    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)  # the exporter's notes on its own internals (torchvision ops it skips)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph, example, None, input_names=["eyes", "anchors", "angles"], output_names=names_out,
                dynamic_shapes=({0: batch}, {0: batch}, {0: batch}), opset_version=opset, dynamo=True, verbose=False,
            )
    finally:
        log.setLevel(level)
    program.save(path)
    if check is None:
        check = importlib.util.find_spec("onnxruntime") is not None
    if check:
        worst = max_onnx_error(path, ref, outputs)
        if worst > CHECK_TOL:
            raise ExportError(f"{path}: ONNX Runtime differs from the PyTorch model by {worst:.3g} (> {CHECK_TOL:g})")
    return path


def max_onnx_error(path: str, model: DeepWarp, outputs: str = "image", batches=(1, 5)) -> float:
    """Max abs difference between the ONNX file in ONNX Runtime and ``model`` on random
    inputs at each batch size in ``batches``."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    for i, B in enumerate(batches):
        eyes, anchors, angles = _random_inputs(model, B, seed=100 + i)
        got = session.run(None, {"eyes": eyes.numpy(), "anchors": anchors.numpy(), "angles": angles.numpy()})
        with torch.no_grad():
            want = _Graph(model, outputs)(eyes, anchors, angles)
        want = (want,) if isinstance(want, torch.Tensor) else want
        for g, w in zip(got, want):
            if g.shape != tuple(w.shape):
                raise ExportError(f"{path}: output shape {g.shape} != {tuple(w.shape)} at batch {B}")
            worst = max(worst, float(abs(torch.from_numpy(g) - w).max()))
    return worst
