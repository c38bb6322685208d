"""Issue 13, "never a wrong answer with exit 0": each failure a careful user hit, made
by a fixture (a rotated phone photo, a video with a damaged middle, NaN weights, a
read-only folder, ...) and checked for the exit status, the message, and that nothing
was lost."""
import json
import os
import time

import numpy as np
import pytest
import torch

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")

from deepwarp_fast import DeepWarp, DeepWarpConfig, accelerate, load_model, save_weights  # noqa: E402
from deepwarp_fast.cli import main  # noqa: E402
from deepwarp_fast.commands import redirect as cmd  # noqa: E402
from deepwarp_fast.face.io import read_image  # noqa: E402

EYES = (180, 270, 80, 125)  # x0, x1, y0, y1 of the astronaut's eye region


@pytest.fixture(scope="module")
def astro_rgb():
    return np.ascontiguousarray(skdata.astronaut())


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the redirector is built: the arguments must be refused first."""
    import deepwarp_fast.face as face

    def refuse(*a, **k):
        raise AssertionError("the redirector was built before the arguments were checked")

    monkeypatch.setattr(face, "GazeRedirector", refuse)


def _outside_eyes(img):
    x0, x1, y0, y1 = EYES
    keep = np.ones(img.shape[:2], bool)
    keep[y0 - 10:y1 + 10, x0 - 10:x1 + 10] = False
    return img[keep]


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- 1. EXIF orientation
# Stored pixels and the tag that turns them upright (Pillow's ImageOps.exif_transpose).
ROTATIONS = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, 1), 8: lambda a: np.rot90(a, -1)}


@pytest.mark.parametrize("ext,orientation", [(".jpg", 6), (".png", 8), (".png", 3)])
def test_exif_rotated_photo_is_read_upright_and_written_upright(tmp_path, astro_rgb, capsys, ext, orientation):
    from PIL import ImageOps

    stored = np.ascontiguousarray(ROTATIONS[orientation](astro_rgb))
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    src, dst = tmp_path / f"phone{ext}", tmp_path / f"out{ext}"
    im.save(src, exif=exif.tobytes(), **({"quality": 95} if ext == ".jpg" else {}))
    with Image.open(src) as check:  # the fixture is what a viewer shows upright
        upright = np.asarray(ImageOps.exif_transpose(check))
    np.testing.assert_array_equal(read_image(src), upright)

    assert main(["redirect", str(src), "-o", str(dst), "--vertical", "10", "-q"]) == cmd.EXIT_OK
    assert "1 face(s), 2 eye(s) redirected" in capsys.readouterr().out
    with Image.open(dst) as out:
        assert out.getexif().get(0x0112, 1) == 1, "pixels are written upright: the tag must say so"
        assert out.getexif().get(0x010F) == "PhoneMaker", "the rest of the EXIF is kept"
        pixels = np.asarray(out.convert("RGB"))
    assert pixels.shape == upright.shape
    diff = np.abs(_outside_eyes(pixels).astype(int) - _outside_eyes(upright).astype(int))
    if ext == ".png":
        assert diff.max() == 0
    else:
        assert diff.mean() < 1.5


# ---------------------------------------------------------------- 2. arguments checked first
@pytest.fixture
def astro_png(tmp_path, astro_rgb):
    p = tmp_path / "astronaut.png"
    Image.fromarray(astro_rgb).save(p)
    return p


@pytest.fixture
def small_avi(tmp_path, astro_rgb):
    p = tmp_path / "in.avi"
    crop = np.ascontiguousarray(astro_rgb[40:296, 80:400, ::-1])
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (320, 256))
    for i in range(3):
        w.write(np.roll(crop, i, axis=1))
    w.release()
    return p


BAD_ARGUMENTS = [
    ("png", ["--backend", "bogus"], "--backend 'bogus' is not a backend"),
    ("avi", ["--backend", "bogus"], "--backend 'bogus' is not a backend"),
    ("png", ["--device", "quantum"], "is not a device"),
    ("avi", ["--codec", "abc"], "four-letter code"),
    ("avi", ["--codec", "ZZZZ"], "cannot write .avi video with codec 'ZZZZ'"),
    ("png", ["--codec", "MJPG"], "--codec is for videos"),
    ("png", ["--min-score", "99"], "--min-score must lie in [0, 5]"),
    ("png", ["--min-score", "nan"], "--min-score must lie in"),
    ("png", ["--min-score", "-1"], "--min-score must lie in"),
    ("png", ["--min-face", "3"], "--min-face must be at least 10"),
    ("png", ["--min-eye", "0"], "--min-eye must be a positive"),
    ("png", ["--vertical", "nan"], "--vertical is NaN"),
]


@pytest.mark.parametrize("kind,extra,match", BAD_ARGUMENTS, ids=[" ".join(a[1]) + f" ({a[0]})" for a in BAD_ARGUMENTS])
def test_bad_arguments_are_refused_before_any_work(tmp_path, astro_png, small_avi, no_work, capsys, kind, extra, match):
    src = astro_png if kind == "png" else small_avi
    dst = tmp_path / f"out.{kind}"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["redirect", str(src), "-o", str(dst), "-q", *extra]) == cmd.EXIT_USAGE
    assert match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be written"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_refused(tmp_path, astro_png, no_work, capsys):
    assert main(["redirect", str(astro_png), "-o", str(tmp_path / "o.png"), "--device", "cuda"]) == cmd.EXIT_USAGE
    assert "no CUDA device is visible" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_backend_that_cannot_run_here_is_refused_with_the_reason(tmp_path, small_avi, no_work, capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # as on a user's CPU machine
    dst = tmp_path / "o.avi"
    assert main(["redirect", str(small_avi), "-o", str(dst), "--backend", "triton"]) == cmd.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--backend triton cannot run on cpu" in err and "TRITON_INTERPRET" in err
    assert not dst.exists()


# ---------------------------------------------------------------- 3. damaged middle of a video
def _damage(data: bytes, offset: int, size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    out[offset:offset + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    return bytes(out)


@pytest.fixture(scope="module")
def damaged_avi(tmp_path_factory, astro_rgb):
    """(path, frames stored): a 40-frame MJPG .avi with ~60 KB of garbage in its middle,
    placed where OpenCV's plain read loop stops (the failure the issue reports)."""
    folder = tmp_path_factory.mktemp("damaged")
    good = folder / "good.avi"
    crop = cv2.resize(np.ascontiguousarray(astro_rgb[..., ::-1]), (320, 240))
    w = cv2.VideoWriter(str(good), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (320, 240))
    for i in range(40):
        w.write(np.roll(crop, i % 7, axis=1))
    w.release()
    data = good.read_bytes()
    bad = folder / "bad.avi"
    for k in range(40):
        bad.write_bytes(_damage(data, len(data) // 2 + 997 * k, 60_000, k))
        if _frames(bad) < 25:  # the plain loop ends at the damage
            return bad, 40
    pytest.skip("no damage placement stops OpenCV's plain read loop with this OpenCV build")


def test_a_damaged_middle_drops_only_the_bad_frames_and_says_how_many(tmp_path, damaged_avi, capsys):
    src, stored = damaged_avi
    naive = _frames(src)
    dst = tmp_path / "out.avi"
    assert main(["redirect", str(src), "-o", str(dst), "-q", "--vertical", "5"]) == cmd.EXIT_BAD_INPUT
    captured = capsys.readouterr()
    written = _frames(dst)
    assert written > naive + 5, f"decoding must go on past the damage ({written} written, plain loop {naive})"
    dropped = stored - written
    assert 0 < dropped <= 6  # ~60 KB of garbage covers 3-4 frames of ~17 KB
    assert f"{dropped} of {stored} frames could not be decoded" in captured.err
    assert f"input frames that could not be decoded (dropped): {dropped}" in captured.out
    assert f"{written} frames at 20 fps" in captured.out


# ---------------------------------------------------------------- 4 and 7. weights files
def _tiny_weights(path, **edit):
    from safetensors.torch import save_file

    model = DeepWarp(DeepWarpConfig())
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    save_weights(model, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in edit.items():
        if k.startswith("meta:"):
            meta[k[5:]] = v
        else:
            state[k.replace("__", ".")] = v(state[k.replace("__", ".")]).contiguous()
    save_file(state, str(path), metadata=meta)
    return path


def _nan_at(i, value=float("nan")):
    def f(t):
        t = t.clone()
        t.view(-1)[i] = value
        return t
    return f


CFG_DEFAULT = json.loads(DeepWarpConfig().to_json())


def _cfg(**kw):
    return json.dumps(dict(CFG_DEFAULT, **kw))


BAD_WEIGHTS = [
    ("nan", {"fine__layers__0__conv__weight": _nan_at(7)}, "tensor 'fine.layers.0.conv.weight' holds 1 NaN or infinite"),
    ("inf", {"lcm__head__bias": _nan_at(1, float("inf"))}, "tensor 'lcm.head.bias' holds 1 NaN or infinite"),
    ("negative variance", {"coarse__layers__1__bn__running_var": lambda t: -t}, "'coarse.layers.1.bn.running_var' holds negative"),
    ("shape", {"coarse__layers__1__conv__weight": lambda t: t[:, :, :2]},
     "tensor 'coarse.layers.1.conv.weight' has shape (32, 16, 2, 3), but the file's config needs (32, 16, 3, 3)"),
    ("dtype", {"coarse__head__bias": lambda t: t.to(torch.int32)}, "tensor 'coarse.head.bias' has dtype torch.int32"),
    ("65536 channels", {"meta:config": _cfg(coarse_channels=[65536, 32, 32, 32])}, "coarse_channels must be an integer in [1, 1024]"),
    ("channels in range, not the file's", {"meta:config": _cfg(fine_channels=[1000, 32, 32, 32])},
     "tensor 'fine.layers.0.conv.weight' has shape (16, 38, 5, 5), but the file's config needs (1000, 38, 5, 5)"),
    ("NaN max_angle", {"meta:config": _cfg(max_angle=float("nan"))}, "max_angle must be a finite number"),
    ("garbage config", {"meta:config": "{not json"}, "the config in its metadata is invalid"),
    ("garbage provenance", {"meta:provenance": "[1, 2"}, "the provenance in its metadata is not valid JSON"),
    ("unknown field", {"meta:config": _cfg(colour="blue")}, "unknown DeepWarpConfig fields: ['colour']"),
]


@pytest.mark.parametrize("what,edit,match", BAD_WEIGHTS, ids=[b[0] for b in BAD_WEIGHTS])
def test_bad_weights_are_rejected_at_load_naming_the_file_and_tensor(tmp_path, what, edit, match):
    path = _tiny_weights(tmp_path / "w.safetensors", **edit)
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        load_model(path)
    assert time.perf_counter() - t0 < 5, "checked before anything is allocated"
    assert str(path) in str(info.value) and match in str(info.value)
    with pytest.raises(ValueError, match="w.safetensors"):
        accelerate(path)


@pytest.mark.parametrize("what", ["nan", "shape", "65536 channels", "garbage config"])
def test_bad_weights_exit_2_before_any_work(tmp_path, astro_png, capsys, what):
    edit = dict((b[0], b[1]) for b in BAD_WEIGHTS)[what]
    path = _tiny_weights(tmp_path / "w.safetensors", **edit)
    dst = tmp_path / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(dst), "--weights", str(path), "-q"]) == cmd.EXIT_USAGE
    err = capsys.readouterr().err
    assert "w.safetensors" in err and "Traceback" not in err
    assert not dst.exists()


def test_good_weights_written_by_the_fixture_load(tmp_path):
    """The fixture itself is sound: without an edit the file loads (so the cases above fail
    for the edit, not for the fixture)."""
    m = load_model(_tiny_weights(tmp_path / "w.safetensors"))
    assert torch.isfinite(next(m.parameters())).all()


# ---------------------------------------------------------------- 5. permissions and metadata
def _icc():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
       b'tiff:Orientation="1"><dc:creator>deepwarp-test-author</dc:creator></rdf:Description></rdf:RDF>'
       b'</x:xmpmeta><?xpacket end="w"?>')


@pytest.mark.parametrize("src_ext,dst_ext", [(".jpg", ".jpg"), (".jpg", ".png"), (".png", ".png")])
def test_outputs_get_umask_permissions_and_keep_exif_icc_xmp_dpi(tmp_path, astro_rgb, capsys, src_ext, dst_ext):
    src, dst = tmp_path / f"in{src_ext}", tmp_path / f"out{dst_ext}"
    im = Image.fromarray(astro_rgb)
    exif = im.getexif()
    exif[0x010F] = "CameraMaker"
    icc = _icc()
    if src_ext == ".jpg":
        im.save(src, exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300), xmp=XMP, quality=95)
    else:  # Pillow writes no XMP into PNG itself: as an iTXt chunk, as other tools do
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        im.save(src, exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300), pnginfo=info)
    old = os.umask(0o027)
    try:
        assert main(["redirect", str(src), "-o", str(dst), "--vertical", "10", "-q"]) == cmd.EXIT_OK
    finally:
        os.umask(old)
    capsys.readouterr()
    assert dst.stat().st_mode & 0o777 == 0o640
    with Image.open(dst) as out:
        assert out.info.get("icc_profile") == icc
        assert out.getexif().get(0x010F) == "CameraMaker"
        assert tuple(round(float(d)) for d in out.info["dpi"]) == (300, 300)
        xmp = out.info.get("xmp") or out.info.get("XML:com.adobe.xmp")
        xmp = xmp.encode() if isinstance(xmp, str) else xmp
        assert b"deepwarp-test-author" in xmp
    assert _leftovers(tmp_path) == []


def test_an_unchanged_copy_gets_umask_permissions_too(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src, dst = tmp_path / "noise.png", tmp_path / "out.png"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(src)
    os.chmod(src, 0o600)
    old = os.umask(0o022)
    try:
        assert main(["redirect", str(src), "-o", str(dst), "-q"]) == cmd.EXIT_NO_FACE
    finally:
        os.umask(old)
    assert dst.read_bytes() == src.read_bytes() and dst.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- 6. read-only output folder
@pytest.fixture
def readonly_dir(tmp_path):
    """A folder in which no file can be created: chmod 0555, or for root (whom
    permissions do not stop) /sys, where nobody can create files."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").touch()
    except OSError:
        yield d
        d.chmod(0o755)
        return
    (d / "probe").unlink()
    d.chmod(0o755)
    sysfs = __import__("pathlib").Path("/sys")
    try:
        (sysfs / "deepwarp-probe.png").touch()
    except OSError:
        yield sysfs
        return
    pytest.skip("no read-only folder to test with")


@pytest.mark.parametrize("ext", ["png", "avi"])
def test_a_read_only_output_folder_is_refused_before_any_work(readonly_dir, astro_png, small_avi, no_work, capsys, ext):
    src = astro_png if ext == "png" else small_avi
    dst = readonly_dir / f"deepwarp-out.{ext}"
    assert main(["redirect", str(src), "-o", str(dst), "-q"]) == cmd.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"cannot write to the output folder {readonly_dir}" in err and "codec" not in err
    assert not dst.exists()


# ---------------------------------------------------------------- 8. dtypes of the reference model
@pytest.fixture(scope="module")
def model_and_inputs():
    model = load_model()
    g = torch.Generator().manual_seed(3)
    eyes = torch.rand(2, 3, 41, 51, generator=g)
    anchors = torch.rand(2, 7, 2, generator=g) * torch.tensor([50.0, 40.0])
    angles = torch.tensor([[10.0, -5.0], [-20.0, 15.0]])
    return model, eyes, anchors, angles


# The output is computed in float32 and rounded to the eyes' dtype: at most half a unit
# in the last place of values <= 1 (2^-11 float16, 2^-8 bfloat16), plus float32 noise.
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-5), (torch.float16, 6e-4), (torch.bfloat16, 4e-3)])
def test_reference_model_takes_every_float_dtype_the_validator_accepts(model_and_inputs, dtype, atol):
    model, eyes, anchors, angles = model_and_inputs
    e = eyes.to(dtype)
    a_low, g_low = anchors.to(dtype), angles.to(dtype)
    with torch.no_grad():
        want = model(e.float(), anchors, angles)
        want_low = model(e.float(), a_low.float(), g_low.float())
        out = model(e, anchors, angles)
        out_low = model(e, a_low, g_low)
        res = model(e, anchors, angles, return_intermediates=True)
        fast = accelerate(model)(e, anchors, angles)
    assert out.dtype == out_low.dtype == res.output.dtype == res.flow.dtype == dtype
    assert fast.dtype == dtype, "the accelerated model returns the eyes' dtype too"
    torch.testing.assert_close(out.float(), want, atol=atol, rtol=0)
    torch.testing.assert_close(out_low.float(), want_low, atol=atol, rtol=0)
    # The accelerated model computes in the eyes' dtype (its documented `dtype=None`), so
    # only float64 matches to the same tolerance; float16/bfloat16 hold ~3 / ~2 digits.
    fast_atol = {torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 8e-2}[dtype]
    torch.testing.assert_close(fast.float(), want, atol=fast_atol, rtol=0)


# ---------------------------------------------------------------- 9. the smaller ones
def test_no_eye_redirected_exits_4_and_says_why(tmp_path, astro_png, capsys):
    dst = tmp_path / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(dst), "--min-eye", "500", "-q"]) == cmd.EXIT_NO_FACE
    err = capsys.readouterr().err
    assert "below min_eye_px" in err and "no eye could be redirected" in err
    assert dst.read_bytes() == astro_png.read_bytes()


def test_no_eye_redirected_in_a_video_exits_4(tmp_path, small_avi, capsys):
    dst = tmp_path / "out.avi"
    assert main(["redirect", str(small_avi), "-o", str(dst), "--min-eye", "500", "-q"]) == cmd.EXIT_NO_FACE
    assert "no eye could be redirected" in capsys.readouterr().err
    assert _frames(dst) == 3


def test_an_interrupt_before_the_first_frame_leaves_no_file(tmp_path, small_avi, capsys, monkeypatch):
    from deepwarp_fast.face.redirector import GazeStream

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(GazeStream, "process", interrupted)
    dst = tmp_path / "out.mp4"
    assert main(["redirect", str(small_avi), "-o", str(dst), "-q"]) == cmd.EXIT_INTERRUPTED
    assert "no output file was written" in capsys.readouterr().err
    assert not dst.exists() and _leftovers(tmp_path) == []


def test_an_interrupted_run_keeps_an_existing_output_until_a_frame_is_written(tmp_path, small_avi, capsys, monkeypatch):
    from deepwarp_fast.face.redirector import GazeStream

    monkeypatch.setattr(GazeStream, "process", lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    dst = tmp_path / "out.avi"
    dst.write_bytes(b"an older run")
    assert main(["redirect", str(small_avi), "-o", str(dst), "-q", "--force"]) == cmd.EXIT_INTERRUPTED
    assert dst.read_bytes() == b"an older run"


@pytest.mark.parametrize("value,status", [("-1e1", cmd.EXIT_OK), ("-.5", cmd.EXIT_OK), ("-inf", cmd.EXIT_USAGE),
                                          ("-1E+3", cmd.EXIT_USAGE)])
def test_negative_numbers_in_any_notation_are_values(tmp_path, astro_png, capsys, value, status):
    dst = tmp_path / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(dst), "--horizontal", value, "-q"]) == status
    err = capsys.readouterr().err
    assert "expected one argument" not in err
    if status == cmd.EXIT_USAGE:
        assert "outside the range" in err and not dst.exists()


def test_model_api_rejects_angles_the_redirector_rejects(model_and_inputs):
    model, eyes, anchors, _ = model_and_inputs
    far = torch.tensor([[90.0, 0.0], [0.0, 0.0]])
    for m in (model, accelerate(model)):
        with pytest.raises(ValueError, match=r"90 degrees.*\[-30, 30\].*max_angle"):
            m(eyes, anchors, far)
    train = DeepWarp(model.config).train()  # training may draw its own range
    assert train(eyes, anchors, far).shape == eyes.shape


def test_unknown_backend_is_rejected_at_once(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'bogus'"):
        load_model(backend="bogus")
    with pytest.raises(ValueError, match="unknown backend 'bogus'"):
        DeepWarp(backend="bogus")


def test_cuda_graphs_on_a_cpu_model_is_rejected():
    with pytest.raises(ValueError, match="cuda_graphs=True"):
        accelerate(DeepWarp(), cuda_graphs=True)


def test_readme_exit_status_table_lists_every_status_the_command_returns():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = set(int(m) for m in re.findall(r"^\| (\d+) \| ", readme, flags=re.M))
    codes = {v for k, v in vars(cmd).items() if k.startswith("EXIT_")}
    assert table == codes
    for code in codes:
        assert f"{code} " in cmd.EPILOG


ODD_IMAGES = {
    "one_pixel.png": lambda: Image.fromarray(np.zeros((1, 1, 3), np.uint8)),
    "one_row.png": lambda: Image.fromarray(np.zeros((1, 40, 3), np.uint8)),
    "gray_alpha.png": lambda: Image.fromarray(np.full((40, 40, 2), 99, np.uint8), "LA"),
    "palette.png": lambda: Image.fromarray(np.arange(1600, dtype=np.uint8).reshape(40, 40)).convert("P"),
    "bilevel.png": lambda: Image.fromarray(np.arange(1600, dtype=np.uint8).reshape(40, 40)).convert("1"),
    "cmyk.jpg": lambda: Image.fromarray(np.full((40, 40, 3), 99, np.uint8)).convert("CMYK"),
    "hdr.tiff": "float32 values up to 5",
}


@pytest.mark.parametrize("name", sorted(ODD_IMAGES))
def test_unusual_valid_images_are_processed_or_refused_with_exit_3(tmp_path, capsys, name):
    src, dst = tmp_path / name, tmp_path / ("out_" + name)
    if name == "hdr.tiff":
        cv2.imwrite(str(src), np.linspace(0, 5, 40 * 40 * 3, dtype=np.float32).reshape(40, 40, 3))
    else:
        ODD_IMAGES[name]().save(src)
    status = main(["redirect", str(src), "-o", str(dst), "-q"])
    err = capsys.readouterr().err
    if name in ("one_pixel.png", "one_row.png", "hdr.tiff"):
        assert status == cmd.EXIT_BAD_INPUT and "cannot be processed" in err and not dst.exists()
    else:
        assert status == cmd.EXIT_NO_FACE and dst.read_bytes() == src.read_bytes()


def test_the_video_writer_blames_the_folder_not_the_codec(readonly_dir):
    from deepwarp_fast.face.video import VideoWriter

    with pytest.raises(PermissionError, match="no file can be created"):
        VideoWriter(readonly_dir / "deepwarp-out.avi", 20.0, (64, 48))


def test_a_frame_of_another_size_mid_video_is_dropped_and_counted(tmp_path, small_avi, capsys, monkeypatch):
    from deepwarp_fast.face.video import VideoReader

    real = VideoReader._read
    calls = []

    def read(self):
        ok, frame = real(self)
        calls.append(1)
        if ok and len(calls) == 2:  # the second frame decodes to another size
            frame = np.ascontiguousarray(frame[:100, :120])
        return ok, frame

    monkeypatch.setattr(VideoReader, "_read", read)
    dst = tmp_path / "out.avi"
    assert main(["redirect", str(small_avi), "-o", str(dst), "-q"]) == cmd.EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "1 of 3 frames could not be decoded" in captured.err and "Traceback" not in captured.err
    assert _frames(dst) == 2


def test_frames_that_fail_to_process_are_kept_and_exit_1(tmp_path, small_avi, capsys, monkeypatch):
    from deepwarp_fast.face.redirector import GazeStream

    def broken(self, *a, **k):
        raise RuntimeError("the backend failed")

    monkeypatch.setattr(GazeStream, "process", broken)
    dst = tmp_path / "out.avi"
    assert main(["redirect", str(small_avi), "-o", str(dst), "-q"]) == cmd.EXIT_ERROR
    err = capsys.readouterr().err
    assert "3 of 3 frames could not be processed" in err and "RuntimeError: the backend failed" in err
    assert "no face found" not in err
    assert _frames(dst) == 3
