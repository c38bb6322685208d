"""Every input error names the argument and what was expected."""
import pytest
import torch

from conftest import rand
from deepwarp_fast import BackendUnavailableError, DeepWarp, DeepWarpConfig
from deepwarp_fast.backends import resolve_backend

CFG = DeepWarpConfig()


@pytest.fixture(scope="module")
def model():
    return DeepWarp(CFG).eval()


def good(gen, B=2):
    return (rand(gen, B, 3, 41, 51), rand(gen, B, 7, 2, lo=5, hi=30), rand(gen, B, 2, lo=-10, hi=10))


CASES = {
    "eyes rank": (lambda e, a, g: (e[0], a, g), ValueError, r"eyes must have shape \(B, 3, 41, 51\) \(4 dims\)"),
    "eyes size": (lambda e, a, g: (e[..., :40, :], a, g), ValueError, r"eyes must have shape \(B, 3, 41, 51\)"),
    "eyes channels": (lambda e, a, g: (e[:, :1], a, g), ValueError, r"eyes must have shape"),
    "eyes dtype": (lambda e, a, g: ((e * 255).to(torch.uint8), a, g), TypeError, r"eyes must be a floating tensor"),
    "eyes type": (lambda e, a, g: (e.numpy(), a, g), TypeError, r"eyes must be a torch.Tensor"),
    "anchors shape": (lambda e, a, g: (e, a[:, :6], g), ValueError, r"anchors must have shape \(2, 7, 2\)"),
    "anchors batch": (lambda e, a, g: (e, a[:1], g), ValueError, r"anchors must have shape \(2, 7, 2\) to match"),
    "angles shape": (lambda e, a, g: (e, a, g[:, :1]), ValueError, r"angles must have shape \(2, 2\)"),
    "angles rank": (lambda e, a, g: (e, a, g[0]), ValueError, r"angles must have shape \(B, 2\)"),
    "angles dtype": (lambda e, a, g: (e, a, g.long()), TypeError, r"angles must be a floating tensor"),
    "empty batch": (lambda e, a, g: (e[:0], a[:0], g[:0]), ValueError, r"empty batch"),
    "nan angles": (lambda e, a, g: (e, a, g.index_fill(1, torch.tensor([0]), float("nan"))), ValueError, r"angles contains NaN or infinite"),
    "inf anchors": (lambda e, a, g: (e, a.index_fill(1, torch.tensor([3]), float("inf")), g), ValueError, r"anchors contains NaN or infinite"),
    "eyes above 1": (lambda e, a, g: (e * 255, a, g), ValueError, r"eyes must hold values in \[0, 1\].*max"),
    "eyes below 0": (lambda e, a, g: (e - 0.5, a, g), ValueError, r"eyes must hold values in \[0, 1\].*min"),
    "nan eyes": (lambda e, a, g: (e.index_fill(2, torch.tensor([4]), float("nan")), a, g), ValueError, r"eyes contains NaN"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_clearly(gen, model, case):
    mutate, exc, match = CASES[case]
    with pytest.raises(exc, match=match):
        model(*mutate(*good(gen)))


def test_devices_must_match(gen, model):
    eyes, anchors, angles = good(gen)
    with pytest.raises(ValueError, match=r"eyes and angles must be on the same device"):
        model(eyes, anchors, angles.to("meta"))


def test_good_inputs_pass(gen, model):
    eyes, anchors, angles = good(gen)
    assert model(eyes, anchors, angles).shape == eyes.shape
    # Non-contiguous inputs are accepted.
    e2 = eyes.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert torch.equal(model(e2, anchors, angles), model(eyes, anchors, angles))


def test_unknown_backend_named():
    with pytest.raises(ValueError, match=r"unknown backend 'fast'"):
        resolve_backend("fast", "cpu")


def test_unavailable_backend_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailableError, match=r"backend 'triton' is unavailable for cpu tensors: .*interpreter"):
        resolve_backend("triton", "cpu")


def test_auto_picks_the_extension_when_it_loads_else_the_reference(monkeypatch):
    from deepwarp_fast import _ext, backends

    expected = "cuda" if _ext.load()[0] is not None else "reference"
    assert resolve_backend("auto", "cpu") == expected
    # With the extension unavailable, "auto" falls back to the reference.
    monkeypatch.setattr(backends, "_probe_cuda_ext", lambda device_type: (False, "hidden by the test"))
    assert resolve_backend("auto", "cpu") == "reference"


def test_auto_says_once_which_backend_it_picked(monkeypatch):
    import warnings

    from deepwarp_fast import backends

    monkeypatch.setattr(backends, "_announced", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = resolve_backend("auto", "cpu", what="the test")
        for _ in range(3):
            resolve_backend("auto", "cpu", what="the test")
    said = [w for w in caught if issubclass(w.category, backends.BackendChoiceWarning)]
    assert len(said) == 1 and f"picked {first!r}" in str(said[0].message)


def test_cuda_backend_on_single_ops_points_to_accelerate(gen):
    from deepwarp_fast import ops

    img, flow = rand(gen, 1, 3, 5, 6), rand(gen, 1, 2, 5, 6)
    with pytest.raises(BackendUnavailableError, match=r"does not implement ops.warp.*accelerate"):
        ops.warp(img, flow, backend="cuda")
    with pytest.raises(BackendUnavailableError, match=r"does not implement DeepWarp.*accelerate"):
        DeepWarp(CFG, backend="cuda")(*good(gen))
    # "auto" on single ops never resolves to the extension.
    assert ops.resolve_backend("auto", "cpu") in ("reference", "triton")
