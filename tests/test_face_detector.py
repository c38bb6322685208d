"""The face detectors: BlazeFace's port against the TFLite model's outputs, its anchors and
pyramid, recall and false alarms on the hard set (tests/face_hardset.py) against dlib's
HOG, boxes that the 68-point predictor can use, and the local search used in tracking."""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import face_hardset as hs  # noqa: E402

from deepwarp_fast.face import blazeface  # noqa: E402

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As the CLI runs (--torch-threads 1): on a busy 2-core machine OpenMP barriers make
    two threads several times slower than one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "blazeface_tflite_reference.npz")


def test_weights_ship_with_the_package_and_carry_their_licence():
    from safetensors import safe_open

    assert os.path.isfile(blazeface.WEIGHTS)
    with safe_open(blazeface.WEIGHTS, framework="pt") as f:
        meta = f.metadata()
    assert "Apache-2.0" in meta["license"] and "Google" in meta["license"]
    with open(os.path.join(os.path.dirname(blazeface.WEIGHTS), "LICENSE-blazeface.txt")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0" in text and "Google LLC" in text


def test_port_matches_the_tflite_model():
    """Outputs of MediaPipe's .tflite (run by LiteRT, saved in tests/data) on an upright
    and a rotated face: regressors in pixels, score logits."""
    ref = np.load(DATA)
    x = torch.from_numpy(ref["input"]).float().div(127.5).sub(1.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        reg, logits = blazeface.BlazeFace()(x)
    assert reg.shape == (2, 896, 16) and logits.shape == (2, 896)
    np.testing.assert_allclose(reg.numpy(), ref["regressors"], atol=2e-3, rtol=0)
    np.testing.assert_allclose(logits.numpy(), ref["classificators"], atol=2e-3, rtol=0)
    boxes, scores, kps = blazeface.weighted_nms(*blazeface.decode(reg[0].numpy(), logits[0].numpy()))
    assert len(boxes) == 1 and scores[0] > 0.9
    # the astronaut's face, resized from 512 to 128 px (dlib's box: 176..266 x 77..167 / 4)
    cx, cy = (boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2
    assert abs(cx - 221 / 4) < 4 and abs(cy - 122 / 4) < 5
    assert kps[0, 0, 0] < kps[0, 1, 0]  # the subject's right eye is on the image's left


# float32 rounding through ~40 layers: the ports differ by ~1e-6 of the output's scale
# (measured: 3e-5 to 8e-5 on regressors up to ~160 px and logits up to ~60)
NUMPY_RTOL = 1e-5


def test_numpy_port_matches_the_torch_port():
    """BlazeFaceNumpy (no torch) against BlazeFace on random inputs: RGB at 128x128, a
    grayscale frame of another size (fully convolutional), odd sizes (TFLite's "same"
    padding) and a batch; the caller's array is left alone."""
    from deepwarp_fast.face.blazeface_numpy import BlazeFaceNumpy

    net, ref = BlazeFaceNumpy(), blazeface.BlazeFace()
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 128, 128), (1, 1, 96, 160), (2, 1, 50, 67), (1, 3, 37, 53)]:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        x0 = x.copy()
        reg, logits = net(x)
        np.testing.assert_array_equal(x, x0)
        with torch.no_grad():
            treg, tlogits = (t.numpy() for t in ref(torch.from_numpy(x)))
        assert reg.dtype == logits.dtype == np.float32
        assert reg.shape == treg.shape and logits.shape == tlogits.shape == treg.shape[:2]
        np.testing.assert_allclose(reg, treg, atol=NUMPY_RTOL * np.abs(treg).max(), rtol=0, err_msg=str(shape))
        np.testing.assert_allclose(logits, tlogits, atol=NUMPY_RTOL * np.abs(tlogits).max(), rtol=0, err_msg=str(shape))


def test_fast_forward_matches_the_graph_op_by_op():
    """BlazeFace.forward (symmetric padding inside the convolutions, residual channel pads
    added in place, in-place adds and ReLUs, 1x1 convolutions as matrix products,
    channels-last throughout) against forward_reference (the TFLite graph op by op) on
    random inputs: RGB and grayscale, NCHW and channels-last, even and odd sizes (where
    TFLite's "same" padding is asymmetric), a batch; the input is left alone."""
    net = blazeface.BlazeFace().eval()
    rng = np.random.default_rng(1)
    calls = []
    real_addmm = torch.addmm

    def counting_addmm(*a, **k):
        calls.append(1)
        return real_addmm(*a, **k)

    for shape in [(1, 3, 128, 128), (1, 1, 96, 160), (2, 1, 50, 67), (1, 3, 37, 53), (1, 1, 81, 79)]:
        for channels_last in (False, True):
            x = torch.from_numpy(rng.uniform(-1, 1, shape).astype(np.float32))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x0 = x.clone()
            with torch.inference_mode():
                torch.addmm = counting_addmm
                try:
                    reg, logits = net(x)
                finally:
                    torch.addmm = real_addmm
                ref_reg, ref_logits = net.forward_reference(x)
            assert torch.equal(x, x0)
            assert reg.shape == ref_reg.shape and logits.shape == ref_logits.shape
            tol = NUMPY_RTOL * float(ref_reg.abs().max())
            assert float((reg - ref_reg).abs().max()) <= tol, (shape, channels_last)
            tol = NUMPY_RTOL * float(ref_logits.abs().max())
            assert float((logits - ref_logits).abs().max()) <= tol, (shape, channels_last)
    assert calls, "the 1x1 convolutions never took the matrix-product path"


def test_numpy_port_matches_the_tflite_model():
    from deepwarp_fast.face.blazeface_numpy import BlazeFaceNumpy

    ref = np.load(DATA)
    reg, logits = BlazeFaceNumpy()((ref["input"].astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(reg, ref["regressors"], atol=2e-3, rtol=0)
    np.testing.assert_allclose(logits, ref["classificators"], atol=2e-3, rtol=0)


def test_numpy_runtime_imports_no_torch():
    """The point of the numpy port: BlazeFaceNumpy, and FaceDetector(runtime="numpy")
    detecting a face, pull in no torch. (deepwarp_fast/__init__.py imports torch itself:
    the child skips it, as a lazy package __init__ would.)"""
    import importlib.util
    import subprocess

    root = os.path.dirname(os.path.dirname(blazeface.__file__))
    code = ("import sys, types, numpy as np\n"
            f"pkg = types.ModuleType('deepwarp_fast'); pkg.__path__ = [{root!r}]; sys.modules['deepwarp_fast'] = pkg\n"
            "from deepwarp_fast.face.blazeface_numpy import BlazeFaceNumpy\n"
            "BlazeFaceNumpy()(np.ones((1, 1, 32, 32), np.float32))\n")
    if importlib.util.find_spec("dlib") is not None:
        code += ("from deepwarp_fast.face.landmarks import FaceDetector\n"
                 "FaceDetector(runtime='numpy').detect(np.full((96, 128), 128, np.uint8))\n")
    code += "assert 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')][:5]\n"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_anchors_follow_the_input_size():
    a = blazeface.anchors()
    assert a.shape == (896, 2)
    np.testing.assert_allclose(a[0], [4, 4])
    np.testing.assert_allclose(a[-1], [120, 120])
    assert blazeface.anchors(96, 160).shape == ((12 * 20) * 2 + (6 * 10) * 6, 2)
    with torch.no_grad():
        reg, _ = blazeface.BlazeFace()(torch.zeros(1, 3, 96, 160))
    assert reg.shape[1] == len(blazeface.anchors(96, 160))


def test_weighted_nms_merges_overlaps_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    b, s, _ = blazeface.weighted_nms(boxes, np.array([0.9, 0.6, 0.7], np.float32), kps)
    assert len(b) == 2 and s[0] == pytest.approx(0.9) and s[1] == pytest.approx(0.7)
    np.testing.assert_allclose(b[0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5, rtol=1e-6)


# ----------------------------------------------------------------- FaceDetector
@pytest.fixture(scope="module")
def dlib_ok():
    pytest.importorskip("dlib")
    from deepwarp_fast.face.landmarks import FaceDetector, FaceModelsUnavailableError

    try:
        FaceDetector(detector="hog")
    except FaceModelsUnavailableError as e:
        pytest.skip(str(e))
    return FaceDetector


def test_detector_choice_and_defaults(dlib_ok):
    FaceDetector = dlib_ok
    assert FaceDetector().detector == "blazeface"
    assert FaceDetector(detector="hog").min_score == 0.3
    assert FaceDetector(detector="blazeface").min_score == 0.75
    assert FaceDetector(min_score=0.6).min_score == 0.6
    assert FaceDetector(min_score=0.3).min_score == 0.3  # a score given is a score used
    assert FaceDetector(min_score=None, detector="hog").min_score == 0.3
    with pytest.raises(ValueError, match="detector must be one of blazeface, hog"):
        FaceDetector(detector="haar")
    assert FaceDetector().runtime == "torch" and FaceDetector(runtime="numpy").runtime == "numpy"
    with pytest.raises(ValueError, match="runtime must be one of torch, numpy"):
        FaceDetector(runtime="onnx")


def test_pyramid_spans_min_face_to_the_short_side(dlib_ok):
    from deepwarp_fast.face import landmarks as lm

    for min_face, (H, W) in [(80, (720, 1280)), (48, (720, 1280)), (40, (360, 640)), (200, (480, 640))]:
        scales = dlib_ok(min_face=min_face).pyramid(H, W)
        assert scales[0] * H == pytest.approx(lm.BLAZE_FACE_HI)
        assert scales[-1] * min_face == pytest.approx(lm.BLAZE_FACE_LO) or len(scales) == 1
        assert all(b / a <= lm.BLAZE_LEVEL_RATIO + 1e-6 for a, b in zip(scales, scales[1:]))


@pytest.fixture(scope="module")
def hard_set():
    # small frames keep HOG (which enlarges the frame for small faces) to a few seconds
    frames = hs.face_frames(10, size=(512, 288), seed=3, sides=(36, 160))
    return frames, hs.faceless_frames(size=(512, 288))


def test_blazeface_beats_hog_on_the_hard_set(dlib_ok, hard_set):
    frames, faceless = hard_set
    hog = hs.evaluate(dlib_ok(detector="hog", min_face=32), frames, [])
    cnn = hs.evaluate(dlib_ok(detector="blazeface", min_face=32), frames, [])
    assert cnn["recall"] > hog["recall"], (cnn, hog)
    assert cnn["recall"] >= 0.85, cnn["missed"]
    assert cnn["false_alarms_on_face_frames"] == 0


def test_blazeface_finds_no_face_in_faceless_images(dlib_ok, hard_set):
    _, faceless = hard_set
    det = dlib_ok(detector="blazeface", min_face=32)
    found = {i: det.detect(g) for i, g in enumerate(faceless)}
    assert not any(found.values()), {hs.FACELESS[i]: f for i, f in found.items() if f}


def test_landmarks_on_blazeface_boxes_agree_with_hog_boxes(dlib_ok):
    """dlib's predictor was trained on HOG boxes: on the mapped BlazeFace box its eye
    corners stay within 5% of the eye distance of those on HOG's box."""
    hog, cnn = dlib_ok(detector="hog", min_face=60), dlib_ok(min_face=60)
    for name, img, _ in hs.sources():
        (hb, _), (cb, _) = hog.detect(img)[0], cnn.detect(img)[0]
        lh, lc = hog.landmarks(img, hb), cnn.landmarks(img, cb)
        corners = [36, 39, 42, 45]
        eye_dist = np.linalg.norm(lh[36:42].mean(0) - lh[42:48].mean(0))
        err = np.linalg.norm(lh[corners] - lc[corners], axis=1).max() / eye_dist
        assert err < 0.05, (name, hb, cb, err)


def test_numpy_runtime_finds_the_same_faces(dlib_ok):
    """FaceDetector(runtime="numpy") (no torch) against the torch runtime on the real
    photos, over the whole pyramid and the local search: the same boxes to 1 px, BlazeFace's
    keypoints to 0.5 px, the same 68 landmarks."""
    from deepwarp_fast.face.blazeface_numpy import decode, weighted_nms

    dets = {rt: dlib_ok(min_face=40, runtime=rt) for rt in ("torch", "numpy")}
    for name, img, _ in hs.sources():
        found = {rt: d.detect(img) for rt, d in dets.items()}
        assert len(found["numpy"]) == len(found["torch"]) >= 1, (name, found)
        for (bt, st), (bn, sn) in zip(found["torch"], found["numpy"]):
            assert np.abs(np.subtract(bt, bn)).max() <= 1 and abs(st - sn) < 1e-4, (name, bt, bn)
            assert abs(dets["torch"]._roll[bt] - dets["numpy"]._roll[bn]) < 0.1
            np.testing.assert_allclose(dets["numpy"].landmarks(img, bn), dets["torch"].landmarks(img, bt), atol=0.5)
        raw = {rt: d._blaze(img, d.pyramid(*img.shape), 0.5) for rt, d in dets.items()}
        assert len(raw["numpy"][0]) == len(raw["torch"][0])
        np.testing.assert_allclose(raw["numpy"][0], raw["torch"][0], atol=1.0)
        np.testing.assert_allclose(raw["numpy"][2], raw["torch"][2], atol=0.5)
        box = found["torch"][0][0]
        near = {rt: d.detect_near(img, box) for rt, d in dets.items()}
        assert np.abs(np.subtract(near["torch"][0], near["numpy"][0])).max() <= 1, (name, near)
    assert decode is blazeface.decode and weighted_nms is blazeface.weighted_nms  # one copy of the helpers


def test_detect_near_follows_a_moving_face(dlib_ok):
    det = dlib_ok(min_face=60)
    _, img, _ = hs.sources()[0]
    box, _ = det.detect(img)[0]
    moved = np.roll(img, (9, -14), axis=(0, 1))
    hit = det.detect_near(moved, box)
    assert hit is not None
    (x0, y0, x1, y1), score = hit
    assert abs((x0 - box[0]) - (-14)) <= 4 and abs((y0 - box[1]) - 9) <= 4 and score > 0.5
    assert det.detect_near(np.full_like(img, 128), box) is None


def test_landmarks_of_a_rolled_face_are_levelled_first(dlib_ok):
    """At 30 degrees of roll dlib's predictor drifts on a plain box (eye corners off by ~6%
    of the eye distance); levelled with BlazeFace's eye keypoints it stays near 2%."""
    import cv2

    det = dlib_ok(min_face=40)
    _, img, _ = hs.sources()[0]
    ref = dlib_ok(detector="hog", min_face=40)
    lm0 = ref.landmarks(img, ref.detect(img)[0][0])
    eye = np.linalg.norm(lm0[36:42].mean(0) - lm0[42:48].mean(0))
    corners = [36, 39, 42, 45]
    H, W = img.shape
    for angle in (30, -30):
        M = cv2.getRotationMatrix2D((W / 2, H / 2), angle, 1.0)
        g = cv2.warpAffine(img, M, (W, H), borderMode=cv2.BORDER_REFLECT)
        truth = (np.c_[lm0, np.ones(68)] @ M.T)[corners]
        box, _ = det.detect(g)[0]
        assert abs(abs(det._roll[box]) - 30) < 6
        err = np.linalg.norm(det.landmarks(g, box)[corners] - truth, axis=1).mean() / eye
        assert err < 0.035, (angle, err)
