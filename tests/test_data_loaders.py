"""Real-data loaders on tiny files made here: UnityEyes (jpg + json), Columbia Gaze
(file-name convention, eyes from the face pipeline), a folder + CSV; mirroring; corrupt
and partial files skipped with a count and a message, never a crash mid-epoch."""
import json
import math

import numpy as np
import pytest
import torch

from deepwarp_fast.data import (ColumbiaGazePairs, FolderPairs, SkippedFileWarning, UnityEyesPairs, crop_transform,
                                parse_columbia_name, render_pairs)

PIL = pytest.importorskip("PIL.Image")


def save_rgb(path, arr, quality=95):
    from PIL import Image

    Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path, quality=quality)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# ----------------------------------------------------------------------------- UnityEyes

IW, IH = 320, 240
INNER, OUTER = np.array([100.0, 120.0]), np.array([220.0, 124.0])   # an image-right eye: caruncle on the left
IRIS_C, IRIS_R = np.array([165.0, 117.0]), 20.0


def unity_sample(folder, name, look, rng):
    """A UnityEyes-like render: lids through the corners, a dark iris disc; the JSON with y up."""
    t = np.linspace(0, 1, 9)
    xs = INNER[0] + (OUTER[0] - INNER[0]) * t
    base = INNER[1] + (OUTER[1] - INNER[1]) * t
    upper = np.stack([xs, base - 34 * np.sin(np.pi * t)], 1)
    lower = np.stack([xs[::-1], (base + 22 * np.sin(np.pi * t))[::-1]], 1)[1:-1]
    margin = np.concatenate([upper, lower])                       # a loop of 16 points from the inner corner
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    caruncle = np.stack([108 + 6 * np.cos(ang), 121 + 4 * np.sin(ang)], 1)
    iris = np.stack([IRIS_C[0] + IRIS_R * np.cos(ang * 4), IRIS_C[1] + IRIS_R * np.sin(ang * 4)], 1)
    img = np.ones((IH, IW, 3), np.float32) * np.array([0.8, 0.6, 0.5]) + rng.normal(0, 0.02, (IH, IW, 3))
    yy, xx = np.mgrid[0:IH, 0:IW].astype(np.float64)
    tt = np.clip((xx - INNER[0]) / (OUTER[0] - INNER[0]), 0, 1)
    bb = INNER[1] + (OUTER[1] - INNER[1]) * tt
    inside = (xx > INNER[0]) & (xx < OUTER[0]) & (yy > bb - 34 * np.sin(np.pi * tt)) & (yy < bb + 22 * np.sin(np.pi * tt))
    img[inside] = [0.9, 0.9, 0.88]
    img[inside & ((xx - IRIS_C[0]) ** 2 + (yy - IRIS_C[1]) ** 2 < IRIS_R ** 2)] = [0.12, 0.08, 0.05]
    save_rgb(folder / f"{name}.jpg", img)

    def fmt(pts):
        return [f"({x:.4f}, {IH - y:.4f}, 9.5)" for x, y in pts]
    meta = {"interior_margin_2d": fmt(margin), "caruncle_2d": fmt(caruncle), "iris_2d": fmt(iris),
            "eye_details": {"look_vec": f"({look[0]}, {look[1]}, {look[2]}, 0.0)", "pupil_size": "0.1"},
            "head_pose": "(351.0, 178.0, 0.0)"}
    (folder / f"{name}.json").write_text(json.dumps(meta))


def test_unityeyes_pairs(tmp_path):
    rng = np.random.default_rng(0)
    a = tmp_path / "id_a"
    a.mkdir()
    looks = [(0.0, 0.0, -1.0), (0.2, 0.1, -0.97), (-0.1, -0.15, -0.98)]
    for i, lk in enumerate(looks):
        unity_sample(a, str(i + 1), lk, rng)
    (a / "9.json").write_text("{not json")                            # corrupt metadata
    save_rgb(a / "9.jpg", np.zeros((8, 8, 3)))
    b = tmp_path / "id_b"
    b.mkdir()
    unity_sample(b, "1", looks[0], rng)
    unity_sample(b, "2", looks[1], rng)
    truncate(b / "2.jpg")                                             # a partial image
    with pytest.warns(SkippedFileWarning, match="skipped 1 UnityEyes"):
        ds = UnityEyesPairs(tmp_path)
    assert ds.skipped == 1
    assert len(ds) == 3 * 2 + 2                                       # ordered pairs within each folder
    g = [(math.degrees(math.asin(l[1] / np.linalg.norm(l))), math.degrees(math.atan2(l[0], -l[2]))) for l in looks]
    seen = 0
    with pytest.warns(SkippedFileWarning, match="2.jpg"):
        items = [ds[k] for k in range(len(ds))]                       # a whole epoch: no crash
    assert ds.skipped == 2
    for k, s in enumerate(items):
        assert s["input"].shape == (3, 41, 51) and s["anchors"].shape == (7, 2)
        i, j = ds.pairs[k]
        if ds.records[i].path.startswith(str(a)) and ds.records[j].path.startswith(str(a)):
            seen += 1
            gi, gj = g[int(ds.records[i].path[-5]) - 1], g[int(ds.records[j].path[-5]) - 1]
            # mirrored (the caruncle is on the image's left): the horizontal angle is negated
            expect = torch.tensor([gj[0] - gi[0], -(gj[1] - gi[1])])
            assert torch.allclose(s["angles"], expect, atol=1e-3), (s["angles"], expect)
        anc = s["anchors"]
        assert anc[0, 0] < anc[3, 0]                                  # outer corner on the patch's left
        assert abs((anc[3] - anc[0]).norm().item() - 25.5) < 0.05     # crop_scale 2: corner distance = W / 2
        assert torch.allclose((anc[0] + anc[3]) / 2, torch.tensor([25.0, 20.0]), atol=0.05)
        assert abs(anc[0, 1] - anc[3, 1]) < 0.05                      # level_roll
        assert anc[1, 1] < anc[0, 1] - 2 and anc[2, 1] < anc[0, 1] - 2  # upper lid above the corner line
        assert anc[4, 1] > anc[0, 1] + 1 and anc[5, 1] > anc[0, 1] + 1  # lower lid below it
        # the pupil anchor lands on the dark iris, the upper-lid points on the lid edge
        lum = s["input"].mean(0)
        px = lum[int(round(anc[6, 1].item())), int(round(anc[6, 0].item()))]
        assert px < 0.3
        for q in (1, 2):
            x, y = int(round(anc[q, 0].item())), anc[q, 1].item()
            assert lum[int(math.floor(y)) - 1, x] < 0.85 and lum[int(math.ceil(y)) + 1, x] > 0.8
    assert seen == 6
    assert abs(items[0]["tilt"].item()) > 0.5                         # the corners' roll is reported


def test_unityeyes_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        UnityEyesPairs(tmp_path / "missing")
    with pytest.raises(ValueError, match="group_by"):
        UnityEyesPairs(tmp_path, group_by="nope")
    ds = UnityEyesPairs(tmp_path)
    assert len(ds) == 0
    with pytest.raises(IndexError):
        ds[0]


def test_crop_transform_mirrors_image_right_eyes():
    A, mirrored, tilt = crop_transform([220.0, 124.0], [100.0, 120.0], 51, 41)
    assert mirrored
    pts = np.array([[220.0, 124.0], [100.0, 120.0]]) @ A[:, :2].T + A[:, 2]
    assert pts[0, 0] < pts[1, 0]                                      # outer corner to the left
    assert np.allclose(pts[:, 1], 20.0) and np.allclose(pts[1, 0] - pts[0, 0], 25.5)
    assert tilt == pytest.approx(-math.degrees(math.atan2(4, 120)))   # inner corner higher in the mirror
    A, mirrored, tilt = crop_transform([100.0, 120.0], [220.0, 124.0], 51, 41, level_roll=False)
    assert not mirrored and tilt == pytest.approx(math.degrees(math.atan2(4, 120)))


# ----------------------------------------------------------------------------- folder + CSV

def test_folder_pairs(tmp_path):
    r = render_pairs(5, 3, camera=False)
    rows = ["path,vertical,horizontal,sequence,eye," + ",".join(f"x{i},y{i}" for i in range(7))]
    gaze = [(0.0, 0.0), (10.0, -5.0), (-8.0, 12.0)]
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2").mkdir()
    for i in range(3):
        save_rgb(tmp_path / "s1" / f"{i}.png", r["input"][i].permute(1, 2, 0).numpy())
        a = r["anchors"][i].numpy()
        rows.append(f"s1/{i}.png,{gaze[i][0]},{gaze[i][1]},,left," + ",".join(f"{x:.4f},{y:.4f}" for x, y in a))
    # the other eye: a mirrored patch, anchors in the image's pixels in SPEC.md order
    for i in range(2):
        save_rgb(tmp_path / "s2" / f"{i}.png", r["input"][i].flip(-1).permute(1, 2, 0).numpy())
        a = r["anchors"][i].numpy().copy()
        a[:, 0] = 50 - a[:, 0]
        rows.append(f"s2/{i}.png,{gaze[i][0]},{-gaze[i][1]},,right," + ",".join(f"{x:.4f},{y:.4f}" for x, y in a))
    rows.append("s2/missing.png,1,2,,right," + ",".join(["1"] * 14))  # a file that does not exist
    rows.append("s1/3.png,abc,0,,left," + ",".join(["1"] * 14))      # a corrupt row
    (tmp_path / "gaze.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(SkippedFileWarning, match="skipped 1 CSV rows"):
        ds = FolderPairs(tmp_path)
    assert len(ds) == 3 * 2 + 3 * 2                                   # s1: 3 images; s2: 3 of the other eye
    with pytest.warns(SkippedFileWarning, match="missing.png"):
        items = [ds[k] for k in range(len(ds))]
    assert ds.skipped == 2
    for k, s in enumerate(items):
        i, j = ds.pairs[k]
        ri, rj = ds.records[i], ds.records[j]
        if "missing" in ri.path or "missing" in rj.path:
            continue                                                  # replaced by the next readable pair
        n_i, n_j = int(ri.path[-5]), int(rj.path[-5])
        # back in the canonical frame: the rendered patch, its anchors, SPEC.md angles
        assert torch.allclose(s["input"], r["input"][n_i], atol=1 / 255 + 1e-6)
        assert torch.allclose(s["anchors"], r["anchors"][n_i], atol=1e-3)
        expect = torch.tensor([gaze[n_j][0] - gaze[n_i][0], gaze[n_j][1] - gaze[n_i][1]])
        assert torch.allclose(s["angles"], expect, atol=1e-5)


def test_folder_pairs_crops_larger_images(tmp_path):
    r = render_pairs(2, 8, camera=False, height=82, width=102)
    rows = ["path,vertical,horizontal," + ",".join(f"x{i},y{i}" for i in range(7))]
    for i in range(2):
        save_rgb(tmp_path / f"{i}.png", r["input"][i].permute(1, 2, 0).numpy())
        rows.append(f"{i}.png,{5 * i},0," + ",".join(f"{x:.4f},{y:.4f}" for x, y in r["anchors"][i].numpy()))
    (tmp_path / "gaze.csv").write_text("\n".join(rows) + "\n")
    ds = FolderPairs(tmp_path)
    s = ds[0]
    assert s["input"].shape == (3, 41, 51)
    assert torch.allclose((s["anchors"][0] + s["anchors"][3]) / 2, torch.tensor([25.0, 20.0]), atol=1e-3)
    assert s["angles"].tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match="missing column"):
        (tmp_path / "bad.csv").write_text("file,v,h\n")
        FolderPairs(tmp_path, csv_name="bad.csv")
    with pytest.raises(FileNotFoundError, match="gaze.csv"):
        FolderPairs(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- Columbia Gaze

def test_columbia_names():
    assert parse_columbia_name("0001_2m_-15P_10V_-5H.jpg") == {"subject": 1, "distance": 2, "pose": -15,
                                                               "vertical": 10, "horizontal": -5}
    assert parse_columbia_name("0056_2m_30P_0V_15H.png")["pose"] == 30
    assert parse_columbia_name("0001_2m_-15P_10V.jpg") is None
    assert parse_columbia_name("notes.txt") is None


def test_columbia_pairs_grouping_without_loading(tmp_path):
    d = tmp_path / "0001"
    d.mkdir()
    for name in ("0001_2m_0P_0V_0H.jpg", "0001_2m_0P_10V_5H.jpg", "0001_2m_15P_0V_0H.jpg", "readme.jpg"):
        save_rgb(d / name, np.full((8, 8, 3), 0.5))
    with pytest.warns(SkippedFileWarning, match="skipped 1 files"):
        ds = ColumbiaGazePairs(tmp_path)
    assert len(ds.records) == 6                    # two eyes per image
    assert len(ds) == 4                            # same subject, distance, pose and eye: 2 ordered pairs per eye
    for i, j in ds.pairs:
        assert ds.records[i].group == ds.records[j].group and ds.records[i].path != ds.records[j].path


def test_columbia_pairs_with_face_pipeline(tmp_path):
    pytest.importorskip("dlib")
    face = pytest.importorskip("deepwarp_fast.face")
    skimage_data = pytest.importorskip("skimage.data")
    try:
        face.FaceDetector()
    except Exception as e:  # noqa: BLE001 - the landmark model may be missing
        pytest.skip(f"face detector unavailable: {e}")
    img = skimage_data.astronaut().astype(np.float32) / 255.0
    d = tmp_path / "0001"
    d.mkdir()
    save_rgb(d / "0001_2m_0P_0V_0H.jpg", img)
    save_rgb(d / "0001_2m_0P_10V_5H.jpg", img)
    d2 = tmp_path / "0002"
    d2.mkdir()
    save_rgb(d2 / "0002_2m_0P_0V_0H.jpg", np.full((64, 64, 3), 0.5))    # no face in it
    save_rgb(d2 / "0002_2m_0P_10V_0H.jpg", img)
    ds = ColumbiaGazePairs(tmp_path, cache_dir=tmp_path / "cache")
    with pytest.warns(SkippedFileWarning, match="no face"):
        items = [ds[k] for k in range(len(ds))]
    assert ds.skipped == 1
    for k, s in enumerate(items):
        i, j = ds.pairs[k]
        if "0002" in ds.records[i].path:
            continue
        side = ds.records[i].group[3]
        expect = [10.0, 5.0] if side == "image_left" else [10.0, -5.0]   # mirrored eye: horizontal negated
        if "10V" in ds.records[i].path:
            expect = [-expect[0], -expect[1]]
        assert s["angles"].tolist() == expect
        anc = s["anchors"]
        assert anc[0, 0] < anc[3, 0]
        assert abs((anc[3] - anc[0]).norm().item() - 25.5) < 0.05
        lum = s["input"].mean(0)
        assert lum[int(round(anc[6, 1].item())), int(round(anc[6, 0].item()))] < lum.mean()   # pupil on the dark iris
    assert any((tmp_path / "cache").iterdir())
