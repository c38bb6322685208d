"""`deepwarp-fast redirect` and `deepwarp-fast demo` end to end, and every bad input."""
import numpy as np
import pytest

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from deepwarp_fast.cli import main  # noqa: E402
from deepwarp_fast.commands import redirect as cmd  # noqa: E402


@pytest.fixture(scope="module")
def astro_bgr():
    return np.ascontiguousarray(skdata.astronaut()[..., ::-1])


@pytest.fixture
def astro_png(tmp_path, astro_bgr):
    p = tmp_path / "astronaut.png"
    cv2.imwrite(str(p), astro_bgr)
    return p


def small_video(path, astro_bgr, n=6, fps=20.0, fourcc="MJPG", face=True):
    crop = np.ascontiguousarray(astro_bgr[40:296, 80:400])
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (320, 256))
    for i in range(n):
        w.write(np.roll(crop, i, axis=1) if face else rng.integers(0, 256, crop.shape, dtype=np.uint8))
    w.release()


def test_image_is_redirected_and_the_rest_kept(tmp_path, astro_png, astro_bgr, capsys):
    out = tmp_path / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(out), "--vertical", "10", "--horizontal", "-5", "--profile"]) == cmd.EXIT_OK
    text = capsys.readouterr().out
    assert "1 face(s), 2 eye(s) redirected" in text
    for stage in ("decode", "detect/track", "landmarks", "crop", "model", "paste", "encode"):
        assert stage in text
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img.shape == astro_bgr.shape and img.dtype == np.uint8
    changed = np.any(img != astro_bgr, axis=-1)
    assert changed.mean() < 0.01  # only the eyes may change
    ys, xs = np.nonzero(changed)
    if len(xs):
        assert 180 < xs.min() and xs.max() < 270 and 80 < ys.min() and ys.max() < 125


@pytest.mark.parametrize("kind", ["gray16", "rgba", "gray"])
def test_image_depth_channels_and_alpha_are_kept(tmp_path, astro_bgr, kind):
    rng = np.random.default_rng(2)
    gray = cv2.cvtColor(astro_bgr, cv2.COLOR_BGR2GRAY)
    img = {"gray16": gray.astype(np.uint16) * 257,
           "rgba": np.dstack([astro_bgr, rng.integers(0, 256, gray.shape, dtype=np.uint8)]),
           "gray": gray}[kind]
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    cv2.imwrite(str(src), img)
    assert main(["redirect", str(src), "-o", str(dst), "--vertical", "10", "-q"]) == cmd.EXIT_OK
    out = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert out.shape == img.shape and out.dtype == img.dtype
    if kind == "rgba":
        np.testing.assert_array_equal(out[..., 3], img[..., 3])


def test_no_face_writes_the_input_and_says_so(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src, dst = tmp_path / "noise.png", tmp_path / "out.png"
    cv2.imwrite(str(src), rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    assert main(["redirect", str(src), "-o", str(dst), "--vertical", "10"]) == cmd.EXIT_NO_FACE
    assert "no face found" in capsys.readouterr().err
    assert dst.read_bytes() == src.read_bytes()


def test_a_missing_output_folder_is_refused_before_any_work(tmp_path, astro_png, capsys, monkeypatch):
    import deepwarp_fast.face as face

    def no_work(*a, **k):
        raise AssertionError("the redirector was built before the arguments were checked")

    monkeypatch.setattr(face, "GazeRedirector", no_work)
    dst = tmp_path / "no" / "such" / "folder" / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(dst)]) == cmd.EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_angles_outside_the_trained_range_state_the_range(tmp_path, astro_png, capsys):
    dst = tmp_path / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(dst), "--horizontal", "45"]) == cmd.EXIT_USAGE
    err = capsys.readouterr().err
    assert "horizontal=45" in err and "[-30, 30]" in err and "max_angle" in err
    assert not dst.exists()


@pytest.mark.parametrize("content,match", [
    ("truncated", "truncated or damaged"),
    (b"this is not an image", "not a readable image"),
    (b"", "empty"),
    (None, "does not exist"),
])
def test_unreadable_inputs_get_a_clear_error(tmp_path, astro_png, capsys, content, match):
    src, dst = tmp_path / "bad.png", tmp_path / "out.png"
    if content == "truncated":
        data = astro_png.read_bytes()
        src.write_bytes(data[: len(data) // 2])
    elif content is not None:
        src.write_bytes(content)
    assert main(["redirect", str(src), "-o", str(dst)]) == cmd.EXIT_BAD_INPUT
    assert match in capsys.readouterr().err
    assert not dst.exists()


def test_output_rules(tmp_path, astro_png, capsys):
    dst = tmp_path / "out.png"
    dst.write_bytes(b"keep me")
    assert main(["redirect", str(astro_png), "-o", str(dst)]) == cmd.EXIT_USAGE
    assert "--force" in capsys.readouterr().err and dst.read_bytes() == b"keep me"
    assert main(["redirect", str(astro_png), "-o", str(astro_png), "--force"]) == cmd.EXIT_USAGE
    assert "overwrite the input" in capsys.readouterr().err
    assert main(["redirect", str(astro_png), "-o", str(tmp_path / "out.mp4")]) == cmd.EXIT_USAGE
    assert "same kind" in capsys.readouterr().err
    assert main(["redirect", str(astro_png), "-o", str(tmp_path / "out.xyz")]) == cmd.EXIT_USAGE
    assert "unknown file type" in capsys.readouterr().err
    assert main(["redirect", str(astro_png), "-o", str(dst), "--force", "-q"]) == cmd.EXIT_OK
    assert dst.read_bytes() != b"keep me"


def test_video_keeps_frames_and_rate_and_prints_a_summary(tmp_path, astro_bgr, capsys):
    src, dst = tmp_path / "in.avi", tmp_path / "out.mp4"
    small_video(src, astro_bgr, n=6, fps=20.0)
    assert main(["redirect", str(src), "-o", str(dst), "--vertical", "10", "--profile", "-q"]) == cmd.EXIT_OK
    text = capsys.readouterr().out
    assert "6 frames at 20 fps" in text and "frames without a face: 0" in text and "fps" in text
    assert "decode" in text and "encode" in text
    cap = cv2.VideoCapture(str(dst))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(20.0)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 6


def test_a_video_without_faces_exits_with_the_no_face_status(tmp_path, astro_bgr, capsys):
    src, dst = tmp_path / "in.avi", tmp_path / "out.avi"
    small_video(src, astro_bgr, n=3, face=False)
    assert main(["redirect", str(src), "-o", str(dst), "-q"]) == cmd.EXIT_NO_FACE
    assert "no face found in any frame" in capsys.readouterr().err


def test_an_interrupted_video_run_stays_playable(tmp_path, astro_bgr, capsys, monkeypatch):
    from deepwarp_fast.face.redirector import GazeStream

    src, dst = tmp_path / "in.avi", tmp_path / "out.mp4"
    small_video(src, astro_bgr, n=8)
    real = GazeStream.process
    calls = []

    def process(self, frame, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, frame, *a, **k)

    monkeypatch.setattr(GazeStream, "process", process)
    assert main(["redirect", str(src), "-o", str(dst), "-q"]) == cmd.EXIT_INTERRUPTED
    assert "3 frames written so far" in capsys.readouterr().err
    cap = cv2.VideoCapture(str(dst))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3


def test_demo_writes_the_contact_sheet_and_the_sweeps(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--steps", "2", "--gif-frames", "3"]) == 0
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[1] > sheet.shape[0] > 100 and sheet.std() > 10
    for name in ("gaze_vertical.gif", "gaze_horizontal.gif"):
        with Image.open(out / name) as g:
            assert g.n_frames == 4  # -A, 0, +A, 0
    assert (out / "landmarks.png").is_file()
    assert "contact_sheet.png" in capsys.readouterr().out


@pytest.mark.parametrize("backend,expected", [("reference", "DeepWarp"), ("auto", "NumpyDeepWarp"),
                                             ("numpy", "NumpyDeepWarp"), ("cuda", "AcceleratedDeepWarp")])
def test_backend_names_what_runs(tmp_path, astro_png, monkeypatch, backend, expected):
    """--backend reference runs the eager plain-PyTorch DeepWarp (BatchNorm unfolded), not
    accelerate(backend="reference"); numpy (and auto for a photo on the CPU) the NumPy
    port; the other choices run accelerate()."""
    from deepwarp_fast.face import GazeRedirector

    seen = []
    redirect = GazeRedirector.redirect

    def spy(self, *args, **kwargs):
        seen.append(self.model)
        return redirect(self, *args, **kwargs)

    monkeypatch.setattr(GazeRedirector, "redirect", spy)
    out = tmp_path / "out.png"
    assert main(["redirect", str(astro_png), "-o", str(out), "--vertical", "10", "--backend", backend, "-q"]) == cmd.EXIT_OK
    assert [type(m).__name__ for m in seen] == [expected]
    if backend == "reference":
        assert any(isinstance(m, __import__("torch").nn.BatchNorm2d) for m in seen[0].modules())
