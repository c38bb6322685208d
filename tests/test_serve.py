"""The browser demo (`deepwarp-fast serve`, deepwarp_fast.web) through Starlette's
TestClient, with the bundled weights: faces found once per photo, only the eyes
change, clean JSON errors for bad requests, a video job to 100%, the live WebSocket."""
import json
import socket
import time

import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("starlette")
cv2 = pytest.importorskip("cv2")
try:
    from starlette.testclient import TestClient
except (ImportError, RuntimeError) as exc:  # it needs httpx2 (or, before Starlette 1.x, httpx): the test extra
    pytest.skip(f"Starlette's TestClient cannot run: {exc}", allow_module_level=True)

from deepwarp_fast.cli import main  # noqa: E402
from deepwarp_fast.face import GazeRedirector  # noqa: E402
from deepwarp_fast.samples import sample_face  # noqa: E402
from conftest import read_video  # noqa: E402
from deepwarp_fast.web import Limits, create_app  # noqa: E402

MB = 1 << 20
LIMITS = Limits(max_photo_bytes=2 * MB, max_video_bytes=3 * MB, max_live_frame_bytes=MB, max_pixels=4_000_000)
SIZE = (320, 256)  # (width, height) of the test video and live frames: the astronaut's face and some background


@pytest.fixture(scope="module")
def redirector():
    return GazeRedirector(device="cpu")  # the bundled weights, as `deepwarp-fast serve` uses them


@pytest.fixture(scope="module")
def app(redirector, tmp_path_factory):
    return create_app(redirector, limits=LIMITS, temp_dir=tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def astronaut():
    return sample_face("astronaut")


@pytest.fixture(scope="module")
def sample(client):
    r = client.post("/api/photos/sample")
    assert r.status_code == 201, r.text
    return r.json()


def png(rgb):
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def decode(data):
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return np.ascontiguousarray(img[..., ::-1])


def face_frame(astronaut):
    return np.ascontiguousarray(astronaut[40:296, 80:400, ::-1])  # BGR, SIZE


def assert_error(r, status, code=None, match=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    if code is not None:
        assert body["code"] == code, body
    if match is not None:
        assert match in body["error"], body


def eye_boxes(info, grow):
    """Per eye, its outline's box grown by ``grow`` eye widths on each side."""
    boxes = []
    for f in info["faces"]:
        for e in f["eyes"]:
            pts = np.array(e["outline"])
            w = np.ptp(pts[:, 0])
            (x0, y0), (x1, y1) = pts.min(0) - grow * w, pts.max(0) + grow * w
            boxes.append((x0, y0, x1, y1))
    return boxes


# ---------------------------------------------------------------------- page and photos
def test_page_and_config(client, redirector):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/api/photos" in r.text and "/api/live" in r.text
    cfg = client.get("/api/config").json()
    assert cfg["max_angle"] == redirector.config.max_angle  # the sliders' range comes from the model
    assert cfg["limits"]["max_photo_mb"] == 2 and cfg["limits"]["max_video_mb"] == 3
    assert "astronaut" in cfg["samples"]


def test_the_sample_photo_has_its_face_found(client, sample, astronaut):
    assert sample["width"] == 512 and sample["height"] == 512 and sample["message"] is None
    assert len(sample["faces"]) == 1 and sample["eyes"] == 2
    x0, y0, x1, y1 = sample["faces"][0]["box"]
    assert 150 < x0 < 200 and 50 < y0 < 100 and 250 < x1 < 310 and 150 < y1 < 200  # the astronaut's face
    r = client.get(sample["image"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decode(r.content), astronaut)


def test_an_uploaded_photo_has_its_face_found(client, astronaut):
    r = client.post("/api/photos", params={"name": "../../me.png"}, content=png(astronaut))
    assert r.status_code == 201, r.text
    info = r.json()
    assert len(info["faces"]) == 1 and info["eyes"] == 2
    assert info["name"] == "me.png"  # a name to show, never a path
    r = client.get(f"/api/photos/{info['id']}/redirect", params={"vertical": 5, "format": "png"})
    assert r.headers["content-disposition"] == 'attachment; filename="me_gaze_v+5_h+0.png"'
    # A name that is not ASCII (headers are Latin-1) still downloads.
    other = client.post("/api/photos", params={"name": "фото.png"}, content=png(astronaut)).json()
    r = client.get(f"/api/photos/{other['id']}/redirect", params={"vertical": 5, "format": "png"})
    assert r.status_code == 200 and "filename*=UTF-8''%D1%84%D0%BE%D1%82%D0%BE_gaze" in r.headers["content-disposition"]
    again = client.post("/api/photos", content=png(astronaut)).json()
    assert again["id"] != info["id"]
    for ident in (info["id"], again["id"]):
        assert len(ident) == 22 and ident.replace("-", "").replace("_", "").isalnum()


def test_a_photo_without_a_face_says_so(client):
    rng = np.random.default_rng(0)
    r = client.post("/api/photos", params={"name": "noise.png"}, content=png(rng.integers(0, 256, (120, 160, 3), np.uint8)))
    assert r.status_code == 201
    info = r.json()
    assert info["faces"] == [] and "No face found in noise.png" in info["message"]
    assert client.get(f"/api/photos/{info['id']}/redirect", params={"vertical": 10}).status_code == 204


def test_a_redirect_changes_only_the_eyes(client, sample, astronaut):
    r = client.get(f"/api/photos/{sample['id']}/redirect", params={"vertical": 15, "horizontal": -10, "format": "png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "attachment" in r.headers["content-disposition"]
    full = decode(r.content)
    assert full.shape == astronaut.shape
    changed = np.any(full != astronaut, axis=-1)
    assert changed.sum() > 50  # the eyes moved
    near = np.zeros_like(changed)
    for x0, y0, x1, y1 in eye_boxes(sample, grow=0.6):
        near[max(0, int(y0)):int(np.ceil(y1)) + 1, max(0, int(x0)):int(np.ceil(x1)) + 1] = True
    assert not np.any(changed & ~near), "pixels changed away from the eyes"

    # The preview: the changed region alone, placed by X-Region, equal to the full result there.
    r = client.get(f"/api/photos/{sample['id']}/redirect", params={"vertical": 15, "horizontal": -10})
    assert r.status_code == 200
    x0, y0, x1, y1 = map(int, r.headers["x-region"].split(","))
    np.testing.assert_array_equal(decode(r.content), full[y0:y1, x0:x1])
    inside = np.zeros_like(changed)
    inside[y0:y1, x0:x1] = True
    assert not np.any(changed & ~inside)
    assert (x1 - x0) * (y1 - y0) < 0.1 * changed.size  # the eyes, not the photo


def test_angle_zero_changes_nothing(client, sample, astronaut):
    r = client.get(f"/api/photos/{sample['id']}/redirect", params={"vertical": 0, "horizontal": 0, "format": "png"})
    np.testing.assert_array_equal(decode(r.content), astronaut)
    assert client.get(f"/api/photos/{sample['id']}/redirect", params={"vertical": 0, "horizontal": 0}).status_code == 204


def test_faces_are_found_once_per_photo(client, redirector, monkeypatch):
    calls = {"detect": 0, "landmarks": 0}
    detect, landmarks = redirector.detector.detect, redirector.detector.landmarks

    def counting_detect(*a, **k):
        calls["detect"] += 1
        return detect(*a, **k)

    def counting_landmarks(*a, **k):
        calls["landmarks"] += 1
        return landmarks(*a, **k)

    monkeypatch.setattr(redirector.detector, "detect", counting_detect)
    monkeypatch.setattr(redirector.detector, "landmarks", counting_landmarks)
    info = client.post("/api/photos/sample").json()
    assert calls == {"detect": 1, "landmarks": 1}
    previews = []
    for v, h in ((5, 0), (10, -5), (-12, 20)):
        r = client.get(f"/api/photos/{info['id']}/redirect", params={"vertical": v, "horizontal": h})
        assert r.status_code == 200
        previews.append(r.content)
    assert calls == {"detect": 1, "landmarks": 1}  # only the model and the paste ran again
    assert len(set(previews)) == 3


# ---------------------------------------------------------------------- bad requests
def test_bad_requests_get_clean_json_errors_and_the_server_goes_on(client, sample, app):
    pid = sample["id"]
    redirect = f"/api/photos/{pid}/redirect"
    checks = [
        (client.post("/api/photos", content=b"\x89PNG\r\n\x1a\n garbage, not an image" * 10), 422, "unreadable"),
        (client.post("/api/photos", content=b""), 400, "empty"),
        (client.post("/api/photos", content=bytes(3 * MB)), 413, "too_large"),
        (client.post("/api/photos", content=png(np.zeros((2100, 2100, 3), np.uint8))), 413, "too_many_pixels"),
        (client.post("/api/photos/sample", params={"name": "../../etc/passwd"}), 404, "unknown_sample"),
        (client.get(redirect, params={"vertical": 31}), 422, "angle_out_of_range"),
        (client.get(redirect, params={"horizontal": -45}), 422, "angle_out_of_range"),
        (client.get(redirect, params={"vertical": "nan"}), 422, "angle_out_of_range"),
        (client.get(redirect, params={"vertical": "up"}), 422, "bad_angle"),
        (client.get(redirect, params={"format": "gif"}), 422, "bad_format"),
        (client.get("/api/photos/AAAAAAAAAAAAAAAAAAAAAA/redirect"), 404, "unknown_photo"),
        (client.delete("/api/photos/AAAAAAAAAAAAAAAAAAAAAA"), 404, "unknown_photo"),
        (client.get("/api/videos/AAAAAAAAAAAAAAAAAAAAAA"), 404, "unknown_video"),
        (client.put("/api/photos"), 405, "http_405"),
    ]
    for r, status, code in checks:
        assert_error(r, status, code)
    assert "[-30, 30]" in client.get(redirect, params={"vertical": 31}).json()["error"]
    # Ids that look like paths: never a file, always a JSON 404.
    for ident in ("..", "...", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5C..%5Cwin.ini",
                  "%2Fetc%2Fpasswd", pid + "%2F..", pid[:-1] + ".", "~root", "%00"):
        for path in (f"/api/photos/{ident}/image", f"/api/videos/{ident}/result", f"/api/photos/{ident}"):
            r = client.get(path)
            assert_error(r, 404)
            assert "root:" not in r.text
    # The server still answers, and the photo still redirects.
    assert client.get("/api/config").status_code == 200
    assert client.get(redirect, params={"vertical": 10}).status_code == 200
    # Rejected uploads leave nothing behind: photos are decoded and their folder removed.
    assert not any(p.is_file() for p in app.state.service.root.rglob("*"))


# ---------------------------------------------------------------------- videos
def make_video(path, astronaut, n=6, fps=12.0):
    frame = face_frame(astronaut)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    assert w.isOpened()
    for i in range(n):
        w.write(np.roll(frame, i, axis=1))
    w.release()
    return path.read_bytes()


def test_a_video_job_runs_to_completion(client, app, astronaut, tmp_path):
    data = make_video(tmp_path / "clip.avi", astronaut, n=6)
    r = client.post("/api/videos", params={"vertical": 10, "horizontal": -5, "name": "clip.avi"}, content=data)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["total"] == 6 and (job["width"], job["height"]) == SIZE
    seen = []
    deadline = time.monotonic() + 30
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = client.get(f"/api/videos/{job['id']}").json()
        if job["progress"] is not None:
            seen.append(job["progress"])
    assert job["state"] == "done", job
    assert job["progress"] == 1.0 and job["frames"] == 6 and seen[-1] == 1.0
    assert seen == sorted(seen)
    assert "faces found: 6" in job["summary"]
    r = client.get(job["result"])
    assert r.status_code == 200 and r.headers["content-type"] == job["media_type"]
    out = tmp_path / ("out" + app.state.service.video_format[1])
    out.write_bytes(r.content)
    frames, _ = read_video(out)
    assert len(frames) == 6 and frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert "attachment" in client.get(job["download"]).headers["content-disposition"]

    # Deleting the job removes its files; the id is then unknown.
    folder = app.state.service.root / job["id"]
    assert folder.is_dir()
    assert client.delete(f"/api/videos/{job['id']}").status_code == 200
    assert not folder.exists()
    assert_error(client.get(f"/api/videos/{job['id']}"), 404, "unknown_video")


def test_bad_videos_get_clean_json_errors(client, app):
    assert_error(client.post("/api/videos", content=b"RIFF not a video at all" * 50), 422, "unreadable")
    assert_error(client.post("/api/videos", content=bytes(4 * MB)), 413, "too_large")
    assert_error(client.post("/api/videos", params={"vertical": 90}, content=b"x"), 422, "angle_out_of_range")
    assert_error(client.post("/api/videos", content=b""), 400, "empty")
    assert not any(app.state.service.root.iterdir())  # nothing left behind
    assert client.get("/api/config").status_code == 200


# ---------------------------------------------------------------------- live
def test_the_live_websocket_returns_redirected_frames(client, astronaut):
    frame = face_frame(astronaut)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(json.dumps({"vertical": 10, "horizontal": 5}))
        assert ws.receive_json() == {"vertical": 10.0, "horizontal": 5.0}
        for _ in range(2):
            ws.send_bytes(jpeg.tobytes())
            info = ws.receive_json()
            assert info["faces"] == 1 and info["eyes"] == 2 and (info["width"], info["height"]) == SIZE
            out = cv2.imdecode(np.frombuffer(ws.receive_bytes(), np.uint8), cv2.IMREAD_COLOR)
            assert out.shape == (SIZE[1], SIZE[0], 3)
        # Bad messages get an error and the session goes on.
        ws.send_text(json.dumps({"vertical": 40}))
        err = ws.receive_json()
        assert err["code"] == "angle_out_of_range" and not err["frame"]
        ws.send_text("not json")
        assert ws.receive_json()["code"] == "bad_message"
        ws.send_bytes(b"garbage")
        err = ws.receive_json()
        assert err["code"] == "unreadable" and err["frame"]
        ws.send_bytes(bytes(MB + 1))
        assert ws.receive_json()["code"] == "too_large"
        ws.send_bytes(jpeg.tobytes())
        assert ws.receive_json()["faces"] == 1
        assert cv2.imdecode(np.frombuffer(ws.receive_bytes(), np.uint8), cv2.IMREAD_COLOR).shape == (SIZE[1], SIZE[0], 3)


# ---------------------------------------------------------------------- lifetime and the command
def test_stopping_the_app_removes_its_uploads(redirector, tmp_path, astronaut):
    app = create_app(redirector, limits=LIMITS, temp_dir=tmp_path)
    root = app.state.service.root
    with TestClient(app) as c:
        assert c.post("/api/videos", content=make_video(tmp_path / "v.avi", astronaut, n=2)).status_code == 202
        assert root.is_dir() and any(root.iterdir())
    assert not root.exists()


def test_serve_command_checks_its_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for opt in ("--host", "--port", "--weights", "--backend", "--max-photo-mb", "--max-video-mb"):
        assert opt in out
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--max-photo-mb", "0"]) == 2
    assert "--max-photo-mb must be a positive number" in capsys.readouterr().err
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    finally:
        busy.close()
