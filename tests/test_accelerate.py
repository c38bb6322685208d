"""deepwarp_fast.accelerate: same weights, same outputs, same inputs and checks as the
reference DeepWarp, on every backend that runs here (CUDA graphs and low precision on a GPU)."""
import contextlib
import copy
import warnings

import pytest
import torch

from conftest import HAS_CUDA, TINY, inputs, randomize
from deepwarp_fast import BackendUnavailableError, DeepWarp, DeepWarpConfig, accelerate, save_weights
from deepwarp_fast.accelerate import AcceleratedDeepWarp, fused_path_supported
from deepwarp_fast.backends import backend_status

EXT_CPU = backend_status("cuda", "cpu")[0]
EXT_CUDA = HAS_CUDA and backend_status("cuda", "cuda")[0]
CFG = DeepWarpConfig()
# A config of another size whose structure the fused path covers (odd sizes exercise
# the nearest-upsampling index and the padding of the first layers' map term).
SMALL = DeepWarpConfig(height=15, width=22, angle_hidden=4, angle_dim=5, coarse_channels=(6, 5, 4), coarse_kernels=(5, 3, 1),
                       fine_channels=(7, 6, 4), fine_kernels=(3, 3, 1), lcm_feature_layer=1, lcm_channels=(3, 2))
NO_LCM = DeepWarpConfig(use_lcm=False)


def _model(cfg=CFG, seed=0, scale=0.3, dtype=torch.float32):
    # scale=0.3: flows of many pixels and an LCM mask well inside (0, 1), with activations
    # small enough that float32 rounding stays far below the 1e-4 target.
    return randomize(DeepWarp(cfg).to(dtype), seed=seed, scale=scale).eval()


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _check_parity(acc, model, eyes, anchors, angles, atol):
    with torch.no_grad():
        ref = model(eyes, anchors, angles, return_intermediates=True)
    got = acc(eyes, anchors, angles, return_intermediates=True)
    assert ref.flow.abs().max() > 2.0, "the test needs a flow of several pixels"
    for name in ref._fields:
        r, g = getattr(ref, name), getattr(got, name)
        if r is None:
            assert g is None, name
            continue
        assert g.shape == r.shape and g.dtype == r.dtype, name
        assert _max_err(g, r) <= atol * max(1.0, r.abs().max().item() if name.endswith("flow") else 1.0), (name, _max_err(g, r))
    out = acc(eyes, anchors, angles)
    if acc._whole_forward_ok(eyes):
        # the output-only call runs the extension's whole forward (channels-last
        # convolutions, its own loops for the small layers): float32 rounding apart from the
        # layer-by-layer path, not bit for bit. Both are held to the exact answer (the
        # model in float64): each within 1e-5 of it (float32 paths measure 3e-6 to 8e-6 on
        # these models, the eager reference included), so they differ by up to twice that.
        if model.config == CFG:
            with torch.no_grad():
                exact = copy.deepcopy(model).double()(eyes.double(), anchors.double(), angles.double())
            assert _max_err(out, exact) <= 1e-5 and _max_err(got.output, exact) <= 1e-5
        assert _max_err(out, got.output) <= 2e-5
        assert _max_err(out, ref.output) <= atol
    else:
        torch.testing.assert_close(out, got.output, atol=0, rtol=0)
    return ref, got


@pytest.mark.parametrize("backend", ["auto", "reference"] + (["cuda"] if EXT_CPU else []))
def test_matches_reference_on_cpu(gen, backend):
    model = _model()
    acc = accelerate(model, backend=backend)
    assert acc.fused
    assert acc.op_backends("cpu")["conv"] == ("cuda" if backend in ("cuda", "auto") and EXT_CPU else "reference")
    ref, got = _check_parity(acc, model, *inputs(gen, 3, CFG), atol=1e-4)
    assert 0.02 < float(ref.lcm_mask.mean()) < 0.98


@pytest.mark.parametrize("cfg,scale", [(SMALL, 1.0), (NO_LCM, 0.3)], ids=["small", "no_lcm"])
def test_other_configs_take_the_fused_path(gen, cfg, scale):
    # Scales that give flows of several pixels while float32 stays well-conditioned.
    model = _model(cfg, seed=3, scale=scale)
    acc = accelerate(model)
    assert acc.fused, acc.unfused_reason
    _check_parity(acc, model, *inputs(gen, 2, cfg), atol=1e-4)


def test_float64_is_exact_algebra(gen):
    """In float64 the map-term rewrite of the first layers and the tails match the reference
    to rounding, even with the large random weights where float32 itself is ill-conditioned."""
    model = _model(seed=5, scale=1.0, dtype=torch.float64)
    acc = accelerate(model, backend="reference")
    assert acc.coarse_M.dtype == torch.float64
    eyes, anchors, angles = (t.double() for t in inputs(gen, 2, CFG))
    _check_parity(acc, model, eyes, anchors, angles, atol=1e-9)


def test_float32_error_is_no_worse_than_the_reference(gen):
    """Large random weights (pre-tanh activations in the hundreds): both float32 models drift
    from float64; the accelerated one by at most twice as much as the reference."""
    model64 = _model(seed=5, scale=1.0, dtype=torch.float64)
    eyes, anchors, angles = inputs(gen, 2, CFG)
    with torch.no_grad():
        exact = model64(eyes.double(), anchors.double(), angles.double())
        model32 = model64.float()
        err_ref = _max_err(model32(eyes, anchors, angles), exact)
    err_acc = _max_err(accelerate(model32)(eyes, anchors, angles), exact)
    assert err_ref > 1e-4, "the test needs an ill-conditioned model"
    assert err_acc <= 2 * err_ref, (err_acc, err_ref)


def test_unsupported_config_runs_the_folded_reference(gen):
    model = _model(TINY, seed=7, scale=1.0)
    ok, why = fused_path_supported(TINY)
    assert not ok and "two hidden layers" in why
    with pytest.warns(UserWarning, match="BN-folded reference"):
        acc = accelerate(model)
    assert not acc.fused
    eyes, anchors, angles = inputs(gen, 2, TINY)
    with torch.no_grad():
        torch.testing.assert_close(acc(eyes, anchors, angles), model(eyes, anchors, angles), atol=1e-5, rtol=1e-5)


def test_loads_weights_files_and_keeps_the_weights(gen, tmp_path):
    model = _model(seed=11)
    path = save_weights(model, tmp_path / "w.safetensors", provenance={"how": "test"})
    acc = accelerate(path)
    assert acc.provenance["how"] == "test"
    eyes, anchors, angles = inputs(gen, 2, CFG)
    with torch.no_grad():
        assert _max_err(acc(eyes, anchors, angles), model(eyes, anchors, angles)) <= 1e-4
    # Folded once, from these weights: the map-term factors and folded convs are buffers.
    names = dict(acc.named_buffers())
    assert {"coarse_w0", "coarse_M", "fine_P", "lcm_w3"} <= set(names)
    torch.testing.assert_close(names["lcm_w3"], model.lcm.head.weight.flatten(1))


def test_inputs_are_validated_like_the_reference(gen):
    model = _model()
    acc = accelerate(model)
    eyes, anchors, angles = inputs(gen, 2, CFG)
    bad_cases = [
        (eyes[:, :2], anchors, angles),
        (eyes, anchors[:1], angles),
        (eyes, anchors, angles[:, :1]),
        (eyes * 3, anchors, angles),
        (eyes, anchors.masked_fill(anchors > 30, float("nan")), angles),
        (eyes.numpy(), anchors, angles),
    ]
    for args in bad_cases:
        with pytest.raises((ValueError, TypeError)) as ref_err:
            model(*args)
        with pytest.raises(type(ref_err.value)) as acc_err:
            acc(*args)
        assert str(acc_err.value) == str(ref_err.value)


def test_non_contiguous_inputs(gen):
    model = _model()
    acc = accelerate(model)
    eyes, anchors, angles = inputs(gen, 2, CFG)
    e2 = eyes.transpose(2, 3).contiguous().transpose(2, 3)
    a2 = anchors.transpose(1, 2).contiguous().transpose(1, 2)
    assert not e2.is_contiguous() and not a2.is_contiguous()
    torch.testing.assert_close(acc(e2, a2, angles), acc(eyes, anchors, angles), atol=1e-6, rtol=0)


def test_backend_by_name_errors_say_why():
    acc = accelerate(_model())
    with pytest.raises(ValueError, match="backend must be"):
        accelerate(_model(), backend="fast")
    with pytest.raises(TypeError, match="model must be"):
        accelerate(42)
    if not HAS_CUDA:
        with pytest.raises(BackendUnavailableError, match="no CUDA device"):
            accelerate(_model(), backend="cuda").op_backends("cuda")
    assert acc.op_backends("cpu", torch.float16)["conv"] == "reference", "the CPU extension runs float32 only"
    if not EXT_CPU:
        with pytest.raises(BackendUnavailableError, match="extension"):
            accelerate(_model(), backend="cuda")(*inputs(torch.Generator().manual_seed(0), 1, CFG))


@pytest.mark.skipif(not backend_status("triton", "cpu")[0] or HAS_CUDA, reason="Triton interpreter not available")
def test_triton_warp_and_blend_in_the_fallback(gen):
    model = _model()
    acc = accelerate(model, backend="triton")
    assert acc.op_backends("cpu") == {"conv": "reference", "tails": "reference", "warp": "triton"}
    _check_parity(acc, model, *inputs(gen, 1, CFG), atol=1e-4)


# ----------------------------------------------------------------------- GPU
gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("backend", ["auto", "reference"] + (["cuda"] if EXT_CUDA else []))
def test_matches_reference_on_cuda(gen, backend):
    model = _model().cuda()
    acc = accelerate(model, backend=backend)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the reference's convs in true fp32
    try:
        _check_parity(acc, model, *(t.cuda() for t in inputs(gen, 3, CFG)), atol=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.gpu
@gpu
def test_cuda_graph_replay_matches_eager(gen):
    model = _model().cuda()
    eager = accelerate(model)
    graphed = accelerate(model, cuda_graphs=True)
    for B in (2, 5, 2):
        eyes, anchors, angles = (t.cuda() for t in inputs(gen, B, CFG))
        out = graphed(eyes, anchors, angles)
        torch.testing.assert_close(out, eager(eyes, anchors, angles), atol=1e-6, rtol=0)
    assert len(graphed._graphs) == 2, "one graph per batch size, reused"
    first = graphed(eyes, anchors, angles)
    eyes2 = torch.flip(eyes, dims=[3])
    second = graphed(eyes2, anchors, angles)
    assert not torch.equal(first, second), "a replay must read the new inputs (and not overwrite the old output)"
    torch.testing.assert_close(second, eager(eyes2, anchors, angles), atol=1e-6, rtol=0)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_error_is_measured(gen, dtype):
    """fp16/bf16 activations: the error against fp32 is at most twice that of the reference
    model run in the same precision (README documents the measured values)."""
    model = _model().cuda()
    eyes, anchors, angles = (t.cuda() for t in inputs(gen, 8, CFG))
    with torch.no_grad():  # copies: casting in place would round the weights the others use
        exact = copy.deepcopy(model).double()(eyes.double(), anchors.double(), angles.double())
        ref_low = copy.deepcopy(model).to(dtype)(eyes.to(dtype), anchors, angles).float()
    acc = accelerate(model, dtype=dtype)
    out = acc(eyes, anchors, angles)
    assert out.dtype == torch.float32
    err_acc, err_ref = _max_err(out, exact), _max_err(ref_low, exact)
    assert err_acc <= 2 * err_ref, (err_acc, err_ref)
    warnings.warn(f"{dtype}: accelerated max abs error {err_acc:.3g} vs reference-in-{dtype} {err_ref:.3g}")


@pytest.mark.slow
def test_first_forward_does_not_import_dynamo():
    """Eager calls go to the extension directly: a torch.library custom op's first call
    imports torch._dynamo (about a second on a 2-core machine), which every CLI run paid."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from deepwarp_fast import accelerate, load_model\n"
        "m = accelerate(load_model()).eval()\n"
        "e = torch.rand(2, 3, 41, 51); a = torch.rand(2, 7, 2) * torch.tensor([50.0, 40.0])\n"
        "m(e, a, torch.zeros(2, 2))\n"
        "print(m.op_backends('cpu')['conv'], 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    conv_backend, dynamo = out.stdout.split()
    if conv_backend != "cuda":
        pytest.skip("the extension is not built here: the eager path uses no custom op anyway")
    assert dynamo == "False", "the first forward imported torch._dynamo"


@pytest.mark.parametrize("use_lcm", [True, False])
def test_big_cpu_batches_run_in_chunks_with_the_same_results(gen, monkeypatch, use_lcm):
    """More than CPU_CHUNK eyes on a CPU run chunk by chunk (faster: the activations stay
    in cache). Output, intermediates and fields keep the accelerated model's contract
    (within 1e-4 of the reference; oneDNN may round differently for another batch size)."""
    import sys

    mod = sys.modules["deepwarp_fast.accelerate"]
    cfg = CFG if use_lcm else NO_LCM
    model = _model(cfg)
    acc = accelerate(model)
    B = 2 * mod.CPU_CHUNK + 3
    x = inputs(gen, B, cfg)
    calls = []
    for name in ("_forward", "_whole_forward_cpu"):
        fn = getattr(acc, name)
        monkeypatch.setattr(acc, name, lambda *a, fn=fn, name=name: calls.append((name, a[0].shape[0])) or fn(*a))
    out, inter, (flow, mask) = acc(*x), acc(*x, return_intermediates=True), acc.fields(*x)
    # (the chunks may run on several threads: in any order)
    chunks = (mod.CPU_CHUNK, mod.CPU_CHUNK, 3)
    if not acc._whole_forward_ok(x[0]):
        expected = [("_forward", n) for n in chunks] * 3
    else:  # one C++ call for the output and one for the fields (it chunks by itself); the intermediates layer by layer
        expected = [("_whole_forward_cpu", B)] * 2 + [("_forward", n) for n in chunks]
    assert sorted(calls) == sorted(expected)
    assert type(inter).__name__ == "DeepWarpOutput" and inter.output.shape[0] == B
    with torch.no_grad():
        ref = model(*x, return_intermediates=True)
        ref_flow, ref_mask = model.fields(*x)
    assert ref.flow.abs().max() > 2.0, "the test needs a flow of several pixels"
    assert _max_err(out, ref.output) <= 1e-4
    for name in ref._fields:
        r, g = getattr(ref, name), getattr(inter, name)
        assert (r is None) == (g is None), name
        if r is not None:
            assert g.shape == r.shape and _max_err(g, r) <= 1e-4 * max(1.0, r.abs().max().item()), name
    assert _max_err(flow, ref_flow) <= 1e-4 * max(1.0, ref_flow.abs().max().item())
    assert (mask is None) == (ref_mask is None) == (not use_lcm)
    if mask is not None:
        assert _max_err(mask, ref_mask) <= 1e-4


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_batches_split_over_cores_match_the_reference(gen, threads):
    """With several intra-op threads, a CPU batch runs chunk by chunk, one core each: the
    output and the fields inside the extension's whole-forward call (eye_threads = the
    thread count), the intermediates on Python worker threads of one core each. The same
    results as the reference, for one face (B=2) too, under inference mode and no_grad
    (the C++ workers take the caller's thread-local state: an inference-mode output is
    written in place by them)."""
    import sys
    import threading

    mod = sys.modules["deepwarp_fast.accelerate"]
    model = _model()
    acc = accelerate(model)
    seen, eye_threads = set(), []
    fwd = acc._forward
    acc._forward = lambda *a: seen.add(threading.current_thread().name) or fwd(*a)
    whole = acc._whole_forward_cpu
    acc._whole_forward_cpu = lambda *a: eye_threads.append((a[0].shape[0], a[-1])) or whole(*a)
    x = inputs(gen, 40, CFG)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for mode in (torch.inference_mode, torch.no_grad):
            with mode():
                out = acc(*x)
                flow, mask = acc.fields(*x)
                small = acc(*(t[:2] for t in x))
                inter = acc(*x, return_intermediates=True)
            with torch.no_grad():
                ref, (ref_flow, ref_mask) = model(*x), model.fields(*x)
            assert torch.get_num_threads() == threads, "the caller's thread count is restored"
            assert _max_err(out, ref) <= 1e-4 and _max_err(small, ref[:2]) <= 1e-4
            assert _max_err(inter.output, ref) <= 1e-4
            assert _max_err(flow, ref_flow) <= 1e-4 * max(1.0, ref_flow.abs().max().item())
            assert _max_err(mask, ref_mask) <= 1e-4
        workers = {n for n in seen if n.startswith("deepwarp-eyes")}
        assert bool(workers) == (threads > 1 and mod.CPU_EYE_THREADS)
        if acc._whole_forward_ok(x[0]):
            side = threads if mod.CPU_EYE_THREADS else 1
            assert sorted(set(eye_threads)) == sorted({(40, side), (2, min(side, 2 // mod.CPU_EYE_MIN))})
    finally:
        torch.set_num_threads(before)



@contextlib.contextmanager
def _threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _whole_forward_case(gen, B, seed=0):
    """(model, its accelerated model, B random inputs), skipping where the extension's
    whole-forward call is not built."""
    model = _model(seed=seed)
    acc = accelerate(model)
    x = inputs(gen, B, CFG)
    if not acc._whole_forward_ok(x[0]):
        pytest.skip("the extension's whole-forward call is not built here")
    return model, acc, x


@pytest.mark.parametrize("B", [1, 2, 5, 37])
def test_whole_forward_side_by_side_equals_one_after_another(gen, B):
    """The extension's forward_cpu gives the same output and fields whether its chunks run
    one after the other (eye_threads=1, each op over the intra-op threads) or side by side
    (eye_threads=2), within float rounding of oneDNN's per-batch-size kernels."""
    _, acc, x = _whole_forward_case(gen, B)
    with _threads(2), torch.inference_mode():
        for mode in ("output", "fields"):
            one = acc._whole_forward_cpu(*x, mode, 1)
            two = acc._whole_forward_cpu(*x, mode, 2)
            one, two = (one, two) if mode == "fields" else ((one,), (two,))
            for a, b in zip(one, two):
                assert a.shape == b.shape and torch.isfinite(a).all()
                assert _max_err(a, b) <= 1e-5 * max(1.0, a.abs().max().item())


def test_cpu_plan_follows_in_place_weight_updates(gen):
    """The whole-forward call's prepared weights (channels-last copies, transposed map
    terms) are rebuilt when a buffer changes in place (load_state_dict, .copy_)."""
    _, acc, x = _whole_forward_case(gen, 3)
    with torch.no_grad():
        before = acc(*x)
        saved = {k: v.clone() for k, v in acc.state_dict().items()}
        acc.fine_w2.mul_(0.5)
        acc.coarse_P.add_(0.3)
        changed = acc(*x)
        acc.load_state_dict(saved)
        after = acc(*x)
    assert _max_err(changed, before) > 1e-3
    assert torch.equal(after, before)


def test_model_built_under_inference_mode_runs(gen):
    """accelerate() built inside torch.inference_mode (its buffers are inference tensors,
    which keep no version counter) runs and matches the reference, in and out of it."""
    model = _model()
    x = inputs(gen, 4, CFG)
    with torch.inference_mode():
        acc = accelerate(model)
        inside = acc(*x)
    with torch.no_grad():
        ref = model(*x)
        outside = acc(*x)
    assert _max_err(inside, ref) <= 1e-4 and _max_err(outside, ref) <= 1e-4


@pytest.mark.parametrize("B", [1, 2, 5])
def test_direct_convolutions_match_the_exact_answer(gen, B, monkeypatch):
    """forward_cpu's own register-blocked loops for the small layers (CPU_DIRECT_CONV) and
    oneDNN for every layer: both within 1e-5 of the model run in float64, on random
    weights and inputs (rows of 51 pixels end in partial blocks of 4 and 8). The loops run
    on chunks of one eye: B=1, and B=2 on 2 threads (one eye per thread)."""
    import sys

    mod = sys.modules["deepwarp_fast.accelerate"]
    model, acc, x = _whole_forward_case(gen, B, seed=5)
    with _threads(2), torch.no_grad():
        exact = copy.deepcopy(model).double()(*(t.double() for t in x))
        outs = {}
        for direct in (True, False):
            monkeypatch.setattr(mod, "CPU_DIRECT_CONV", direct)
            outs[direct] = acc(*x)
    assert (exact - x[0].double()).abs().max() > 0.05, "the test needs a visible warp"
    for direct, out in outs.items():
        assert _max_err(out, exact) <= 1e-5, direct
