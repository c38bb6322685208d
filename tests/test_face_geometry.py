"""The face pipeline's geometry without a detector: crops, patches, pupil, paste, filters."""
import numpy as np
import pytest

from deepwarp_fast.config import DeepWarpConfig
from deepwarp_fast.face.eyes import EYE_POINTS, eye_aspect_ratio, eye_crop, extract_patch
from deepwarp_fast.face.paste import MASK_AX, MASK_AY, feather_mask, paste_patch
from deepwarp_fast.face.pupil import estimate_pupil
from deepwarp_fast.face.redirector import AngleRangeError, check_angles
from deepwarp_fast.face.tracking import OneEuroFilter, iou

CFG = DeepWarpConfig()
H, W = CFG.height, CFG.width


def fake_landmarks(rng, roll_deg=0.0, eye_w=30.0, centre=(200.0, 150.0)):
    """68 points whose eyes (36-47) are plausible open eyes; the rest are random."""
    lm = rng.uniform(50, 350, size=(68, 2))
    unit = np.array([[-0.5, 0.0], [-0.2, -0.15], [0.2, -0.15], [0.5, 0.0], [0.2, 0.15], [-0.2, 0.15]]) * eye_w
    t = np.deg2rad(roll_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.array(centre)
    for first, dx in ((36, -1.0), (42, 1.0)):
        lm[first:first + 6] = c + (unit + [dx * eye_w, 0.0]) @ R.T
    return lm.astype(np.float32)


@pytest.mark.parametrize("roll", [0.0, 17.0])
def test_crop_puts_corners_where_spec_says(roll):
    rng = np.random.default_rng(0)
    lm = fake_landmarks(rng, roll_deg=roll)
    half = W / (2 * CFG.crop_scale)  # corners sit R/2 from the centre: W/(2k) patch pixels
    for side in ("image_left", "image_right"):
        c = eye_crop(lm, side, W, H, CFG.crop_scale, level_roll=True)
        outer, inner = c.eyelid[0], c.eyelid[3]
        np.testing.assert_allclose(outer, [(W - 1) / 2 - half, (H - 1) / 2], atol=1e-4)
        np.testing.assert_allclose(inner, [(W - 1) / 2 + half, (H - 1) / 2], atol=1e-4)
        assert c.mirrored == (side == "image_right")
        # The upper lid is above (smaller v) the lower lid in both eyes, mirrored or not.
        assert c.eyelid[1, 1] < c.eyelid[5, 1] and c.eyelid[2, 1] < c.eyelid[4, 1]
        back = c.to_frame(c.eyelid)
        np.testing.assert_allclose(back, lm[list(EYE_POINTS[side])], atol=1e-3)


def test_mirrored_eye_order_is_45_44_43_42_47_46():
    rng = np.random.default_rng(1)
    lm = fake_landmarks(rng)
    c = eye_crop(lm, "image_right", W, H, CFG.crop_scale)
    np.testing.assert_allclose(c.to_patch(lm[[45, 44, 43, 42, 47, 46]]), c.eyelid, atol=1e-4)
    # Mirroring: the point farthest right in the image (45) lands farthest left in the patch.
    assert c.eyelid[0, 0] < c.eyelid[3, 0] and lm[45, 0] > lm[42, 0]


def test_without_level_roll_the_patch_keeps_the_roll():
    rng = np.random.default_rng(2)
    lm = fake_landmarks(rng, roll_deg=20.0)
    c = eye_crop(lm, "image_left", W, H, CFG.crop_scale, level_roll=False)
    d = c.eyelid[3] - c.eyelid[0]
    assert np.rad2deg(np.arctan2(d[1], d[0])) == pytest.approx(20.0, abs=1e-3)


def test_extract_patch_follows_the_affine_on_a_linear_ramp():
    # On an image linear in x and y, bilinear/bicubic sampling is exact: each patch
    # pixel must hold the ramp's value at its preimage.
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    img = np.stack([xx / 400, yy / 300, (xx + yy) / 700], axis=-1).astype(np.float32)
    rng = np.random.default_rng(3)
    lm = fake_landmarks(rng, roll_deg=10.0, eye_w=60.0)  # scale < 0.75: the supersampled path
    for eye_w in (60.0, 20.0):
        lm = fake_landmarks(rng, roll_deg=10.0, eye_w=eye_w)
        c = eye_crop(lm, "image_right", W, H, CFG.crop_scale)
        patch = extract_patch(img, c, W, H)
        vv, uu = np.mgrid[0:H, 0:W]
        pre = c.to_frame(np.stack([uu.ravel(), vv.ravel()], axis=1))
        expect = np.stack([pre[:, 0] / 400, pre[:, 1] / 300, (pre[:, 0] + pre[:, 1]) / 700], axis=1)
        np.testing.assert_allclose(patch.reshape(-1, 3), expect, atol=2e-3)


def test_feather_mask_is_one_inside_and_zero_at_the_border():
    m = feather_mask(H, W)
    assert m[(H - 1) // 2, (W - 1) // 2] == 1.0
    assert m[0].max() == 0 and m[-1].max() == 0 and m[:, 0].max() == 0 and m[:, -1].max() == 0
    assert 0 < m.mean() < 1


@pytest.mark.parametrize("dtype,maxval", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_paste_changes_only_the_mask_support(dtype, maxval):
    rng = np.random.default_rng(4)
    img = (rng.uniform(0, 1, size=(300, 400, 3)) * maxval).astype(dtype)
    lm = fake_landmarks(rng, roll_deg=8.0)
    c = eye_crop(lm, "image_right", W, H, CFG.crop_scale)
    before = img.copy()
    patch = rng.uniform(0, 1, size=(H, W, 3)).astype(np.float32)
    paste_patch(img, patch, c, maxval)
    changed = np.any(img != before, axis=-1)
    assert changed.any()
    # Every changed pixel maps inside the patch's mask support (the ellipse).
    ys, xs = np.nonzero(changed)
    uv = c.to_patch(np.stack([xs, ys], axis=1))
    ax, ay = MASK_AX * W / 2, MASK_AY * H / 2
    r = np.hypot((uv[:, 0] - (W - 1) / 2) / ax, (uv[:, 1] - (H - 1) / 2) / ay)
    # The mask is bilinearly interpolated: weight reaches at most one patch pixel
    # (diagonally) beyond the ellipse.
    assert r.max() < 1.0 + np.sqrt(2) / min(ax, ay)
    assert img.dtype == before.dtype


def test_paste_of_the_extracted_patch_nearly_restores_the_frame():
    rng = np.random.default_rng(5)
    import cv2

    img = cv2.GaussianBlur(rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8), (0, 0), 2.0)
    lm = fake_landmarks(rng, roll_deg=-12.0)
    c = eye_crop(lm, "image_left", W, H, CFG.crop_scale)
    out = img.copy()
    paste_patch(out, extract_patch(img, c, W, H).astype(np.float32) / 255, c, 255)
    diff = np.abs(out.astype(int) - img.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.05


def synthetic_eye(pupil_xy, rng):
    """A bright sclera inside the eyelid polygon, a dark iris disc at ``pupil_xy``, skin around."""
    import cv2

    img = np.full((H, W, 3), 0.75, np.float32) + rng.normal(0, 0.01, (H, W, 3)).astype(np.float32)
    lm = fake_landmarks(rng, eye_w=W / 2 / 0.5 / 2)  # eye width = W / crop_scale
    c = eye_crop(lm, "image_left", W, H, CFG.crop_scale)
    mask = np.zeros((H, W), np.uint8)
    cv2.fillPoly(mask, [np.round(c.eyelid).astype(np.int32)], 1)
    img[mask > 0] = 0.95
    yy, xx = np.mgrid[0:H, 0:W]
    iris = (xx - pupil_xy[0]) ** 2 + (yy - pupil_xy[1]) ** 2 <= 4.5 ** 2
    img[iris & (mask > 0)] = 0.2
    return np.clip(img, 0, 1), c.eyelid


@pytest.mark.parametrize("pupil", [(25.0, 20.0), (19.3, 20.6), (31.2, 19.4)])
def test_pupil_is_found_in_a_synthetic_eye(pupil):
    rng = np.random.default_rng(6)
    patch, eyelid = synthetic_eye(pupil, rng)
    found_xy, found = estimate_pupil(patch, eyelid)
    assert found
    assert np.hypot(*(found_xy - np.array(pupil))) < 1.0


def test_pupil_falls_back_to_the_mean_on_a_flat_or_closed_eye():
    rng = np.random.default_rng(7)
    patch, eyelid = synthetic_eye((25.0, 20.0), rng)
    flat = np.full_like(patch, 0.6)
    xy, found = estimate_pupil(flat, eyelid)
    assert not found and np.allclose(xy, eyelid.mean(0))
    closed = eyelid.copy()
    closed[[1, 2], 1] = closed[[5, 4], 1] = eyelid[0, 1]
    xy, found = estimate_pupil(patch, closed)
    assert not found and np.allclose(xy, closed.mean(0))
    assert eye_aspect_ratio(closed) == 0.0 and eye_aspect_ratio(eyelid) > 0.2


def test_one_euro_smooths_noise_at_rest_and_follows_motion():
    # Defaults (used by GazeStream), in units of the eye distance: dlib's jitter on a
    # still face is ~0.01 of it.
    rng = np.random.default_rng(8)
    f = OneEuroFilter()
    fps = 30.0
    noisy = rng.normal(0, 0.01, size=(300, 4))
    out = np.array([f(x, i / fps) for i, x in enumerate(noisy)])
    jitter = lambda a: np.abs(np.diff(a[30:], axis=0)).mean()
    assert jitter(out) < jitter(noisy) / 2.5
    # A steady ramp (1 unit per second): the filtered value lags by less than a frame.
    f.reset()
    ramp = np.array([f(np.array([i / fps]), i / fps)[0] for i in range(120)])
    lag_frames = (np.arange(120) / fps - ramp)[60:].mean() * fps
    assert 0 <= lag_frames < 1.0
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_angles_outside_the_trained_range_state_the_range():
    assert check_angles(30, -30, 30.0) == (30.0, -30.0)
    with pytest.raises(AngleRangeError, match=r"vertical=31 .*\[-30, 30\].*max_angle"):
        check_angles(31, 0, 30.0)
    with pytest.raises(AngleRangeError, match="horizontal=nan"):
        check_angles(0, float("nan"), 30.0)
    with pytest.raises(TypeError, match="horizontal must be a number"):
        check_angles(0, "left", 30.0)
