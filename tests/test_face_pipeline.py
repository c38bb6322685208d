"""The face pipeline on a real photo (scikit-image's astronaut) and on bad inputs."""
import warnings

import numpy as np
import pytest

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")

from deepwarp_fast.face import (AngleRangeError, FaceResult, GazeRedirector, NoDefaultWeightsWarning,  # noqa: E402
                                feather_mask)
from deepwarp_fast.face.toy import ShiftEyesModel  # noqa: E402
from deepwarp_fast.model import DeepWarp  # noqa: E402
from deepwarp_fast.weights import default_weights_path  # noqa: E402

# Where the astronaut's irises are (checked by eye on a 10x zoom of the photo).
IRIS_CENTRES = np.array([[203.0, 100.5], [246.0, 102.5]])


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="module")
def shift_gr():
    return GazeRedirector(ShiftEyesModel(px_per_degree=0.3))


@pytest.fixture(scope="module")
def identity_gr():
    # The real network, untrained: identity-initialised (zero flow, LCM ~off), BN folded.
    return GazeRedirector(DeepWarp(backend="reference").eval().fuse_bn())


@pytest.fixture(scope="module")
def base(shift_gr, astronaut):
    return shift_gr.redirect(astronaut, 0, 0, color="rgb")


def eye_support(result, shape):
    """Frame pixels any eye's paste can touch: where its feather weight is > 0 (SPEC.md
    "warp_frame"; the patch paste's bilinear mask has the same support)."""
    import torch

    from deepwarp_fast import ops

    A = [e.crop.A for f in result.faces for e in f.eyes if e.crop is not None]
    if not A:
        return np.zeros(shape[:2], bool)
    w = ops.warp_frame_weights(torch.from_numpy(np.stack(A)), torch.from_numpy(feather_mask(41, 51)), *shape[:2])
    return (w > 0).any(0).numpy()


def iris_centroid(img, centre, r=7):
    """Darkness-weighted centroid of the darkest pixels in a box around ``centre``."""
    x0, y0 = int(centre[0]) - r, int(centre[1]) - r
    g = img[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1].astype(np.float64).mean(-1)
    w = np.clip(np.percentile(g, 30) - g, 0, None)
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    return np.array([(w * xx).sum() / w.sum() + x0, (w * yy).sum() / w.sum() + y0])


def test_landmarks_and_pupils_land_on_the_eyes(base, astronaut):
    assert len(base.faces) == 1
    face = base.faces[0]
    assert face.landmarks.shape == (68, 2)
    x0, y0, x1, y1 = face.box
    assert x0 < IRIS_CENTRES[:, 0].min() < IRIS_CENTRES[:, 0].max() < x1 and y0 < IRIS_CENTRES[:, 1].min() < y1
    for eye, iris in zip(face.eyes, IRIS_CENTRES):
        assert eye.redirected and eye.pupil_found
        assert np.hypot(*(eye.pupil - iris)) < 2.5, (eye.side, eye.pupil)
        lo, hi = eye.corners.min(0), eye.corners.max(0)
        assert lo[0] < iris[0] < hi[0]
        # The pupil is dark (around the catchlight): darker than most of the eye's box.
        lum = astronaut.mean(-1)
        box = lum[int(lo[1]) - 4:int(hi[1]) + 5, int(lo[0]):int(hi[0]) + 1]
        px, py = np.round(eye.pupil).astype(int)
        assert lum[py - 2:py + 3, px - 2:px + 3].mean() < np.percentile(box, 35)


def test_pixels_outside_the_eye_regions_are_unchanged(shift_gr, astronaut, base):
    res = shift_gr.redirect(astronaut, 15, -15, color="rgb")
    changed = np.any(res.image != astronaut, axis=-1)
    assert changed.sum() > 50
    support = eye_support(res, astronaut.shape)
    assert not changed[~support].any()
    assert support.mean() < 0.02  # the eye regions are a small part of the photo
    assert res.image.dtype == astronaut.dtype and res.image.shape == astronaut.shape


def test_zero_angles_change_almost_nothing(identity_gr, shift_gr, astronaut):
    for gr in (identity_gr, shift_gr):
        res = gr.redirect(astronaut, 0, 0, color="rgb")
        assert res.eyes_redirected == 2
        diff = np.abs(res.image.astype(int) - astronaut.astype(int))
        support = eye_support(res, astronaut.shape)
        assert diff[support].mean() < 1.5 and diff.max() <= 20


@pytest.mark.parametrize("v,h,direction", [(0, 15, (1, 0)), (0, -15, (-1, 0)), (15, 0, (0, -1)), (-15, 0, (0, 1))])
def test_the_gaze_moves_the_way_the_angles_say(shift_gr, astronaut, v, h, direction):
    # Both eyes move the same way in the image: the mirrored eye's angle is negated
    # and its output mirrored back.
    res = shift_gr.redirect(astronaut, v, h, color="rgb")
    for iris in IRIS_CENTRES:
        move = iris_centroid(res.image, iris) - iris_centroid(astronaut, iris)
        assert np.dot(move, direction) > 1.0, move
        assert abs(np.dot(move, direction[::-1])) < 0.6 * np.dot(move, direction)


def test_bgr_input_gives_the_rgb_result_flipped(shift_gr, astronaut):
    rgb = shift_gr.redirect(astronaut, 10, 5, color="rgb").image
    bgr = shift_gr.redirect(np.ascontiguousarray(astronaut[..., ::-1]), 10, 5, color="bgr").image
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)


@pytest.mark.parametrize("kind", ["gray", "gray1", "rgba", "uint16", "float32"])
def test_image_formats_keep_shape_dtype_and_untouched_pixels(shift_gr, astronaut, kind):
    gray = (astronaut @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
    rng = np.random.default_rng(0)
    img = {
        "gray": gray,
        "gray1": gray[..., None],
        "rgba": np.concatenate([astronaut, rng.integers(0, 256, astronaut.shape[:2] + (1,), dtype=np.uint8)], -1),
        "uint16": astronaut.astype(np.uint16) * 257 + rng.integers(0, 257, astronaut.shape, dtype=np.uint16),
        "float32": astronaut.astype(np.float32) / 255,
    }[kind]
    res = shift_gr.redirect(img, 10, 10, color="rgb")
    assert res.image.shape == img.shape and res.image.dtype == img.dtype
    assert len(res.faces) == 1 and res.eyes_redirected == 2
    changed = res.image != img
    if changed.ndim == 3:
        changed = changed.any(-1)
    assert changed.any()
    assert not changed[~eye_support(res, img.shape)].any()
    if kind == "rgba":
        np.testing.assert_array_equal(res.image[..., 3], img[..., 3])


def test_no_face_returns_the_input_unchanged(shift_gr):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    res = shift_gr.redirect(img, 10, 0, color="rgb")
    assert res.faces == [] and res.image is not img
    np.testing.assert_array_equal(res.image, img)


def test_several_faces_are_all_redirected_in_one_batch(astronaut):
    calls = []

    def model(eyes, anchors, angles):
        calls.append(eyes.shape[0])
        return ShiftEyesModel()(eyes, anchors, angles)

    gr = GazeRedirector(model)
    crop = astronaut[40:260, 130:320]
    pair = np.concatenate([crop, crop[:, ::-1]], axis=1)
    res = gr.redirect(pair, 10, 10, color="rgb")
    assert len(res.faces) == 2 and res.eyes_redirected == 4
    assert calls == [4]


def test_tiny_faces_are_skipped_with_a_message(astronaut):
    import cv2

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    gr = GazeRedirector(ShiftEyesModel(), min_face=40, min_eye_px=10)
    res = gr.redirect(small, 10, 10, color="rgb")
    assert len(res.faces) == 1
    assert res.faces[0].skipped and "min_eye_px" in res.faces[0].skipped
    assert any("min_eye_px" in m for m in res.messages)
    np.testing.assert_array_equal(res.image, small)


def test_an_eye_cut_by_the_border_is_left_alone(shift_gr, astronaut, base):
    cut = np.ascontiguousarray(astronaut[:, :250])  # the image-right eye reaches x = 255
    res = shift_gr.redirect(cut, 10, 10, color="rgb", faces=base.faces)
    left, right = res.faces[0].eyes
    assert left.redirected and not right.redirected and right.skipped == "cut by the image border"
    assert any("border" in m for m in res.messages)
    assert not np.any(res.image != cut, axis=-1)[~eye_support(res, cut.shape)].any()


def test_a_closed_eye_is_left_alone(shift_gr, astronaut, base):
    lm = base.faces[0].landmarks.copy()
    lm[[37, 38], 1] = lm[[41, 40], 1] = (lm[36, 1] + lm[39, 1]) / 2  # shut the image-left eye
    face = FaceResult(base.faces[0].box, 1.0, lm)
    res = shift_gr.redirect(astronaut, 10, 10, color="rgb", faces=[face])
    left, right = res.faces[0].eyes
    assert left.skipped == "closed" and not left.redirected and right.redirected


def test_angles_outside_the_trained_range_are_refused(shift_gr, astronaut):
    with pytest.raises(AngleRangeError, match=r"\[-30, 30\]"):
        shift_gr.redirect(astronaut, 0, 45, color="rgb")


@pytest.mark.parametrize("img,color,err,match", [
    (np.zeros((64, 64, 3), np.int32), "rgb", TypeError, "dtype"),
    (np.zeros((64, 64, 2), np.uint8), "rgb", ValueError, "shape"),
    (np.full((64, 64, 3), 2.0, np.float32), "rgb", ValueError, r"\[0, 1\]"),
    (np.zeros((64, 64, 3), np.uint8), "hsv", ValueError, "color"),
    ("face.png", "rgb", TypeError, "numpy array"),
])
def test_bad_arrays_get_clear_errors(shift_gr, img, color, err, match):
    with pytest.raises(err, match=match):
        shift_gr.redirect(img, 0, 0, color=color)


def test_the_default_model_loads_or_warns_that_none_is_bundled(astronaut):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        gr = GazeRedirector(device="cpu")
    missing = [x for x in w if issubclass(x.category, NoDefaultWeightsWarning)]
    assert bool(missing) == (default_weights_path() is None)
    res = gr.redirect(astronaut, 5, 5, color="rgb")
    assert res.eyes_redirected == 2
