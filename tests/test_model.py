"""The reference DeepWarp model: size, weights round trip, BN folding, gradients."""
import pytest
import torch

from conftest import TINY, inputs, randomize
from deepwarp_fast import DeepWarp, DeepWarpConfig, DeepWarpOutput, count_parameters, load_model, read_metadata, save_weights
from deepwarp_fast.model import FoldedConvReLU


def expected_parameter_count(cfg: DeepWarpConfig) -> int:
    """Written from SPEC.md's architecture, independently of the module."""
    n = (2 * cfg.angle_hidden + cfg.angle_hidden) + (cfg.angle_hidden * cfg.angle_dim + cfg.angle_dim)

    def tower(cin, chans, ks):
        total = 0
        for c, k in zip(chans, ks):
            total += cin * c * k * k + 2 * c  # conv (no bias) + BN gamma, beta
            cin = c
        return total + cin * 2 + 2  # 1x1 head with bias

    n += tower(cfg.input_channels, cfg.coarse_channels, cfg.coarse_kernels)
    n += tower(cfg.input_channels + 5, cfg.fine_channels, cfg.fine_kernels)
    if cfg.use_lcm:
        cin = cfg.coarse_channels[cfg.lcm_feature_layer] + cfg.fine_channels[cfg.lcm_feature_layer]
        for c in cfg.lcm_channels:
            n += cin * c + 2 * c
            cin = c
        n += cin * 2 + 2
    return n


def test_default_parameter_count():
    cfg = DeepWarpConfig()
    n = count_parameters(DeepWarp(cfg))
    expected = expected_parameter_count(cfg)
    assert n == expected, f"default model has {n} parameters, SPEC.md implies {expected}"
    # SPEC.md: "about 60k parameters, about 240 KB in fp32".
    assert 55_000 < n < 65_000, f"default model has {n} parameters ({4 * n / 1000:.0f} KB fp32), SPEC.md says about 60k"


def test_forward_shapes_and_intermediates(gen):
    cfg = DeepWarpConfig()
    model = randomize(DeepWarp(cfg)).eval()
    eyes, anchors, angles = inputs(gen, 4, cfg)
    out = model(eyes, anchors, angles)
    assert out.shape == eyes.shape and out.dtype == torch.float32
    res = model(eyes, anchors, angles, return_intermediates=True)
    assert isinstance(res, DeepWarpOutput)
    assert torch.equal(res.output, out)
    assert res.coarse.shape == eyes.shape and res.fine.shape == eyes.shape
    assert res.flow.shape == (4, 2, cfg.height, cfg.width) and res.lcm_mask.shape == (4, 1, cfg.height, cfg.width)
    M = res.lcm_mask
    torch.testing.assert_close(out, res.fine * (1 - M) + M, atol=1e-6, rtol=0)


def test_untrained_default_model_is_near_identity(gen):
    cfg = DeepWarpConfig()
    model = DeepWarp(cfg).eval()
    eyes, anchors, angles = inputs(gen, 2, cfg)
    res = model(eyes, anchors, angles, return_intermediates=True)
    assert torch.equal(res.fine, eyes)  # zero flow heads: the exact identity warp
    assert (res.output - eyes).abs().max() < 1e-3  # LCM starts almost closed


def test_no_lcm_config_returns_fine(gen):
    cfg = DeepWarpConfig(use_lcm=False)
    model = randomize(DeepWarp(cfg)).eval()
    eyes, anchors, angles = inputs(gen, 2, cfg)
    res = model(eyes, anchors, angles, return_intermediates=True)
    assert model.lcm is None and res.lcm_mask is None
    assert torch.equal(res.output, res.fine)


def test_save_load_round_trip_bit_exact(gen, tmp_path):
    cfg = DeepWarpConfig()
    model = randomize(DeepWarp(cfg), seed=3).eval()
    path = save_weights(model, tmp_path / "w.safetensors", provenance={"note": "test"})
    loaded = load_model(path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    meta = read_metadata(path)
    assert meta["config"] == cfg and meta["provenance"]["note"] == "test"
    eyes, anchors, angles = inputs(gen, 3, cfg)
    assert torch.equal(model(eyes, anchors, angles), loaded(eyes, anchors, angles))


def test_weights_file_never_unpickles(tmp_path):
    # A pickle file is rejected with a clear error, not executed.
    path = tmp_path / "evil.safetensors"
    torch.save({"x": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_model(path)


def test_save_weights_checks_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_weights(DeepWarp(), tmp_path / "nope" / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_config_round_trip_and_checks():
    cfg = DeepWarpConfig(coarse_channels=(8, 16), coarse_kernels=(3, 1), fine_channels=(8, 16), fine_kernels=(3, 1), lcm_feature_layer=1)
    assert DeepWarpConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="odd"):
        DeepWarpConfig(coarse_kernels=(4, 3, 3, 1))
    with pytest.raises(ValueError, match="unknown DeepWarpConfig fields"):
        DeepWarpConfig.from_dict({"heigth": 41})


def test_bn_folding_matches_unfolded_in_eval(gen):
    cfg = DeepWarpConfig()
    # float64: folding is exact algebra, so only rounding separates the two. (Random
    # weights give pre-tanh activations in the hundreds, which float32 would amplify.)
    model = randomize(DeepWarp(cfg).double(), seed=5).eval()
    fused = model.fuse_bn()
    assert any(isinstance(m, FoldedConvReLU) for m in fused.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    eyes, anchors, angles = inputs(gen, 4, cfg, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(eyes, anchors, angles), model(eyes, anchors, angles), atol=1e-9, rtol=0)


def test_gradcheck_whole_model_tiny(gen):
    """Gradients of the whole model w.r.t. every parameter, the eyes and the angles (float64)."""
    model = randomize(DeepWarp(TINY).double(), seed=7).train()
    eyes, anchors, angles = inputs(gen, 2, TINY, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    eyes.requires_grad_(True)
    angles.requires_grad_(True)

    def f(eyes, angles, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (eyes, anchors, angles), {"validate": False})

    # Thousands of tiny ops: one intra-op thread (a busy machine's thread pool made it minutes).
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.autograd.gradcheck(f, (eyes, angles, *params), eps=1e-6, atol=1e-5)
    finally:
        torch.set_num_threads(saved)


def test_bfloat16_model_close_to_float32(gen):
    cfg = DeepWarpConfig()
    # Moderate weights, so that the flow is smooth enough for bf16 rounding to matter little.
    model = randomize(DeepWarp(cfg), seed=2, scale=0.1).eval()
    eyes, anchors, angles = inputs(gen, 2, cfg)
    with torch.no_grad():
        ref = model(eyes, anchors, angles, return_intermediates=True)
        out = model.to(torch.bfloat16)(eyes.to(torch.bfloat16), anchors, angles, return_intermediates=True)
    assert out.output.dtype == torch.bfloat16
    assert ref.flow.abs().max() > 1.0, "the test needs a non-trivial flow"
    err = (out.output.float() - ref.output).abs()
    assert err.mean() < 0.02 and err.max() < 0.25, (float(err.mean()), float(err.max()))
