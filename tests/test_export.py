"""deepwarp_fast.export_onnx and `deepwarp-fast export-onnx`: the ONNX file run in ONNX
Runtime against the PyTorch model (random weights with flows of several pixels, and the
shipped weights), at batch sizes other than the one it was traced with."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from deepwarp_fast import DeepWarp, accelerate, export_onnx, load_model  # noqa: E402
from deepwarp_fast.cli import main  # noqa: E402
from deepwarp_fast.config import DeepWarpConfig  # noqa: E402
from deepwarp_fast.export import CHECK_TOL, max_onnx_error  # noqa: E402
from kernel_helpers import PARITY_SCALE, perturbed_model  # noqa: E402

pytestmark = pytest.mark.slow  # each export traces the model: ~5 s


@pytest.fixture(scope="module")
def random_model():
    m = perturbed_model(scale=PARITY_SCALE).eval()
    e = torch.rand(2, 3, 41, 51)
    a = torch.rand(2, 7, 2) * torch.tensor([50.0, 40.0])
    with torch.no_grad():
        assert m.fields(e, a, torch.full((2, 2), 10.0))[0].abs().max() > 1.0, "the test needs real flows"
    return m


@pytest.mark.parametrize("outputs", ["image", "fields"])
def test_onnx_runtime_matches_the_model(tmp_path, random_model, outputs):
    path = export_onnx(random_model, tmp_path / f"m_{outputs}.onnx", outputs=outputs, check=False)
    err = max_onnx_error(path, random_model.fuse_bn(), outputs, batches=(1, 3, 8))
    assert err <= CHECK_TOL
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == (["output"] if outputs == "image" else ["flow", "mask"])
    assert [i.name for i in session.get_inputs()] == ["eyes", "anchors", "angles"]


def test_shipped_weights_export_and_check_by_default(tmp_path):
    path = export_onnx(None, tmp_path / "default.onnx")  # check=None: runs ONNX Runtime, raises on mismatch
    model = load_model().eval()
    e = torch.rand(4, 3, 41, 51)
    a = torch.rand(4, 7, 2) * torch.tensor([50.0, 40.0])
    g = torch.tensor([[15.0, 0.0], [-15.0, 0.0], [0.0, 15.0], [0.0, -15.0]])
    out = ort.InferenceSession(path).run(None, {"eyes": e.numpy(), "anchors": a.numpy(), "angles": g.numpy()})[0]
    with torch.no_grad():
        ref = model(e, a, g).numpy()
    assert np.abs(out - ref).max() <= CHECK_TOL
    assert np.abs(ref - e.numpy()).mean() > 1e-3, "the angles must change the eyes"


def test_model_without_lcm_exports_a_mask_of_ones(tmp_path):
    m = DeepWarp(DeepWarpConfig(use_lcm=False)).eval()
    path = export_onnx(m, tmp_path / "nolcm.onnx", outputs="fields")
    e = torch.rand(1, 3, 41, 51).numpy()
    a = (torch.rand(1, 7, 2) * torch.tensor([50.0, 40.0])).numpy()
    flow, mask = ort.InferenceSession(path).run(None, {"eyes": e, "anchors": a, "angles": np.zeros((1, 2), np.float32)})
    assert flow.shape == (1, 2, 41, 51) and np.all(mask == 1.0)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="export the DeepWarp it was built from"):
        export_onnx(accelerate(load_model()), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="outputs must be one of"):
        export_onnx(None, tmp_path / "a.onnx", outputs="flow")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(None, tmp_path / "missing" / "a.onnx")


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export-onnx", "-o", str(out)]) == 0
    assert out.stat().st_size > 100_000 and "outputs output (B, 3, H, W)" in capsys.readouterr().out
    before = out.stat().st_mtime_ns
    assert main(["export-onnx", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.stat().st_mtime_ns == before
