"""Issue 12: the independent iris locator, the gain/sharpness/change measures, and
`deepwarp-fast evaluate --real` (on the bundled real photos, with a geometric
stand-in model whose displacement is known, and with the shipped weights)."""
import math

import numpy as np
import pytest
import torch

from deepwarp_fast.data import render_pairs
from deepwarp_fast.face.metrics import (EXPECTED_PER_SIN, eye_box, gain, locate_iris, mean_change, sharpness)


def _rendered_eyes(n, seed, camera):
    b = render_pairs(n, seed=seed, camera=camera, max_redirect=20.0, gaze_range=20.0)
    imgs = b["input"].permute(0, 2, 3, 1).numpy()
    return imgs, b["anchors"].numpy()


def _errors(imgs, anchors):
    errs, missed = [], 0
    for img, a in zip(imgs, anchors):
        p = locate_iris(img, a[:6])
        if p is None:
            missed += 1
        else:
            errs.append(float(np.hypot(*(np.asarray(p) - a[6]))))
    return np.array(errs), missed


def test_locate_iris_on_rendered_eyes_is_subpixel():
    # 41x51 rendered eyes whose true iris centre (the pupil anchor) is known
    imgs, anchors = _rendered_eyes(24, seed=3, camera=False)
    errs, missed = _errors(imgs, anchors)
    assert missed <= 2
    assert np.median(errs) <= 0.3, f"median error {np.median(errs):.3f} px"
    assert np.mean(errs <= 0.6) >= 0.75, np.round(errs, 2)


@pytest.mark.slow
def test_locate_iris_on_rendered_eyes_with_camera_effects():
    imgs, anchors = _rendered_eyes(48, seed=7, camera=True)
    errs, missed = _errors(imgs, anchors)
    assert missed <= 5
    assert np.median(errs) <= 0.3, f"median error {np.median(errs):.3f} px"


def test_locate_iris_moves_with_the_image():
    # a sub-pixel shift of a rendered eye (image and landmarks) moves the centre by as much
    import cv2

    imgs, anchors = _rendered_eyes(8, seed=11, camera=False)
    shift = np.array([1.4, -0.7])
    errs = []
    for img, a in zip(imgs, anchors):
        p0 = locate_iris(img, a[:6])
        M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        moved = cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        p1 = locate_iris(moved, a[:6] + shift)
        if p0 is not None and p1 is not None:
            errs.append(float(np.hypot(*(np.asarray(p1) - np.asarray(p0) - shift))))
    errs = np.array(errs)
    assert len(errs) >= 7
    assert np.median(errs) < 0.15 and np.mean(errs < 0.3) >= 0.75, np.round(errs, 2)


def test_gain_cross_sharpness_and_change_by_hand():
    eye = np.array([[10, 20], [14, 17], [20, 17], [24, 20], [20, 22], [14, 22]], dtype=float)  # 14 px wide
    p = np.array([17.0, 19.5])
    up15 = EXPECTED_PER_SIN * math.sin(math.radians(15)) * 14
    g, c = gain(p, p + [0.0, -up15], eye, 15.0, 0.0)
    assert g == pytest.approx(1.0) and c == pytest.approx(0.0, abs=1e-9)
    g, c = gain(p, p + [0.5 * up15, 0.0], eye, 0.0, -15.0)   # moved right when told left, half as far
    assert g == pytest.approx(-0.5) and c == pytest.approx(0.0, abs=1e-9)
    g, c = gain(p, p + [0.25 * up15, up15], eye, -15.0, 0.0)  # down as told, a quarter sideways
    assert g == pytest.approx(1.0) and c == pytest.approx(0.25)
    with pytest.raises(ValueError):
        gain(p, p, eye, 10.0, 10.0)
    rng = np.random.default_rng(0)
    img = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    box = (5, 5, 30, 30)
    assert sharpness(img, img, [box]) == pytest.approx(1.0)
    import cv2

    assert sharpness(img, cv2.GaussianBlur(img, (0, 0), 1.0), [box]) < 0.3
    out = img.copy()
    out[5:30, 5:30] = np.clip(out[5:30, 5:30].astype(int) + 0, 0, 255)
    assert mean_change(img, out, [box]) == 0.0
    out2 = img.astype(int)
    out2[5:30, 5:30] = 0
    assert mean_change(img, out2.astype(np.uint8), [box]) == pytest.approx(img[5:30, 5:30].mean())
    lm = np.zeros((68, 2))
    lm[36:42] = eye
    x0, y0, x1, y1 = eye_box(lm, "image_left", (30, 30))
    assert (x0, y0) == (5, 8) and (x1, y1) == (30, 30)


# ----------------------------------------------------------------------------- real photos
# Iris centres checked by eye on 10-20x zooms (the astronaut's agree with
# tests/test_face_pipeline.py); Grace Hopper's eyes are dark and shadowed, the
# limbus barely shows, so her positions are known less well.
HAND = {
    "astronaut": ({"image_left": (203.0, 100.5), "image_right": (246.0, 102.7)}, 1.0),
    "grace_hopper": ({"image_left": (221.0, 189.0), "image_right": (305.5, 186.3)}, 1.6),
}


@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("dlib")  # only these tests need the face pipeline
    from deepwarp_fast.evaluate_real import bundled_photos

    ph = dict(bundled_photos())
    if "astronaut" not in ph:
        pytest.skip("scikit-image's astronaut is not installed")
    return ph


def test_locate_iris_on_the_real_photos_matches_hand_checked_positions(photos):
    import cv2

    from deepwarp_fast.face.landmarks import FaceDetector
    from deepwarp_fast.face.metrics import eye_points

    det = FaceDetector()
    for name, (centres, tol) in HAND.items():
        if name not in photos:
            continue
        img = photos[name]
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        box, _ = det.detect(gray)[0]
        lm = det.landmarks(gray, box)
        for side, xy in centres.items():
            p = locate_iris(img, eye_points(lm, side))
            assert p is not None, (name, side)
            assert np.hypot(*(np.asarray(p) - xy)) <= tol, (name, side, p, xy)


def test_evaluate_real_measures_a_known_displacement(photos):
    # A stand-in model that moves the content around the pupil by a known amount:
    # 0.42 sin(15 deg) eye widths at 15 degrees (51 patch px span 2 eye widths), so the
    # gain must come out near 1 (a little less: the shift fades away from the pupil, and
    # downwards the lower lid hides part of the iris from the locator).
    from deepwarp_fast.evaluate_real import evaluate_photo, summarize_real
    from deepwarp_fast.face import GazeRedirector
    from deepwarp_fast.face.toy import ShiftEyesModel

    # The astronaut at twice its size (eyes 34 px wide): on its 17 px eyes the locator's own
    # per-eye error on the other axis reaches 0.7 of the expected move (one eye, either paste),
    # which says nothing about the evaluator's arithmetic that this test checks.
    import cv2

    big = cv2.resize(photos["astronaut"], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    px_per_deg = EXPECTED_PER_SIN * math.sin(math.radians(15)) * 25.5 / 15.0
    r = evaluate_photo(GazeRedirector(ShiftEyesModel(px_per_degree=px_per_deg, radius=12.0)), "astronaut x2", big,
                       angles=(15.0,))
    s = summarize_real([r], angles=(15.0,))
    for row in s["table"]:
        assert row["gain"] is not None and 0.6 <= row["gain"] <= 1.15, row
        assert abs(row["cross"]) < 0.3, row
    assert s["change0"] < 0.5
    # and a model that changes nothing has no gain
    from deepwarp_fast.model import DeepWarp

    r0 = evaluate_photo(GazeRedirector(DeepWarp(backend="reference").eval().fuse_bn()), "astronaut", photos["astronaut"],
                        angles=(15.0,))
    s0 = summarize_real([r0], angles=(15.0,))
    for row in s0["table"]:
        assert abs(row["gain"]) < 0.3, row  # the noise floor: ~0.4 px on a 17 px eye


def test_track_iris_follows_a_known_shift_of_the_real_photos(photos):
    """The tracked iris moves exactly as far as the image does (sub-pixel shifts of the whole
    photo), where the limbus fit in each image on its own errs by up to ~1 px."""
    import cv2

    from deepwarp_fast.face.landmarks import FaceDetector
    from deepwarp_fast.face.metrics import eye_points, track_iris

    det = FaceDetector()
    for name in HAND:
        img = photos[name]
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        box, _ = det.detect(gray)[0]
        lm = det.landmarks(gray, box)
        for side in ("image_left", "image_right"):
            eye6 = eye_points(lm, side)
            c, r = locate_iris(img, eye6, return_radius=True)
            assert track_iris(img, img, c, r, eye6) == pytest.approx(tuple(c), abs=1e-3)
            for shift in ((0.7, -1.3), (-2.2, 0.4), (0.0, 2.6)):
                M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
                moved = cv2.warpAffine(img, M, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                                       borderMode=cv2.BORDER_REPLICATE)
                p = track_iris(img, moved, c, r, eye6)
                assert p is not None, (name, side, shift)
                err = np.hypot(*(np.subtract(p, c) - shift))
                assert err <= 0.12, (name, side, shift, np.subtract(p, c))


def test_track_iris_measures_the_true_move_of_rendered_eyes():
    """Rendered pairs (anatomical eyeball, camera effects): the iris turns, the lids follow
    the gaze and hide part of it, and the true target position is known. The tracked move
    is within 0.3 px (median) of the truth, and not biased up or down."""
    from deepwarp_fast.face.metrics import track_iris

    b = render_pairs(32, seed=9, camera=True, max_redirect=25.0, gaze_range=15.0, anatomy="anatomical")
    X, Y = b["input"].permute(0, 2, 3, 1).numpy(), b["target"].permute(0, 2, 3, 1).numpy()
    A, TA = b["anchors"].numpy(), b["target_anchors"].numpy()
    errs, ratios, missed = [], [], 0
    for x, y, a, ta in zip(X, Y, A, TA):
        found = locate_iris(x, a[:6], return_radius=True)
        if found is None:
            continue
        c, r = found
        p = track_iris(x, y, c, r, a[:6])
        if p is None:
            missed += 1
            continue
        true = ta[6] - a[6]
        moved = np.subtract(p, c)
        errs.append(float(np.hypot(*(moved - true))))
        if abs(true[1]) > 1.0:
            ratios.append(moved[1] / true[1])
    assert len(errs) >= 28 and missed <= 2
    assert np.median(errs) <= 0.3, np.round(errs, 2)
    assert np.percentile(errs, 90) <= 1.0, np.round(errs, 2)
    assert len(ratios) >= 10 and 0.9 <= np.median(ratios) <= 1.1, np.round(ratios, 2)


def test_evaluate_real_reads_a_rigid_move_of_the_eyes_exactly(photos):
    """A stand-in model that shifts each eye patch rigidly by the anatomical distance: the
    tracked gain is 1 on every face and direction (the limbus fit in each output on its own
    reads 0.7-1.6 here; it is kept in the JSON as gain_fit)."""
    from deepwarp_fast.evaluate_real import evaluate_photo, summarize_real
    from deepwarp_fast.face import GazeRedirector
    from deepwarp_fast.face.toy import ShiftEyesModel

    px_per_deg = EXPECTED_PER_SIN * math.sin(math.radians(15)) * 25.5 / 15.0
    gr = GazeRedirector(ShiftEyesModel(px_per_degree=px_per_deg, radius=math.inf))
    s = summarize_real([evaluate_photo(gr, n, photos[n], angles=(15.0,)) for n in HAND], angles=(15.0,))
    for row in s["table"]:
        assert all(g is not None and 0.95 <= g <= 1.05 for g in row["per_face_gain"]), row
        assert row["abs_cross"] < 0.05, row
    assert s["targets"]["cross_below_quarter"]


@pytest.mark.slow
def test_evaluate_real_cli_writes_json_and_sweep(tmp_path, photos):
    import json

    from PIL import Image

    from deepwarp_fast.cli import main

    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).save(folder / "astronaut.png")
    rc = main(["evaluate", "--real", str(folder), "--angles", "15", "-o", str(tmp_path / "out")])
    assert rc == 0
    s = json.loads((tmp_path / "out" / "real_summary.json").read_text())
    assert s["n_faces"] == 1 and len(s["table"]) == 4
    assert (tmp_path / "out" / "real_sweep.png").stat().st_size > 1000


def test_augmented_photos_are_mirrored_and_rescaled_copies():
    from deepwarp_fast.evaluate_real import AUGMENTS, augmented

    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = augmented([("a", img)])
    assert [n for n, _ in out] == ["a"] + [f"a_{tag}" for tag, _, _ in AUGMENTS]
    by = dict(out)
    assert by["a"] is img
    np.testing.assert_array_equal(by["a_mirror"], img[:, ::-1])
    assert by["a_x1.6"].shape == (96, 128, 3) and by["a_x0.8"].shape == (48, 64, 3)
    assert by["a_mirror_x1.6"].shape == (96, 128, 3)
    # the mirrored enlargement is the enlargement mirrored
    assert np.abs(by["a_mirror_x1.6"].astype(int) - by["a_x1.6"][:, ::-1].astype(int)).max() <= 1


@pytest.fixture(scope="module")
def shipped_real_summary(photos):
    from deepwarp_fast.evaluate_real import run_real_evaluation

    return run_real_evaluation()


@pytest.mark.slow
def test_shipped_weights_reach_the_real_face_cross_target(shipped_real_summary):
    """Issue 12: on the bundled faces, at 15 and 25 degrees, the median |movement on the
    other axis| stays below a quarter of the commanded movement."""
    s = shipped_real_summary
    assert s["targets"]["cross_below_quarter"], [(t["direction"], t["angle_deg"], t["abs_cross"]) for t in s["table"]]


@pytest.mark.slow
def test_shipped_weights_reach_the_real_face_gain_targets(shipped_real_summary):
    """Issue 12: on each bundled face, up, down, left and right at 15 and 25 degrees, the
    iris (tracked from the input into the output) moves 0.8-1.2 of the anatomical 0.42
    sin(angle) eye widths."""
    s = shipped_real_summary
    assert s["targets"]["gain_0.8_to_1.2_at_15_and_25"], [(t["direction"], t["angle_deg"], t["per_face_gain"])
                                                          for t in s["table"]]
