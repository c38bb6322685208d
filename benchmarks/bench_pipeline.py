"""The face pipeline end to end on a 1280x720 face video: frames per second and the
time per stage (decode, detect/track, landmarks, crop, model, paste, encode).

The video is made from scikit-image's astronaut (public domain) scaled to 720 px high
(a face of ~120 px) on a 1280x720 canvas, panning with sensor noise, mp4v. Rows:
"reference" runs the plain-PyTorch model (backend="reference", BatchNorm unfolded);
"fast" the model as the CLI loads it (deepwarp_fast.accelerate: BN folded, fused
ops, backend="auto": the fastest kernels for the model's device). Both use one torch thread, as the CLI does, so that decoding
and encoding (in their own threads) get the other core. Parity first: one frame through
both must agree to within one 8-bit level. Run: ``pytest benchmarks/bench_pipeline.py -s``.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from conftest import DEVICE, RESULTS, device_name, make_face_clip, perturbed_model, run_timed

pytest.importorskip("dlib")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from deepwarp_fast.face import GazeRedirector, StageTimes  # noqa: E402
from deepwarp_fast.face.video import redirect_video  # noqa: E402

FRAMES = int(os.environ.get("DEEPWARP_BENCH_PIPELINE_FRAMES", "60"))
GROUP = f"pipeline 720p x{FRAMES} frames"
_checked = []


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "face720.mp4"
    make_face_clip(path, FRAMES)
    return path


@pytest.fixture(scope="module")
def models():
    # Nonzero heads: flows of a few pixels and a varying LCM mask, as after training.
    ref = perturbed_model(scale=0.15).eval()
    try:
        from deepwarp_fast.accelerate import accelerate

        fast = accelerate(copy.deepcopy(ref), backend="auto").eval()
    except ImportError:
        fast = copy.deepcopy(ref)
        fast.backend = "auto"
        fast = fast.fuse_bn()
    return {"reference": ref, "fast": fast}


@pytest.fixture(autouse=True)
def one_torch_thread():
    # as the CLI runs: one thread for torch and OpenCV in the pipeline, decode and encode beside
    n, m = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(n)
    cv2.setNumThreads(m)


def _check_parity(models, video):
    if _checked:
        return
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    outs = {}
    for name, m in models.items():
        res = GazeRedirector(m).redirect(frame, 10, -10, color="bgr")
        assert res.eyes_redirected == 2, f"{name}: the face was not found"
        outs[name] = res.image.astype(int)
    err = np.abs(outs["fast"] - outs["reference"]).max()
    assert err <= 1, f"pipeline parity: fast and reference differ by {err} levels; not timing a wrong pipeline"
    assert np.abs(outs["reference"] - frame.astype(int)).max() > 10, "the model changed nothing: parity is vacuous"
    _checked.append(True)


@pytest.mark.parametrize("backend", ["reference", "fast", "fast, patch paste"])
def test_pipeline_720p(benchmark, video, models, tmp_path, backend):
    """"reference" and "fast" use the default native paste; "fast, patch paste" the
    pipeline's former paste (the network's 51x41 output pasted back, no null correction)."""
    _check_parity(models, video)
    if backend == "fast, patch paste":
        gr = GazeRedirector(models["fast"], paste="patch")
    else:
        gr = GazeRedirector(models[backend])
    out = tmp_path / "out.mp4"
    summaries = []

    def run():
        summaries.append(redirect_video(gr, video, out, 10, -10, progress=False))

    row = run_timed(benchmark, run, group=GROUP, backend=backend)
    s = summaries[-1]
    assert s.frames == FRAMES and s.frames_without_face == 0
    if row is None:  # --benchmark-disable: the run and its parity were checked, nothing timed
        return
    fps = FRAMES / row["median_s"]
    benchmark.extra_info["fps"] = fps
    RESULTS[GROUP][backend]["fps"] = fps

    # Per stage, sequentially (no decode/encode threads), so each stage's time is its own.
    times = StageTimes()
    seq = redirect_video(gr, video, out, 10, -10, progress=False, threads=False, times=times)
    benchmark.extra_info["stages_ms_per_frame"] = {k: 1e3 * v / seq.frames for k, v in times.seconds.items()}
    print(f"\n[{backend}] {device_name()} (model on {DEVICE}), 1280x720, {FRAMES} frames: "
          f"{fps:.1f} fps end to end (threads), {seq.fps:.1f} fps sequential")
    print(times.report(seq.frames))
    if backend == "fast" and "reference" in RESULTS[GROUP]:
        ref = RESULTS[GROUP]["reference"]
        print(f"fast / reference: {ref['median_s'] / row['median_s']:.2f}x "
              f"({ref.get('fps', float('nan')):.1f} -> {fps:.1f} fps)")
