"""Fuzzing the image and video readers through `deepwarp-fast redirect`: a few hundred
mutated files (bytes flipped, truncated, spliced, headers garbled), each of which must be
processed (exit 0, or 4 with no face) or refused with exit 3 and a one-line error:
never a traceback, never exit 1, never a temporary file left behind."""
import time

import numpy as np
import pytest

pytest.importorskip("dlib")
cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")

from deepwarp_fast.cli import main  # noqa: E402
from deepwarp_fast.commands import redirect as cmd  # noqa: E402

N_IMAGES = 300
N_VIDEOS = 150
TIME_LIMIT_S = 240  # far above the ~5 s it takes on 2 cores: a hang fails, not a slow machine


def _seed_files(folder):
    """Small valid files of each kind the readers take."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:96]
    rgb = np.dstack([xx * 2, yy * 3, (xx + yy)]).astype(np.uint8) + rng.integers(0, 20, (72, 96, 3), dtype=np.uint8)
    seeds = {}
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(folder / "seed.jpg", quality=90, exif=exif.tobytes())
    im.save(folder / "seed.png", exif=exif.tobytes())
    cv2.imwrite(str(folder / "seed16.png"), (rgb[..., 0].astype(np.uint16) * 257))
    cv2.imwrite(str(folder / "seed.bmp"), rgb)
    skdata = pytest.importorskip("skimage.data")
    Image.fromarray(np.ascontiguousarray(skdata.astronaut()[0:256, 100:356])).save(folder / "face.jpg", quality=90)
    for name in ("seed.jpg", "seed.png", "seed16.png", "seed.bmp", "face.jpg"):
        seeds[name] = (folder / name).read_bytes()
    for name, fourcc in (("seed.avi", "MJPG"), ("seed.mp4", "mp4v")):
        w = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*fourcc), 10.0, (96, 72))
        for i in range(6):
            w.write(np.roll(rgb, 3 * i, axis=1))
        w.release()
        seeds[name] = (folder / name).read_bytes()
    return seeds


def _mutate(data: bytes, rng) -> bytes:
    d = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # flip a few bytes anywhere
        for _ in range(int(rng.integers(1, 12))):
            d[int(rng.integers(0, len(d)))] ^= int(rng.integers(1, 256))
    elif kind == 1:  # garble the header, where sizes and counts live
        for _ in range(int(rng.integers(1, 6))):
            d[int(rng.integers(0, min(len(d), 120)))] = int(rng.integers(0, 256))
    elif kind == 2:  # truncate
        d = d[: int(rng.integers(1, len(d)))]
    elif kind == 3:  # splice: a block copied over another place
        a, b = sorted(int(x) for x in rng.integers(0, len(d), 2))
        n = int(rng.integers(1, max(2, len(d) // 8)))
        d[b:b + n] = d[a:a + n]
    elif kind == 4:  # a run of garbage in the middle
        a = int(rng.integers(len(d) // 4, 3 * len(d) // 4))
        n = int(rng.integers(1, max(2, len(d) // 5)))
        d[a:a + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    else:  # a block removed
        a = int(rng.integers(0, len(d)))
        del d[a:a + int(rng.integers(1, max(2, len(d) // 6)))]
    return bytes(d)


@pytest.fixture(scope="module")
def shared_redirector():
    from deepwarp_fast.face import GazeRedirector

    return GazeRedirector(device="cpu")


def test_mutated_images_and_videos_are_processed_or_refused_with_exit_3(tmp_path, shared_redirector, monkeypatch, capsys):
    import deepwarp_fast.face as face

    # One redirector for every run: the readers are under test, not model loading.
    monkeypatch.setattr(face, "GazeRedirector", lambda *a, **k: shared_redirector)
    seeds = _seed_files(tmp_path)
    rng = np.random.default_rng(13)
    plan = [n for n in seeds if n.endswith((".jpg", ".png", ".bmp"))]
    vids = [n for n in seeds if n.endswith((".avi", ".mp4"))]
    cases = [plan[i % len(plan)] for i in range(N_IMAGES)] + [vids[i % len(vids)] for i in range(N_VIDEOS)]
    work = tmp_path / "work"
    work.mkdir()
    counts = {}
    bykind = {}
    t0 = time.perf_counter()
    for i, name in enumerate(cases):
        ext = name[name.rindex("."):]
        src, dst = work / f"in{i}{ext}", work / f"out{i}{'.png' if ext != '.mp4' and ext != '.avi' else ext}"
        src.write_bytes(_mutate(seeds[name], rng))
        status = main(["redirect", str(src), "-o", str(dst), "-q", "--detect-every", "3"])
        out, err = capsys.readouterr()
        what = f"case {i} ({name}, {src.stat().st_size} bytes): exit {status}\n{err[-600:]}"
        assert status in (cmd.EXIT_OK, cmd.EXIT_BAD_INPUT, cmd.EXIT_NO_FACE), what
        assert "Traceback" not in err, what
        if status == cmd.EXIT_BAD_INPUT:
            assert "error:" in err or "could not be decoded" in err, what
            if ext in (".jpg", ".png", ".bmp"):
                assert not dst.exists(), what
        else:
            if ext in (".avi", ".mp4"):
                cap = cv2.VideoCapture(str(dst))
                assert cap.read()[0], what
                cap.release()
            else:
                assert cv2.imread(str(dst), cv2.IMREAD_UNCHANGED) is not None, what
        counts[status] = counts.get(status, 0) + 1
        bykind[(ext, status)] = bykind.get((ext, status), 0) + 1
        src.unlink()
        if dst.exists():
            dst.unlink()
        assert time.perf_counter() - t0 < TIME_LIMIT_S, f"fuzzing took over {TIME_LIMIT_S} s ({i + 1} files)"
    assert [p.name for p in work.iterdir()] == [], "temporary files were left behind"
    # The mutations must exercise both outcomes, or the test proves nothing.
    assert counts.get(cmd.EXIT_BAD_INPUT, 0) >= 20 and counts.get(cmd.EXIT_OK, 0) + counts.get(cmd.EXIT_NO_FACE, 0) >= 20, bykind
