"""The NumPy backend (deepwarp_fast.numpy_model, numpy_ops): the same outputs as the
PyTorch reference on random inputs and random weights, the same result through the face
pipeline, and no ``import torch`` on the one-photo CLI path."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepwarp_fast import ops, save_weights
from deepwarp_fast.numpy_model import load_numpy_model
from deepwarp_fast import numpy_ops
from kernel_helpers import PARITY_SCALE, perturbed_model
from test_warp_frame import KERNELS, feather, random_case


def _inputs(gen, B=5):
    eyes = torch.rand(B, 3, 41, 51, generator=gen)
    anchors = torch.rand(B, 7, 2, generator=gen) * torch.tensor([50.0, 40.0])
    angles = (torch.rand(B, 2, generator=gen) * 2 - 1) * 25
    return eyes, anchors, angles


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A weights file of a reference model with random weights and BN statistics."""
    model = perturbed_model(scale=PARITY_SCALE, seed=3).eval()
    with torch.no_grad():
        model.lcm.head.bias.zero_()  # a mask near 1/2 that varies, not the initial ~3e-4
        model.lcm.head.weight.normal_(0, 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("w") / "random.safetensors"
    save_weights(model, path)
    return model, path


@pytest.mark.parametrize("which", ["shipped", "random"])
def test_numpy_model_matches_the_reference(gen, random_weights, which):
    if which == "shipped":
        from deepwarp_fast import load_model

        ref, npm = load_model().eval(), load_numpy_model()
    else:
        ref, path = random_weights
        npm = load_numpy_model(path)
    eyes, anchors, angles = _inputs(gen)
    with torch.no_grad():
        flow, mask = ref.fields(eyes, anchors, angles)
        out = ref(eyes, anchors, angles)
    nflow, nmask = npm.fields(eyes.numpy(), anchors.numpy(), angles.numpy())
    nout = npm(eyes.numpy(), anchors.numpy(), angles.numpy())
    assert float(flow.abs().max()) > 0.5, "the case must move pixels"
    assert float(mask.std()) > 1e-2 or which == "shipped"  # the shipped LCM barely acts
    # float32 rounding of ~1,000-term sums over flows of a few pixels
    assert np.abs(nflow - flow.numpy()).max() < 1e-4
    assert np.abs(nmask - mask.numpy()).max() < 1e-5
    assert np.abs(nout - out.numpy()).max() < 1e-4


def test_numpy_model_checks_its_inputs_and_its_file(gen, tmp_path):
    npm = load_numpy_model()
    eyes, anchors, angles = (t.numpy() for t in _inputs(gen, 2))
    with pytest.raises(ValueError, match="eyes must have shape"):
        npm.fields(eyes[:, :2], anchors, angles)
    with pytest.raises(ValueError, match="outside the range"):
        npm.fields(eyes, anchors, angles * 10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        npm.fields(eyes * 2, anchors, angles)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_numpy_model(bad)
    with pytest.raises(FileNotFoundError):
        load_numpy_model(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32])
def test_numpy_warp_frame_matches_the_reference(gen, kernel, dtype):
    frames, index, A, flow, mask = random_case(gen, Hf=97, Wf=131, C=4, dtype=dtype)
    fe = torch.stack([feather(), feather().sqrt(), feather() ** 2, feather()])
    ref = ops.warp_frame_reference(frames, index, A, flow, mask, fe, kernel=kernel, channels=3)
    out = numpy_ops.warp_frame(frames.numpy(), index.numpy(), A.numpy(), flow.numpy(), mask.numpy(), fe.numpy(),
                               kernel=kernel, channels=3)
    assert out.dtype == frames.numpy().dtype and out.shape == tuple(ref.shape)
    assert np.array_equal(out[..., 3], frames.numpy()[..., 3])
    assert (ref != frames).any(-1).sum() > 2000, "the case must change many pixels"
    d = np.abs(out.astype(np.float64) - ref.double().numpy())
    white = ops.frame_maxval(dtype)
    # the separable sum rounds differently: one level on a few 8/16-bit pixels at most
    assert d.max() <= (1.0 if dtype != torch.float32 else 3e-5 * white)
    if dtype == torch.uint8:
        assert (d > 0).mean() < 1e-3
    outside = ops.warp_frame_weights(A, fe, *frames.shape[1:3])
    for n in range(frames.shape[0]):
        keep = ((outside[index == n] > 0).sum(0) == 0).numpy()
        assert np.array_equal(out[n][keep], frames.numpy()[n][keep])


def test_numpy_frame_tables_equal_the_ops_tables(gen):
    _, index, A, _, _ = random_case(gen)
    p, b, largest = ops.warp_frame_tables(A, index, 41, 51, 97, 131)
    pn, bn, ln = numpy_ops.frame_tables(A.numpy(), index.numpy(), 41, 51, 97, 131)
    assert np.array_equal(p.numpy(), pn) and np.array_equal(b.numpy(), bn) and largest == ln


# ------------------------------------------------------------------------ the face pipeline
def _astronaut_bgr():
    pytest.importorskip("dlib")
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skdata.astronaut()[..., ::-1])


def test_numpy_pipeline_matches_the_torch_pipeline_on_a_real_photo():
    from deepwarp_fast.face import GazeRedirector

    img = _astronaut_bgr()
    ref = GazeRedirector(device="cpu").redirect(img, 12, -8, color="bgr")
    got = GazeRedirector(backend="numpy").redirect(img, 12, -8, color="bgr")
    assert ref.eyes_redirected == got.eyes_redirected == 2
    assert [f.box for f in got.faces] == [f.box for f in ref.faces]
    assert np.abs(got.faces[0].landmarks - ref.faces[0].landmarks).max() < 1e-3
    changed = ref.image != img
    assert changed.any(-1).sum() > 200, "the eyes must move"
    d = np.abs(got.image.astype(int) - ref.image.astype(int))
    # float32 rounding in the fields and the frame warp: one level on a few pixels
    assert d.max() <= 1 and (d > 0).mean() < 1e-4
    ys, xs = np.nonzero((got.image != img).any(-1))  # only the eyes change
    assert 180 < xs.min() and xs.max() < 270 and 80 < ys.min() and ys.max() < 125


def test_one_photo_cli_never_imports_torch(tmp_path):
    img = _astronaut_bgr()
    import cv2

    src, dst = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(src), img)
    code = ("import sys; from deepwarp_fast.cli import main; rc = main(['redirect', sys.argv[1], '-o', sys.argv[2], "
            "'--vertical', '10', '-q']); assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 face(s), 2 eye(s) redirected" in r.stdout
    out = cv2.imread(str(dst))
    assert (out != img).any(-1).sum() > 200
