"""The native paste (GazeRedirector(paste="native"), the default): the network's fields
applied to the frame's own pixels. Issue targets on the bundled real faces (scikit-image's
astronaut, matplotlib's grace_hopper.jpg) with the shipped weights: sharpness >= 0.9 at
angle 0 and >= 0.85 at 15 degrees each way, change at angle 0 <= 0.5 of 255; an identity
model leaves every image kind unchanged bit for bit."""
import numpy as np
import pytest
import torch

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from deepwarp_fast.face import GazeRedirector  # noqa: E402
from deepwarp_fast.face.metrics import eye_box, mean_change, sharpness  # noqa: E402
from deepwarp_fast.face.toy import ShiftEyesModel  # noqa: E402
from deepwarp_fast.weights import default_weights_path  # noqa: E402


class ZeroFields(ShiftEyesModel):
    """Zero flow, zero LCM mask: the identity warp."""

    def fields(self, eyes, anchors, angles):
        B, _, H, W = eyes.shape
        return torch.zeros(B, 2, H, W), torch.zeros(B, 1, H, W)


def grace_hopper():
    import matplotlib.cbook as cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.array(Image.open(f).convert("RGB"))


PHOTOS = {"astronaut": skdata.astronaut, "grace_hopper": grace_hopper}


def eye_boxes(faces):
    return [eye_box(f.landmarks, side) for f in faces for side in ("image_left", "image_right")]


@pytest.fixture(scope="module")
def default_gr():
    if default_weights_path() is None:
        pytest.skip("no default weights bundled")
    return GazeRedirector()


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_default_weights_keep_the_eyes_sharp_and_angle_zero_unchanged(default_gr, name):
    img = PHOTOS[name]()
    base = default_gr.redirect(img, 0, 0)
    assert base.eyes_redirected >= 2
    boxes = eye_boxes(base.faces)
    assert sharpness(img, base.image, boxes) >= 0.9
    assert mean_change(img, base.image, boxes) <= 0.5
    for v, h in ((15, 0), (-15, 0), (0, 15), (0, -15)):
        out = default_gr.redirect(img, v, h, faces=base.faces).image
        assert mean_change(img, out, boxes) > 0.5, "the eyes must change at 15 degrees"
        assert sharpness(img, out, boxes) >= 0.85, (v, h)


def test_native_is_sharper_than_the_patch_paste(default_gr):
    img = grace_hopper()
    patch = GazeRedirector(default_gr.model, paste="patch")
    base = default_gr.redirect(img, 0, 0)
    boxes = eye_boxes(base.faces)
    native_out = default_gr.redirect(img, 15, 0, faces=base.faces).image
    patch_out = patch.redirect(img, 15, 0, faces=base.faces).image
    # (the metric's eye boxes hold the lids and skin around the eye, which neither paste changes)
    native_s, patch_s = sharpness(img, native_out, boxes), sharpness(img, patch_out, boxes)
    assert native_s >= 0.95 and patch_s < native_s - 0.15, (native_s, patch_s)


def test_the_native_paste_moves_the_iris_as_far_as_the_patch_paste():
    """Same fields (a geometric toy warp): the dark iris' centroid moves about as far."""
    img = skdata.astronaut()
    toy = ShiftEyesModel(px_per_degree=0.3)
    native, patch = GazeRedirector(toy, null_correction=False), GazeRedirector(toy, paste="patch")
    base = native.redirect(img, 0, 0)
    moves = {}
    for name, gr in (("native", native), ("patch", patch)):
        total = 0.0
        for v, h in ((15, 0), (-15, 0), (0, 15), (0, -15)):
            out = gr.redirect(img, v, h, faces=base.faces).image
            for x0, y0, x1, y1 in eye_boxes(base.faces):
                dark = lambda im: np.clip(110.0 - cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[y0:y1, x0:x1].astype(float), 0, None)  # noqa: E731
                yy, xx = np.mgrid[y0:y1, x0:x1]
                c = lambda d: np.array([(d * xx).sum(), (d * yy).sum()]) / d.sum()  # noqa: E731
                total += float(np.hypot(*(c(dark(out)) - c(dark(img)))))
        moves[name] = total
    assert moves["native"] >= 0.9 * moves["patch"] > 0, moves


@pytest.mark.parametrize("kind", ["rgb", "bgr", "rgba", "gray", "gray1", "uint16", "float32", "float64"])
def test_zero_fields_leave_every_image_kind_unchanged_bit_for_bit(kind):
    img = skdata.astronaut()
    color = "bgr" if kind == "bgr" else "rgb"
    if kind == "bgr":
        img = img[..., ::-1].copy()
    elif kind == "rgba":
        img = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])
    elif kind in ("gray", "gray1"):
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = img[..., None].copy() if kind == "gray1" else img
    elif kind == "uint16":
        img = img.astype(np.uint16) * 257 + 3
    elif kind.startswith("float"):
        img = (img / 255.0).astype(kind)
    for null_correction in (True, False):
        gr = GazeRedirector(ZeroFields(), null_correction=null_correction)
        res = gr.redirect(img, 10, -10, color=color)
        assert res.eyes_redirected == 2
        assert res.image.dtype == img.dtype and res.image.shape == img.shape
        assert np.array_equal(res.image, img)


def test_shift_model_changes_only_colour_channels_and_keeps_alpha():
    img = skdata.astronaut()
    alpha = np.random.default_rng(0).integers(0, 256, img.shape[:2], dtype=np.uint8)
    rgba = np.dstack([img, alpha])
    res = GazeRedirector(ShiftEyesModel(0.3)).redirect(rgba, 15, 0)
    assert np.array_equal(res.image[..., 3], alpha)
    assert not np.array_equal(res.image[..., :3], img)


def test_non_finite_fields_leave_the_eye_unchanged_with_a_message():
    class NaNFields(ShiftEyesModel):
        def fields(self, eyes, anchors, angles):
            flow, _ = super().fields(eyes, anchors, angles)
            flow[0] = float("nan")
            return flow, None

    img = skdata.astronaut()
    with pytest.warns(RuntimeWarning, match="not finite|NaN"):
        res = GazeRedirector(NaNFields(0.3)).redirect(img, 15, 0)
    assert res.eyes_redirected == 1
    assert any("NaN" in m for m in res.messages)
    bad = [e for f in res.faces for e in f.eyes if not e.redirected]
    assert len(bad) == 1 and "finite" in bad[0].skipped


def test_a_stream_reuses_each_eyes_angle_zero_fields_for_a_few_frames():
    """Null correction in a stream: the model sees 2E eyes on the first frame and every
    ``null_refresh`` frames after, E in between; frame for frame the output equals a
    stream that recomputes them every frame (the toy model's angle-0 fields are zero)."""
    img = np.ascontiguousarray(skdata.astronaut()[..., ::-1])
    toy = ShiftEyesModel(0.3)
    sizes = []
    original = toy.fields

    def counting(eyes, anchors, angles):
        sizes.append(eyes.shape[0])
        return original(eyes, anchors, angles)

    toy.fields = counting
    gr = GazeRedirector(toy)
    stream = gr.stream(12, -8, smooth=False, null_refresh=3)
    outs = [stream.process(img).image for _ in range(7)]
    assert sizes == [4, 2, 2, 4, 2, 2, 4]
    fresh = gr.stream(12, -8, smooth=False, null_refresh=1)
    assert all(np.array_equal(o, fresh.process(img).image) for o in outs)
    assert sizes[7:] == [4] * 7
    with pytest.raises(ValueError, match="refresh"):
        gr.stream(5, 0, null_refresh=0)


def test_an_eye_whose_blend_region_leaves_the_frame_is_redirected_with_a_message():
    img = skdata.astronaut()
    gr = GazeRedirector(ShiftEyesModel(0.3))
    base = gr.redirect(img, 0, 0)
    lm = base.faces[0].landmarks
    x_cut = int(np.ceil(lm[42:48, 0].max())) + 3  # every image-right eye point inside, its surroundings not
    cut = np.ascontiguousarray(img[:, :x_cut])
    res = gr.redirect(cut, 10, 10, faces=base.faces)
    assert res.eyes_redirected == 2
    assert sum("past the image border" in m for m in res.messages) == 1
    assert not any("past the image border" in m for m in gr.redirect(img, 10, 10, faces=base.faces).messages)


def _random_eyes(B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    eyes = torch.rand(B, 3, 41, 51, generator=g)
    anchors = torch.rand(B, 7, 2, generator=g) * torch.tensor([50.0, 40.0])
    angles = (torch.rand(B, 2, generator=g) - 0.5) * 40
    return eyes, anchors, angles


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_model_fields_are_the_forward_warp_without_applying_it(backend):
    """DeepWarp.fields equals the flow and LCM mask of forward(return_intermediates=True),
    and forward's output is lcm_blend(warp(eyes, flow), M), on every backend here."""
    from deepwarp_fast import ops
    from deepwarp_fast.backends import backend_status
    from deepwarp_fast.model import DeepWarp

    if not backend_status(backend, "cpu")[0]:
        pytest.skip(f"backend {backend} unavailable on the CPU here")
    torch.manual_seed(0)
    model = DeepWarp(backend=backend).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
        eyes, anchors, angles = _random_eyes()
        full = model(eyes, anchors, angles, return_intermediates=True)
        flow, mask = model.fields(eyes, anchors, angles)
    assert full.flow.abs().max() > 1.0, "the test needs a flow of more than a pixel"
    torch.testing.assert_close(flow, full.flow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mask, full.lcm_mask, atol=1e-6, rtol=1e-5)
    blended = ops.warp_reference(eyes, flow) * (1 - mask) + mask
    torch.testing.assert_close(blended, full.output, atol=1e-5, rtol=1e-5)


def test_accelerated_fields_match_the_reference_model():
    from deepwarp_fast import accelerate
    from deepwarp_fast.model import DeepWarp

    torch.manual_seed(1)
    model = DeepWarp().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
        eyes, anchors, angles = _random_eyes(seed=1)
        ref = model.fields(eyes, anchors, angles)
        got = accelerate(model).fields(eyes, anchors, angles)
    assert ref[0].abs().max() > 1.0
    torch.testing.assert_close(got[0], ref[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-4)
