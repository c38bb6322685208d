"""Triton kernels for DeepWarp's ops (installed as deepwarp_fast.kernels).

Each op has a launcher pair (``<op>_fwd`` / ``<op>_bwd``), an ``autograd.Function`` and a
public function with the signature of its reference in ``deepwarp_fast.ops``:

- ``warp(image, flow)``: pixel flow; ``warp_normalized(image, flow, resid)``: the model's
  normalised low-resolution flow plus a full-size residual, upsampling and sum fused.
- ``input_maps(eyes, anchors, embedding, pool=1)``, ``anchor_maps(anchors, H, W)`` and
  ``fine_inputs(eyes, anchors, embedding, flow_c)`` (the fine tower's 38-map input).
- ``lcm_blend(image, logits)``.
- ``warp_frame(frames, frame_index, A, flow, mask, feather, kernel, channels)``: the fields
  applied to whole frames at their own resolution (uint8 in and out).

Without a GPU they run on CPU tensors under ``TRITON_INTERPRET=1`` (set before triton is
imported).
"""
from .input_maps import (
    FineInputsFunction,
    InputMapsFunction,
    anchor_maps,
    fine_inputs,
    input_maps,
    input_maps_bwd,
    input_maps_fwd,
)
from .lcm import LcmBlendFunction, lcm_blend, lcm_blend_bwd, lcm_blend_fwd
from .warp import WarpFunction, normalized_scale, warp, warp_bwd, warp_fwd, warp_normalized
from .warp_frame import warp_frame

__all__ = [
    "FineInputsFunction", "InputMapsFunction", "LcmBlendFunction", "WarpFunction",
    "anchor_maps", "fine_inputs", "input_maps", "input_maps_bwd", "input_maps_fwd",
    "lcm_blend", "lcm_blend_bwd", "lcm_blend_fwd", "normalized_scale",
    "warp", "warp_bwd", "warp_fwd", "warp_frame", "warp_normalized",
]
