"""The procedural eye-pair renderer: contract, determinism, geometry against the pixels,
SPEC.md sign conventions, the pair's shared content, camera effects, the stream."""
import pytest
import torch
import torch.nn.functional as F

from deepwarp_fast.data import HARD_TILT, SyntheticPairs, mirror_sample, render_pairs
from deepwarp_fast.data.camera import gaussian_blur, jpeg_roundtrip


def sample_at(maps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear values of maps (N, H, W) at points xy (N, K, 2) (patch pixels) -> (N, K)."""
    N, H, W = maps.shape
    g = torch.stack([2 * xy[..., 0] / (W - 1) - 1, 2 * xy[..., 1] / (H - 1) - 1], -1).unsqueeze(1)
    return F.grid_sample(maps.unsqueeze(1), g, mode="bilinear", padding_mode="border", align_corners=True)[:, 0, 0]


@pytest.fixture(scope="module")
def clean():
    """Pairs without camera effects, with the renderer's masks."""
    return render_pairs(96, 11, camera=False, return_layers=True)


def test_contract_shapes_ranges():
    r = render_pairs(10, 3, height=37, width=45)
    assert r["input"].shape == (10, 3, 37, 45) and r["target"].shape == (10, 3, 37, 45)
    assert r["anchors"].shape == (10, 7, 2) and r["angles"].shape == (10, 2) and r["tilt"].shape == (10,)
    for k in ("input", "target", "anchors", "angles", "tilt"):
        assert r[k].dtype == torch.float32
        assert torch.isfinite(r[k]).all()
    assert r["input"].min() >= 0 and r["input"].max() <= 1
    assert torch.allclose(r["angles"], r["target_gaze"] - r["input_gaze"], atol=1e-5)
    assert r["input_gaze"].abs().max() <= 30 + 1e-4 and r["target_gaze"].abs().max() <= 30 + 1e-4
    # anchors inside the patch, the outer corner left of the inner one (canonical eye)
    a = r["anchors"]
    assert (a[..., 0] > 0).all() and (a[..., 0] < 44).all() and (a[..., 1] > 0).all() and (a[..., 1] < 36).all()
    assert (a[:, 0, 0] < a[:, 3, 0]).all()


def test_crop_geometry_matches_face_pipeline():
    """Corner distance ~ width / crop_scale, corners' midpoint ~ patch centre (jittered)."""
    r = render_pairs(400, 5, camera=False)
    a = r["anchors"]
    dist = (a[:, 3] - a[:, 0]).norm(dim=-1)
    mid = (a[:, 3] + a[:, 0]) / 2
    assert abs(dist.mean().item() - 51 / 2.0) < 1.0
    assert 0.02 < dist.std().item() / 25.5 < 0.15          # jittered like landmark noise
    assert (mid.mean(0) - torch.tensor([25.0, 20.0])).abs().max() < 0.4      # centred on average
    assert (mid - torch.tensor([25.0, 20.0])).abs().mean(0).max() < 2.5
    # the tilt is the roll of the outer -> inner corner line
    tilt = torch.rad2deg(torch.atan2(a[:, 3, 1] - a[:, 0, 1], a[:, 3, 0] - a[:, 0, 0]))
    assert torch.allclose(tilt, r["tilt"], atol=1e-3)


def test_same_seed_same_pixels_other_seed_differs():
    a = render_pairs(40, 123)
    b = render_pairs(40, 123)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c = render_pairs(40, 124)
    assert not torch.equal(a["input"], c["input"])


def test_explicit_angles_and_tilt():
    ang = torch.tensor([[20.0, -10.0], [-30.0, 30.0], [0.0, 0.0], [60.0, 0.0]])
    r = render_pairs(4, 0, angles=ang, tilt=torch.tensor([0.0, 12.0, -15.0, 3.0]))
    assert torch.allclose(r["angles"], ang, atol=1e-5)
    assert torch.allclose(r["tilt"], torch.tensor([0.0, 12.0, -15.0, 3.0]))
    assert r["input_gaze"].abs().max() <= 30 + 1e-4 and r["target_gaze"].abs().max() <= 30 + 1e-4
    r = render_pairs(3, 0, angles=[10.0, 5.0], tilt=9.0)     # broadcast forms
    assert torch.allclose(r["angles"], torch.tensor([[10.0, 5.0]] * 3))
    assert (r["tilt"] == 9.0).all()


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="angles"):
        render_pairs(2, 0, angles=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="angles"):
        render_pairs(1, 0, angles=[[70.0, 0.0]])              # beyond 2 x gaze_range
    with pytest.raises(ValueError, match="tilt"):
        render_pairs(2, 0, tilt=torch.zeros(5))
    with pytest.raises(TypeError, match="unknown option"):
        render_pairs(2, 0, sparkle=True)
    with pytest.raises(ValueError, match="n must be"):
        render_pairs(0, 0)
    with pytest.raises(ValueError, match="hard_fraction"):
        render_pairs(2, 0, hard_fraction=1.5)


def test_hard_fraction_controls_tilt():
    hard = render_pairs(64, 1, hard_fraction=1.0, camera=False)["tilt"].abs()
    easy = render_pairs(64, 1, hard_fraction=0.0, camera=False)["tilt"].abs()
    assert (hard > HARD_TILT).all() and (easy <= HARD_TILT).all()
    mixed = render_pairs(400, 2, hard_fraction=0.25, camera=False)["tilt"].abs()
    assert 0.15 < (mixed > HARD_TILT).float().mean().item() < 0.35


def test_pupil_anchor_inside_the_dark_pupil(clean):
    """Where the pupil is visible (not under a lid), the pupil anchor lies in the rendered
    pupil and is darker than the rest of the eye opening."""
    for key, anc in (("input", clean["anchors"]), ("target", clean["target_anchors"])):
        j = 0 if key == "input" else 1
        pupil, opening = clean["pupil"][:, j], clean["opening"][:, j]
        at = anc[:, 6]
        vis = sample_at(opening, at[:, None])[:, 0] > 0.95
        # a pupil of at least ~2 px across, well inside the opening
        big = pupil.sum((1, 2)) > 3.0
        sel = vis & big
        assert sel.sum() > 30
        inside = sample_at(pupil[sel], at[sel][:, None])[:, 0]
        assert (inside > 0.5).float().mean() > 0.97, inside.min()
        lum = clean[key][sel].mean(1)
        val = sample_at(lum, at[sel][:, None])[:, 0]
        op = opening[sel]
        mean_open = (lum * op).sum((1, 2)) / op.sum((1, 2))
        assert (val < mean_open).float().mean() > 0.97


def test_pupil_anchor_is_the_pupil_mask_centroid(clean):
    """The anchor formula agrees with the drawn pupil (centroid of fully visible pupils)."""
    pupil, opening = clean["pupil"][:, 0], clean["opening"][:, 0]
    H, W = pupil.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    m = pupil
    mass = m.sum((1, 2))
    cx = (m * xs).sum((1, 2)) / mass.clamp(min=1e-6)
    cy = (m * ys).sum((1, 2)) / mass.clamp(min=1e-6)
    at = clean["anchors"][:, 6]
    # fully visible: the pupil mask equals the unoccluded disc area (opening ~1 around it)
    vis = sample_at(opening, at[:, None] + torch.tensor([[[0.0, -3.0], [0.0, 3.0], [-3.0, 0.0], [3.0, 0.0]]]))
    sel = (vis.min(1).values > 0.99) & (mass > 3.0)
    assert sel.sum() > 10
    err = torch.stack([cx - at[:, 0], cy - at[:, 1]], 1)[sel].norm(dim=1)
    assert err.max() < 0.35, err.max()


def test_lid_anchors_on_the_lid_curves(clean):
    """Upper-lid points: outside the opening just above, inside just below; lower-lid
    points the other way round; the corners are where the lids meet (closed)."""
    op = clean["opening"][:, 0]
    a = clean["anchors"]
    up = a[:, 1:3]
    lo = a[:, 4:6]
    gap = (lo.flip(1) - up).norm(dim=-1).min(1).values          # opening height at the lid points
    sel = gap > 4.0
    assert sel.sum() > 30
    d = torch.tensor([0.0, 1.5])
    above, below = sample_at(op[sel], up[sel] - d), sample_at(op[sel], up[sel] + d)
    assert (above < 0.3).float().mean() > 0.97 and (below > 0.7).float().mean() > 0.97
    above, below = sample_at(op[sel], lo[sel] - d), sample_at(op[sel], lo[sel] + d)
    assert (above > 0.7).float().mean() > 0.97 and (below < 0.3).float().mean() > 0.97
    corners = sample_at(op, a[:, [0, 3]])
    assert (corners < 0.5).all()
    # between the corners (on their line) the eye is open
    mid = sample_at(op, ((a[:, 0] + a[:, 3]) / 2)[:, None])[:, 0]
    assert (mid > 0.5).float().mean() > 0.9


def test_pair_differs_only_in_the_eye_region(clean):
    region = torch.maximum(clean["eye_region"][:, 0], clean["eye_region"][:, 1])
    diff = (clean["input"] - clean["target"]).abs().amax(1)
    outside = region == 0
    assert outside.float().mean() > 0.4
    assert diff[outside].max() == 0
    moved = clean["angles"].abs().max(1).values > 5
    assert (diff[moved].amax((1, 2)) > 0.05).all()


def test_pair_shares_camera_effects():
    """With blur/noise/JPEG on, the two images are identical outside the eye region grown
    by what the camera spreads: the blur's radius (2 px), then the JPEG blocks (16 x 16
    with 4:2:0 chroma) and the chroma's bilinear upsampling (2 px)."""
    r = render_pairs(24, 4, return_layers=True)
    region = (torch.maximum(r["eye_region"][:, 0], r["eye_region"][:, 1]) > 0).float().unsqueeze(1)
    H, W = region.shape[-2:]
    m = F.max_pool2d(region, 5, stride=1, padding=2)
    m = F.max_pool2d(F.pad(m, (0, (-W) % 16, 0, (-H) % 16)), 16)
    m = F.interpolate(m, scale_factor=16, mode="nearest")[..., :H, :W]
    grown = F.max_pool2d(m, 5, stride=1, padding=2)[:, 0] > 0
    assert grown.float().mean() < 0.9
    diff = (r["input"] - r["target"]).abs().amax(1)
    assert diff[~grown].max() == 0


def test_sign_convention_moves_the_drawn_pupil():
    """SPEC.md: vertical > 0 puts the pupil higher (smaller y) in the target, horizontal > 0
    further right (larger x), in the anchors and in the pixels (the pupil mask's centroid)."""
    n = 16
    for ang, axis, sign in (([15.0, 0.0], 1, -1.0), ([-15.0, 0.0], 1, 1.0), ([0.0, 20.0], 0, 1.0), ([0.0, -20.0], 0, -1.0)):
        r = render_pairs(n, 7, angles=ang, tilt=0.0, camera=False, return_layers=True, gaze_range=15.0)
        move = (r["target_anchors"][:, 6] - r["anchors"][:, 6])[:, axis] * sign
        assert (move > 0.5).all(), (ang, move)
        H, W = r["pupil"].shape[-2:]
        coord = torch.arange(H if axis == 1 else W, dtype=torch.float32)
        m = r["iris"]  # the iris is larger than the pupil: a steadier centroid under the lids
        prof = m.sum(2 + axis)                                    # (n, 2, L)
        c = (prof * coord).sum(-1) / prof.sum(-1).clamp(min=1e-6)
        assert ((c[:, 1] - c[:, 0]) * sign > 0.3).float().mean() > 0.9, (ang, c[:, 1] - c[:, 0])


def test_upper_lid_follows_vertical_gaze():
    up = render_pairs(16, 9, angles=[40.0, 0.0], tilt=0.0, camera=False)     # from about -20 to +20
    lid_in, lid_tg = up["anchors"][:, 1:3, 1].mean(1), up["target_anchors"][:, 1:3, 1].mean(1)
    assert (lid_tg < lid_in - 0.5).all()     # looking up raises the upper lid (smaller y)


def test_camera_effects():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 41, 51, generator=g)
    smooth = F.avg_pool2d(img, 5, stride=1, padding=2, count_include_pad=False)
    q95 = jpeg_roundtrip(smooth, torch.full((4,), 95.0))
    q20 = jpeg_roundtrip(smooth, torch.full((4,), 20.0))
    e95, e20 = (q95 - smooth).abs().mean(), (q20 - smooth).abs().mean()
    assert e95 < 0.02 < e20 < 0.2 and e95 < e20
    assert torch.equal(jpeg_roundtrip(img, torch.zeros(4)), img)  # quality 0: off
    const = torch.full((2, 3, 9, 11), 0.3)
    assert torch.allclose(gaussian_blur(const, torch.tensor([0.5, 1.0])), const, atol=1e-6)
    b = gaussian_blur(img, torch.full((4,), 0.9))
    assert b.std() < img.std() * 0.8


def test_mirror_sample_round_trip_and_order():
    r = render_pairs(6, 2)
    m = mirror_sample(r)
    assert torch.equal(m["input"], r["input"].flip(-1))
    # a mirrored canonical eye is an image-right eye in dlib 42..47 order: 42 (the inner
    # corner, mirrored) comes first and lies left of 45 (the outer corner)
    assert (m["anchors"][:, 0, 0] < m["anchors"][:, 3, 0]).all()
    assert torch.allclose(m["anchors"][:, 0, 0], 50 - r["anchors"][:, 3, 0])
    assert torch.allclose(m["angles"][:, 1], -r["angles"][:, 1]) and torch.equal(m["angles"][:, 0], r["angles"][:, 0])
    back = mirror_sample(m)
    for k in ("input", "target", "anchors", "angles", "tilt"):
        assert torch.allclose(back[k], r[k]), k


def test_synthetic_pairs_stream_and_heldout():
    tr = SyntheticPairs(seed=5, batch_size=4, num_batches=3)
    ho = SyntheticPairs(seed=5, batch_size=4, split="heldout", num_batches=2)
    a, b = list(tr), list(ho)
    assert len(a) == 3 and len(b) == 2 and len(ho) == 2
    assert a[0]["input"].shape == (4, 3, 41, 51)
    assert torch.equal(list(ho)[1]["input"], b[1]["input"])          # fixed held-out set
    for x in a:
        for y in b:
            assert not torch.equal(x["input"], y["input"])            # disjoint seeds
    endless = iter(SyntheticPairs(seed=5, batch_size=2))
    for _ in range(4):
        next(endless)
    with pytest.raises(TypeError):
        len(SyntheticPairs(seed=5, batch_size=2))
    with pytest.raises(ValueError, match="split"):
        SyntheticPairs(seed=0, batch_size=2, split="test")


def test_synthetic_pairs_sampler():
    def sampler(gen, n):
        ang = torch.zeros(n, 2)
        ang[:, 0] = torch.randint(-3, 4, (n,), generator=gen).float() * 5
        return ang, torch.full((n,), 10.0)
    b = next(iter(SyntheticPairs(seed=1, batch_size=8, sampler=sampler, num_batches=1)))
    assert (b["angles"][:, 1] == 0).all() and (b["angles"][:, 0].remainder(5) == 0).all()
    assert (b["tilt"] == 10.0).all()


def test_preview_command(tmp_path):
    from PIL import Image

    from deepwarp_fast.cli import main

    out = tmp_path / "sheet.png"
    assert main(["synth", "--preview", str(out), "-n", "6", "--cols", "3", "--scale", "2"]) == 0
    im = Image.open(out)
    assert im.size[0] > 3 * 2 * 51 * 2 and im.size[1] > 2 * 41 * 2
    assert main(["synth"]) == 2
    assert main(["synth", "--preview", str(out), "-n", "0"]) == 2


def test_threads_do_not_change_pixels_and_restore_torch_threads():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = render_pairs(70, 21, chunk=16)                  # default: 1, ops use 2 intra-op threads
        b = render_pairs(70, 21, chunk=16, threads=3)       # more Python threads than cores, 5 chunks
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        c = render_pairs(70, 21, chunk=16, threads=2)
        assert torch.get_num_threads() == 1
        for k in a:
            assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    finally:
        torch.set_num_threads(old)
    with pytest.raises(ValueError, match="threads"):
        render_pairs(2, 0, threads=0)


def test_blur_matches_2d_convolution_and_identity():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(3, 3, 13, 17, generator=g)
    sig = torch.tensor([0.5, 0.9, 1.4])
    out = gaussian_blur(img, sig)
    x = torch.arange(-2, 3, dtype=torch.float32)
    for i in range(3):
        k = torch.exp(-0.5 * (x / sig[i]) ** 2)
        k = k / k.sum()
        pad = F.pad(img[i:i + 1], (2, 2, 2, 2), mode="replicate")
        ref = F.conv2d(pad.view(3, 1, 17, 21), torch.outer(k, k).view(1, 1, 5, 5)).view(1, 3, 13, 17)
        assert torch.allclose(out[i:i + 1], ref, atol=1e-6)
    assert torch.equal(gaussian_blur(img, torch.zeros(3)), img)      # sigma 0: exactly unchanged


def test_jpeg_per_image_quality_and_off():
    g = torch.Generator().manual_seed(4)
    img = F.avg_pool2d(torch.rand(5, 3, 21, 27, generator=g), 3, stride=1, padding=1, count_include_pad=False)
    q = torch.tensor([0.0, 40.0, 0.0, 90.0, 60.0])
    out = jpeg_roundtrip(img, q)
    on = q > 0
    assert torch.equal(out[~on], img[~on])
    assert torch.allclose(out[on], jpeg_roundtrip(img[on], q[on]), atol=1e-6)
    assert not torch.allclose(out[on], img[on], atol=1e-3)
