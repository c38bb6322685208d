"""warp_frame (the native paste) against the patch paste, per face (two eyes), on 720p and 4K
frames: the op's backends (reference; the extension's CPU op or CUDA kernel; Triton on a
GPU), each checked against the reference first, and the patch paste (two ``paste_patch``
calls through OpenCV, what the pipeline did before) for comparison.

The frame is scikit-image's astronaut (public domain) scaled so that the eyes are about
as wide as a face filling a third of the frame's height gives (720p: ~40 px, 4K: ~120 px);
the crops are the pipeline's (crop_scale 2, levelled), the fields random flows of a few
patch pixels and a mask up to 0.5. The native rows write into a preallocated copy of the
frame (``out=``), as the pipeline does; the patch rows copy the frame once, as it did.
Run: ``pytest benchmarks/bench_warp_frame.py``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from conftest import DEVICE, RESULTS, run_timed, skip_unless_backend, tensor_bytes
from deepwarp_fast import ops

skdata = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from deepwarp_fast.face.eyes import EyeCrop  # noqa: E402
from deepwarp_fast.face.paste import feather_mask, paste_patch  # noqa: E402

H, W = 41, 51
SIZES = {"720p": (720, 1280, 40.0), "4K": (2160, 3840, 120.0)}


@functools.lru_cache(maxsize=None)
def _case(size: str):
    Hf, Wf, eye_w = SIZES[size]
    # the astronaut's eyes are ~17 px wide at 512 px: scale the photo so they are eye_w wide
    s = eye_w / 17.0
    face = cv2.resize(skdata.astronaut(), None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    frame = np.full((Hf, Wf, 3), 90, np.uint8)
    fh, fw = min(Hf, face.shape[0]), min(Wf, face.shape[1])
    frame[:fh, :fw] = face[:fh, :fw]
    g = torch.Generator().manual_seed(0)
    A = []
    for k, cx in enumerate((Wf * 0.45, Wf * 0.55)):
        scale = W / (2.0 * eye_w)
        r = math.radians(8.0)
        L = scale * torch.tensor([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]], dtype=torch.float64)
        if k == 1:
            L = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64) @ L
        t = torch.tensor([(W - 1) / 2.0, (H - 1) / 2.0], dtype=torch.float64) - L @ torch.tensor([cx, Hf * 0.4], dtype=torch.float64)
        A.append(torch.cat([L, t[:, None]], dim=1))
    A = torch.stack(A)
    flow = (torch.rand(2, 2, H, W, generator=g) * 2 - 1) * 3
    mask = torch.rand(2, 1, H, W, generator=g) * 0.5
    patches = torch.rand(2, H, W, 3, generator=g).numpy()
    return frame, A, flow, mask, patches


def _args(size: str, device: str):
    frame, A, flow, mask, _ = _case(size)
    frames = torch.from_numpy(frame)[None].to(device)
    fe = torch.from_numpy(feather_mask(H, W)).to(device)
    return frames, torch.zeros(2, dtype=torch.long), A, flow.to(device), mask.to(device), fe


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("backend", ["reference", "cuda", "triton"])
def test_warp_frame_per_face(benchmark, size, backend):
    skip_unless_backend(backend)
    device = DEVICE if backend != "reference" else "cpu"
    frames, idx, A, flow, mask, fe = _args(size, device)
    ref = ops.warp_frame_reference(frames.cpu(), idx, A, flow.cpu(), mask.cpu(), fe.cpu())
    out = ops.warp_frame(frames, idx, A, flow, mask, fe, backend=backend).cpu()
    d = (out.int() - ref.int()).abs()
    assert int(d.max()) <= 1 and float((d > 0).float().mean()) < 1e-4, "parity with the reference: not timing a wrong op"
    assert int((ref != frames.cpu()).sum()) > 1000, "the case must change the eyes"
    _, boxes, _ = ops.warp_frame_tables(A, idx, H, W, frames.shape[1], frames.shape[2])
    pixels = int((boxes[:, 3] * boxes[:, 4]).sum())
    out_buf = frames.clone()  # as the pipeline calls it: into its copy of the frame
    run_timed(benchmark, lambda: ops.warp_frame(frames, idx, A, flow, mask, fe, backend=backend, out=out_buf),
              group=f"paste per face {size}", backend=f"native {backend}",
              bytes_moved=tensor_bytes(frames) * 2 + pixels * 3 * 2,
              extra=lambda med: {"footprint_pixels": pixels})


@pytest.mark.parametrize("size", sorted(SIZES))
def test_patch_paste_per_face(benchmark, size):
    """The patch paste the pipeline did before: both eyes' 51x41 patches through OpenCV."""
    frame, A, _, _, patches = _case(size)
    crops = [EyeCrop("image_left", A[i].numpy(), i == 1, float(torch.linalg.det(A[i, :, :2]).abs().sqrt()), np.zeros((6, 2), np.float32), 1.0)
             for i in range(2)]

    def run():
        out = frame.copy()
        for p, c in zip(patches, crops):
            paste_patch(out, p, c, 255.0)
        return out

    assert not np.array_equal(run(), frame)
    run_timed(benchmark, run, group=f"paste per face {size}", backend="patch paste (cv2)")
    RESULTS.setdefault(f"paste per face {size}", {})
