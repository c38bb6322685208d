"""Videos through the face pipeline: frames and frame rate kept, faceless frames
untouched, tracking and smoothing, interrupted and damaged files."""
import numpy as np
import pytest

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")
from conftest import read_video as read_all  # noqa: E402

from deepwarp_fast.face import AngleRangeError, GazeRedirector, InputError  # noqa: E402
from deepwarp_fast.face.toy import ShiftEyesModel  # noqa: E402
from deepwarp_fast.face.video import VideoReader, redirect_video  # noqa: E402

SIZE = (320, 256)  # (width, height): the astronaut's face (87 px) and some background


@pytest.fixture(scope="module")
def face_bgr():
    return np.ascontiguousarray(skdata.astronaut()[40:296, 80:400, ::-1])


@pytest.fixture(scope="module")
def gr():
    return GazeRedirector(ShiftEyesModel(px_per_degree=0.3))


def make_video(path, face_bgr, n=12, fps=24.0, fourcc="MJPG", no_face=(), seed=0):
    """A video made from the photo: it pans 1 px a frame, with sensor noise; the frames
    in ``no_face`` are noise only. Returns the frames written."""
    rng = np.random.default_rng(seed)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert w.isOpened()
    frames = []
    for i in range(n):
        if i in no_face:
            f = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        else:
            f = np.roll(face_bgr, i - n // 2, axis=1).astype(np.int16) + rng.integers(-3, 4, face_bgr.shape)
            f = np.clip(f, 0, 255).astype(np.uint8)
        w.write(f)
        frames.append(f)
    w.release()
    return frames


def test_every_frame_and_the_frame_rate_are_kept(tmp_path, face_bgr, gr):
    src, dst = tmp_path / "in.avi", tmp_path / "out.avi"
    make_video(src, face_bgr, n=12, fps=24.0)
    s = redirect_video(gr, src, dst, 10, -10, progress=False)
    frames, fps = read_all(dst)
    assert len(frames) == 12 == s.frames == s.expected_frames
    assert fps == pytest.approx(24.0) and s.fps_in == pytest.approx(24.0)
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert s.faces_found == 12 and s.frames_without_face == 0 and not s.truncated and not s.interrupted
    assert "12 frames at 24 fps" in s.format()


def test_frames_without_a_face_pass_through_untouched(tmp_path, face_bgr, gr):
    # FFV1 (.mkv) is lossless: what goes out untouched comes back bit for bit.
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    written = make_video(src, face_bgr, n=12, fps=25.0, fourcc="FFV1", no_face=(4, 5, 6, 7))
    # detect_every=1: the face is found again in the very frame it comes back.
    s = redirect_video(gr, src, dst, 15, 0, progress=False, detect_every=1)
    out, _ = read_all(dst)
    assert len(out) == 12 and s.frames_without_face == 4 and s.faces_found == 8
    for i in (4, 5, 6, 7):
        np.testing.assert_array_equal(out[i], written[i])
    for i in (0, 3, 8, 11):  # faces: the eyes changed, and only a small part of the frame
        changed = np.any(out[i] != written[i], axis=-1)
        assert 20 < changed.sum() < 0.05 * changed.size


def test_tracking_runs_few_full_detections_and_keeps_one_track(face_bgr, gr):
    frames = make_video_frames(face_bgr, 20)
    stream = gr.stream(5, 5, color="bgr", fps=30, detect_every=10)
    ids = set()
    for f in frames:
        res = stream.process(f)
        assert len(res.faces) == 1 and res.eyes_redirected == 2
        ids.add(res.faces[0].track_id)
    assert stream.tracker.full_detections == 2 and len(ids) == 1


def make_video_frames(face_bgr, n, shift=0, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = np.roll(face_bgr, shift * i, axis=1).astype(np.int16) + rng.normal(0, 4, face_bgr.shape).round().astype(np.int16)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def test_smoothing_steadies_the_eye_landmarks_of_a_still_face(face_bgr, gr):
    frames = make_video_frames(face_bgr, 24)

    def eye_points(smooth):
        stream = gr.stream(0, 0, color="bgr", fps=30, smooth=smooth)
        return np.array([stream.process(f).faces[0].landmarks[36:48] for f in frames])

    def jitter(p):
        return np.linalg.norm(np.diff(p[4:], axis=0), axis=-1).mean()

    raw, smooth = eye_points(False), eye_points(True)
    assert jitter(raw) > 0.05  # dlib does jitter on a noisy still face
    assert jitter(smooth) < 0.5 * jitter(raw)
    assert np.abs(smooth.mean(0) - raw.mean(0)).max() < 1.0  # steadier, not moved


def test_stream_angles_per_frame_and_range(face_bgr, gr):
    stream = gr.stream(0, 0, color="bgr")
    f = make_video_frames(face_bgr, 1)[0]
    assert stream.process(f, vertical=20).eyes_redirected == 2
    with pytest.raises(AngleRangeError, match="max_angle"):
        stream.process(f, horizontal=-31)
    with pytest.raises(AngleRangeError):
        gr.stream(40, 0)


def test_an_interrupted_run_leaves_a_playable_file(tmp_path, face_bgr, gr):
    src, dst = tmp_path / "in.avi", tmp_path / "out.mp4"
    make_video(src, face_bgr, n=12)

    def stop_at_5(i, res):
        if i == 4:
            raise KeyboardInterrupt

    s = redirect_video(gr, src, dst, 10, 0, progress=False, on_frame=stop_at_5)
    assert s.interrupted and s.frames == 5 and not s.truncated
    frames, fps = read_all(dst)
    assert len(frames) == 5 and fps == pytest.approx(24.0)


def test_a_truncated_video_gives_its_decodable_frames_and_says_so(tmp_path, face_bgr, gr):
    src, dst = tmp_path / "in.avi", tmp_path / "out.avi"
    make_video(src, face_bgr, n=12)
    data = src.read_bytes()
    src.write_bytes(data[: int(len(data) * 0.6)])
    s = redirect_video(gr, src, dst, 10, 0, progress=False)
    assert s.truncated and 0 < s.frames < 12 and s.expected_frames == 12
    assert any("truncated" in m for m in s.messages)
    assert len(read_all(dst)[0]) == s.frames


@pytest.mark.parametrize("content,match", [(b"not a video at all", "not a readable video"), (b"", "empty")])
def test_unreadable_videos_get_a_clear_error(tmp_path, content, match):
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        VideoReader(p)
    with pytest.raises(InputError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")



def test_boxes_predicted_from_landmarks_between_searches_follow_a_moving_face(face_bgr, gr):
    """search_every=3: the detector searches near the face on one frame in three; on the
    others the box comes from the last landmarks. On a face moving ~3 px a frame the eye
    corners stay within a pixel or two of searching every frame."""
    frames = make_video_frames(face_bgr, 15, shift=3)
    corners = {}
    for every in (1, 3):
        stream = gr.stream(5, 5, color="bgr", fps=30, detect_every=10, smooth=False, search_every=every)
        got = []
        for f in frames:
            res = stream.process(f)
            assert len(res.faces) == 1 and res.eyes_redirected == 2
            got.append(res.faces[0].landmarks[[36, 39, 42, 45]])
        corners[every] = (np.array(got), stream.tracker.local_searches)
    assert corners[3][1] <= corners[1][1] / 2  # far fewer local searches
    assert np.abs(corners[3][0] - corners[1][0]).max() <= 2.0
    with pytest.raises(ValueError, match="search_every"):
        gr.stream(5, 5, search_every=0)


def test_mkv_default_is_lossless_huffyuv(tmp_path, face_bgr, gr):
    """.mkv's default writer is HuffYUV (lossless, ~7x faster to encode than FFV1): frames
    without a face come back bit for bit, and the file says HFYU."""
    src, dst = tmp_path / "in.mkv", tmp_path / "out.mkv"
    written = make_video(src, face_bgr, n=6, fps=25.0, fourcc="FFV1", no_face=(1, 2))
    redirect_video(gr, src, dst, 10, 0, progress=False, detect_every=1)
    out, _ = read_all(dst)
    assert len(out) == 6
    for i in (1, 2):
        np.testing.assert_array_equal(out[i], written[i])
    cap = cv2.VideoCapture(str(dst))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    assert bytes([(code >> 8 * i) & 255 for i in range(4)]) == b"HFYU"


def two_face_frames(face_bgr, n, second_from, seed=3):
    """n frames twice the photo's width with sensor noise: the face on the left in every
    frame, a second copy on the right from frame ``second_from`` on."""
    rng = np.random.default_rng(seed)
    h, w = face_bgr.shape[:2]
    frames = []
    for i in range(n):
        f = np.full((h, 2 * w, 3), 110, np.uint8)
        f[:, :w] = face_bgr
        if i >= second_from:
            f[:, w:] = face_bgr
        frames.append(np.clip(f.astype(np.int16) + rng.integers(-3, 4, f.shape), 0, 255).astype(np.uint8))
    return frames


def test_background_detection_finds_a_new_face_at_a_fixed_frame(face_bgr, gr):
    """The periodic full detection runs in a worker while every face is tracked; its result
    joins exactly BACKGROUND_LAG frames later, so when a second face is first seen does
    not depend on the worker's speed, and two runs give the same frames."""
    from deepwarp_fast.face.tracking import BACKGROUND_LAG

    frames = two_face_frames(face_bgr, 34, second_from=12)
    runs = []
    for _ in range(2):
        with gr.stream(5, 0, color="bgr", fps=30, detect_every=10) as stream:
            counts, images = [], []
            for f in frames:
                res = stream.process(f)
                counts.append(len(res.faces))
                images.append(res.image)
            assert stream.tracker._pool is not None, "the periodic detections ran in the worker"
        assert stream.tracker._pool is None  # closed
        runs.append((counts, images))
    counts = runs[0][0]
    # frame 0: a full detection in the frame (no track yet); frames 10 and 20: in the worker,
    # merged at 10 + LAG (the second face is not there yet at 10) and 20 + LAG
    first_two = counts.index(2)
    assert first_two == 20 + BACKGROUND_LAG and set(counts[:first_two]) == {1} and set(counts[first_two:]) == {2}
    assert runs[1][0] == counts
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_stream_without_background_detection_finds_the_face_at_the_detection_frame(face_bgr, gr):
    frames = two_face_frames(face_bgr, 14, second_from=5)
    stream = gr.stream(5, 0, color="bgr", fps=30, detect_every=10, background_detect=False)
    counts = [len(stream.process(f).faces) for f in frames]
    assert counts.index(2) == 10 and stream.tracker._pool is None
