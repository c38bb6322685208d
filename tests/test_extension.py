"""The C++/CUDA extension deepwarp_fast._C: build settings, loading, its fused ops against
their PyTorch references (CPU always; CUDA, with float16/bfloat16, when a GPU is
present), argument checks, and the torch.library registration (opcheck)."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import HAS_CUDA, rand
from deepwarp_fast import _build, _ext
from deepwarp_fast.fused import (
    coarse_tail,
    coarse_tail_reference,
    conv_bias_relu,
    conv_bias_relu_reference,
    fine_tail,
    fine_tail_reference,
)

C, WHY = _ext.load(jit=False)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# When torch is a CUDA build and a CUDA toolkit is present, the install must have built
# the CUDA kernels: a missing extension is then a failure, not a skip.
CUDA_BUILD_EXPECTED = _build.cuda_status(torch)[0] and os.environ.get("DEEPWARP_NO_EXTENSION", "0") in ("", "0")


def test_extension_is_built_where_it_can_be():
    if C is None:
        if CUDA_BUILD_EXPECTED:
            pytest.fail(f"torch is a CUDA build and a CUDA toolkit is present, but the extension is missing: {WHY}")
        pytest.skip(f"extension not built: {WHY}")
    if CUDA_BUILD_EXPECTED:
        assert C.has_cuda(), "the extension was built without its CUDA kernels although a toolkit is present"
    else:
        assert C.has_cuda() is False, "CUDA kernels in a build that had no CUDA toolkit or a CPU build of torch"


needs_ext = pytest.mark.skipif(C is None, reason=f"extension not built: {WHY}")
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA and C is not None and C.has_cuda() else [])


# ----------------------------------------------------------------- build settings
def test_build_settings_pick_sources_and_flags(monkeypatch):
    from torch.utils import cpp_extension

    ext = _build.extension_kwargs(cpp_extension, torch)
    assert ext.name == "deepwarp_fast._C"
    cu = [s for s in ext.sources if s.endswith(".cu")]
    with_cuda = _build.cuda_status(torch)[0]
    assert bool(cu) == with_cuda
    assert any(s.endswith("bindings.cpp") for s in ext.sources)
    flags = ext.extra_compile_args["cxx"]
    assert ("-DDEEPWARP_WITH_CUDA" in flags) == with_cuda
    if with_cuda:
        assert os.environ["TORCH_CUDA_ARCH_LIST"], "an architecture list must be set for a build without a visible GPU"
        assert cpp_extension.CUDA_HOME == _build.find_cuda_home()[0]
    monkeypatch.setenv("DEEPWARP_CPU_ONLY_EXTENSION", "1")
    ext = _build.extension_kwargs(cpp_extension, torch)
    assert not any(s.endswith(".cu") for s in ext.sources)
    assert "DEEPWARP_CPU_ONLY_EXTENSION" in _build.cuda_status(torch)[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libstdc++ is the Linux C++ runtime")
def test_build_links_the_shared_libstdcxx(monkeypatch, tmp_path):
    """The link line names a shared libstdc++ by full path (a static one crashed on the GPU
    image), in setup.py's and the JIT's arguments, even when the compiler finds no
    libstdc++.so of its own."""
    from torch.utils import cpp_extension

    flags = _build.link_flags()
    libs = [f for f in flags if not f.startswith("-")]
    assert len(libs) == 1 and os.path.isabs(libs[0]) and ".so" in os.path.basename(libs[0])
    assert _build.extension_kwargs(cpp_extension, torch).extra_link_args == flags
    assert _build.jit_kwargs(cpp_extension, torch, str(tmp_path))["extra_ldflags"] == flags
    # A compiler like the GPU image's wrapper: -print-file-name finds nothing.
    fake = tmp_path / "fake-g++"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in -print-file-name=*) echo "${a#-print-file-name=}";; esac; done\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    lib = _build.shared_libstdcxx()
    assert lib is not None and os.path.basename(lib).startswith("libstdc++.so") and os.path.isfile(lib)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenMP through GCC's -fopenmp on Linux")
def test_build_compiles_and_links_openmp(tmp_path):
    """at::parallel_for is a header template whose OpenMP pragma compiles into this module:
    without -fopenmp on both the compile and the link line every CPU op of the extension
    ran on one thread whatever torch.set_num_threads said."""
    from torch.utils import cpp_extension

    assert "-fopenmp" in _build.compile_flags(False)["cxx"] and "-fopenmp" in _build.compile_flags(True)["cxx"]
    assert "-fopenmp" in _build.link_flags()
    ext = _build.extension_kwargs(cpp_extension, torch)
    assert "-fopenmp" in ext.extra_compile_args["cxx"] and "-fopenmp" in ext.extra_link_args
    jit = _build.jit_kwargs(cpp_extension, torch, str(tmp_path))
    assert "-fopenmp" in jit["extra_cflags"] and "-fopenmp" in jit["extra_ldflags"]


@needs_ext
def test_cpu_ops_agree_across_thread_counts():
    """The extension's CPU ops split rows over OpenMP threads: the whole forward (output
    and fields) gives the same numbers on 1 and 2 threads (each row is written by one work
    item; scratch rows are per thread). warp_frame: tests/test_warp_frame.py."""
    from deepwarp_fast import accelerate, load_model

    model = accelerate(load_model().eval())
    g = torch.Generator().manual_seed(3)
    B = 6
    eyes = torch.rand(B, 3, 41, 51, generator=g)
    anchors = torch.rand(B, 7, 2, generator=g) * torch.tensor([51.0, 41.0])
    angles = (torch.rand(B, 2, generator=g) - 0.5) * 40
    saved = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.inference_mode():
                outs.append((model(eyes, anchors, angles), *model.fields(eyes, anchors, angles)))
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert float((outs[0][0] - eyes).abs().max()) > 1e-3  # the model did something


@needs_ext
def test_error_message_with_numbers_does_not_crash():
    """An error message that formats integers (an ostringstream in the module). With a
    statically linked libstdc++ the module's private iostreams cannot format numbers:
    built by g++ 13 (the GPU image) the call killed the interpreter, by g++ 12
    (-static-libstdc++, here) the message stopped at the number ('x must have ').
    Run in a child process so that such a build fails this test, not the session."""
    code = (
        "import torch\n"
        "from deepwarp_fast import _ext\n"
        "C, why = _ext.load(jit=False)\n"
        "x = torch.rand(4, 7, 9)\n"
        "try:\n"
        "    C.conv_bias_relu(x, torch.rand(6, 4, 3, 3), torch.rand(6), None, True)\n"
        "except RuntimeError as e:\n"
        "    print('raised:', e)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [ROOT, os.environ.get("PYTHONPATH", "")] if p))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, (f"the child died (return code {r.returncode}; a negative one is a signal): a C++ "
                               f"runtime linked into the module? stderr: {r.stderr[-2000:]}")
    assert "raised: x must have 4 dims, got shape (4, 7, 9)" in r.stdout


def test_cuda_home_env_without_toolkit_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    home, why = _build.find_cuda_home()
    assert home is None and str(tmp_path) in why and "nvcc" in why


def test_jit_kwargs_share_the_flags(tmp_path):
    from torch.utils import cpp_extension

    kw = _build.jit_kwargs(cpp_extension, torch, str(tmp_path))
    assert kw["build_directory"] == str(tmp_path)
    assert kw["name"] == "deepwarp_fast_C" and all(os.path.isabs(s) for s in kw["sources"])
    assert kw["with_cuda"] == any(s.endswith(".cu") for s in kw["sources"])


def test_load_failure_is_kept_and_quoted(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "deepwarp_fast._C":
            raise ImportError("simulated: undefined symbol _ZN3c10")
        return real(name, *a, **k)

    monkeypatch.setattr(_ext, "_state", {})
    monkeypatch.setattr(importlib, "import_module", fake_import)
    mod, why = _ext.load(jit=False)
    assert mod is None and "simulated: undefined symbol" in why and "DEEPWARP_JIT=1" in why
    with pytest.raises(RuntimeError, match="simulated: undefined symbol"):
        _ext.require()
    from deepwarp_fast.backends import backend_status

    ok, reason = backend_status("cuda", "cpu")
    assert not ok and "simulated: undefined symbol" in reason


# ----------------------------------------------------------------- op parity
def _params(gen, *shape, scale=0.3):
    return rand(gen, *shape, lo=-scale, hi=scale)


def _to(device, *ts):
    return [None if t is None else t.to(device) for t in ts]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k,cin,cout,extra,relu", [(5, 3, 16, True, True), (3, 19, 32, False, True), (1, 7, 5, False, False), (3, 4, 33, True, False)])
def test_conv_bias_relu_matches_reference(gen, device, k, cin, cout, extra, relu):
    B, H, W = 3, 13, 17
    x = rand(gen, B, cin, H, W, lo=-1, hi=1)
    w, b = _params(gen, cout, cin, k, k), _params(gen, cout)
    e = rand(gen, B, cout, H, W, lo=-1, hi=1) if extra else None
    x, w, b, e = _to(device, x, w, b, e)
    out = conv_bias_relu(x, w, b, e, relu)
    ref = conv_bias_relu_reference(x.double(), w.double(), b.double(), None if e is None else e.double(), relu)
    assert out.shape == (B, cout, H, W) and out.dtype == x.dtype and out.device == x.device
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-5)
    if relu:
        assert (out >= 0).all() and (out == 0).any() and (out > 0).any()


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_conv_bias_relu_non_contiguous_input(gen, device):
    x = rand(gen, 2, 13, 11, 6, lo=-1, hi=1).to(device).transpose(2, 3)  # (2, 13, 6, 11), strided
    w, b = _to(device, _params(gen, 8, 13, 3, 3), _params(gen, 8))
    assert not x.is_contiguous()
    torch.testing.assert_close(conv_bias_relu(x, w, b, None, True), conv_bias_relu_reference(x, w, b), atol=2e-5, rtol=1e-5)


def _tail_inputs(gen, device, B=2, H=13, W=17, Cc=6, Cf=5, Ch=7, L1=4, L2=3, flow_scale=1.0):
    h, w = H // 2, W // 2
    t = dict(
        feat_c=rand(gen, B, Cc, h, w), feat_f=rand(gen, B, Cf, H, W), eyes=rand(gen, B, 3, H, W),
        cw1=_params(gen, Ch, Cc), cb1=_params(gen, Ch), cw2=_params(gen, 2, Ch, scale=flow_scale), cb2=_params(gen, 2),
        fw1=_params(gen, Ch, Cf), fb1=_params(gen, Ch), fw2=_params(gen, 2, Ch, scale=flow_scale), fb2=_params(gen, 2),
        lcm=[_params(gen, L1, Cc + Cf), _params(gen, L1), _params(gen, L2, L1), _params(gen, L2), _params(gen, 2, L2, scale=2.0), _params(gen, 2)],
    )
    return {k: ([x.to(device) for x in v] if isinstance(v, list) else v.to(device)) for k, v in t.items()}


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H,W", [(13, 17), (41, 51), (9, 20)])
def test_coarse_tail_matches_reference(gen, device, H, W):
    t = _tail_inputs(gen, device, H=H, W=W, flow_scale=3.0)
    sx, sy = (W - 1) / 2.0, (H - 1) / 2.0
    args = (t["feat_c"], t["cw1"], t["cb1"], t["cw2"], t["cb2"], t["eyes"], sx, sy)
    out = coarse_tail(*args)
    ref = coarse_tail_reference(*args)
    assert out.shape == (2, 8, H, W)
    torch.testing.assert_close(out[:, :3], t["eyes"], atol=0, rtol=0)
    assert (out[:, 6:8].abs().amax() * sx) > 1.0, "the test needs a flow of more than a pixel"
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("use_lcm", [True, False])
@pytest.mark.parametrize("intermediates", [True, False])
def test_fine_tail_matches_reference(gen, device, use_lcm, intermediates):
    H, W = 13, 17
    t = _tail_inputs(gen, device, H=H, W=W, flow_scale=3.0)
    sx, sy = (W - 1) / 2.0, (H - 1) / 2.0
    xf = coarse_tail(t["feat_c"], t["cw1"], t["cb1"], t["cw2"], t["cb2"], t["eyes"], sx, sy)
    eyes, up = xf[:, :3], xf[:, 6:8]  # channel views with a batch stride of 8 planes, as the model passes them
    lcm = t["lcm"] if use_lcm else None
    head = (t["fw1"], t["fb1"], t["fw2"], t["fb2"])
    got = fine_tail(t["feat_f"], t["feat_c"] if use_lcm else None, eyes, up, *head, *(lcm or [None] * 6), sx, sy, intermediates)
    ref = fine_tail_reference(t["feat_f"], t["feat_c"], eyes, up, *head, lcm=lcm, scale_x=sx, scale_y=sy, intermediates=intermediates)
    for name, g, r in zip(("output", "fine", "flow", "mask"), got, ref):
        assert g.shape == r.shape, name
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")
    if intermediates:
        assert got[2].abs().max() > 1.0, "the test needs a flow of more than a pixel"
        if use_lcm:
            assert 0.05 < float(got[3].mean()) < 0.95, "the test needs an LCM mask away from 0 and 1"


@needs_ext
def test_opcheck_registered_ops(gen):
    t = _tail_inputs(gen, "cpu")
    x = rand(gen, 2, 4, 7, 9)
    w, b = _params(gen, 6, 4, 3, 3), _params(gen, 6)
    torch.library.opcheck(conv_bias_relu, (x, w, b, rand(gen, 2, 6, 7, 9), True))
    torch.library.opcheck(coarse_tail, (t["feat_c"], t["cw1"], t["cb1"], t["cw2"], t["cb2"], t["eyes"], 8.0, 6.0))
    xf = coarse_tail(t["feat_c"], t["cw1"], t["cb1"], t["cw2"], t["cb2"], t["eyes"], 8.0, 6.0)
    args = (t["feat_f"], t["feat_c"], xf[:, :3].contiguous(), xf[:, 6:8].contiguous(), t["fw1"], t["fb1"], t["fw2"], t["fb2"], *t["lcm"], 8.0, 6.0)
    for inter in (True, False):
        torch.library.opcheck(fine_tail, args + (inter,))


# ----------------------------------------------------------------- argument checks
@needs_ext
def test_argument_errors_name_the_argument(gen):
    x = rand(gen, 2, 4, 7, 9)
    w, b = _params(gen, 6, 4, 3, 3), _params(gen, 6)
    with pytest.raises(RuntimeError, match="x must be float32 on the CPU"):
        C.conv_bias_relu(x.double(), w, b, None, True)
    with pytest.raises(RuntimeError, match=r"x must have 4 dims"):
        C.conv_bias_relu(x[0], w, b, None, True)
    with pytest.raises(RuntimeError, match=r"weight has shape \(6, 5, 3, 3\): dim 1 must be 4"):
        C.conv_bias_relu(x, _params(gen, 6, 5, 3, 3), b, None, True)
    with pytest.raises(RuntimeError, match="odd kernel"):
        C.conv_bias_relu(x, _params(gen, 6, 4, 2, 2), b, None, True)
    with pytest.raises(RuntimeError, match="bias has shape"):
        C.conv_bias_relu(x, w, _params(gen, 5), None, True)
    with pytest.raises(RuntimeError, match="weight must be float32"):
        C.conv_bias_relu(x, w.double(), b, None, True)
    with pytest.raises(RuntimeError, match="weight must be contiguous"):
        C.conv_bias_relu(x, w.transpose(2, 3), b, None, True)
    with pytest.raises(RuntimeError, match=r"extra has shape"):
        C.conv_bias_relu(x, w, b, rand(gen, 2, 6, 7, 8), True)
    t = _tail_inputs(gen, "cpu")
    with pytest.raises(RuntimeError, match=r"w2 has shape \(3, 7\)"):
        C.coarse_tail(t["feat_c"], t["cw1"], t["cb1"], _params(gen, 3, 7), t["cb2"], t["eyes"], 1.0, 1.0)
    with pytest.raises(RuntimeError, match="eyes must have feat's batch size"):
        C.coarse_tail(t["feat_c"], t["cw1"], t["cb1"], t["cw2"], t["cb2"], t["eyes"][:1], 1.0, 1.0)
    head = (t["fw1"], t["fb1"], t["fw2"], t["fb2"])
    lcm = t["lcm"]
    up = rand(gen, 2, 2, 13, 17)
    with pytest.raises(RuntimeError, match="lcm_b2 must be given when lcm_w1 is"):
        C.fine_tail(t["feat_f"], t["feat_c"], t["eyes"], up, *head, lcm[0], lcm[1], lcm[2], None, lcm[4], lcm[5], 1.0, 1.0, False)
    with pytest.raises(RuntimeError, match="feat_c must be given when the LCM is on"):
        C.fine_tail(t["feat_f"], None, t["eyes"], up, *head, *lcm, 1.0, 1.0, False)
    with pytest.raises(RuntimeError, match=r"up_c must have shape \(2, 2, 13, 17\)"):
        C.fine_tail(t["feat_f"], t["feat_c"], t["eyes"], up[:, :1], *head, *lcm, 1.0, 1.0, False)
    with pytest.raises(RuntimeError, match=r"lcm_w1 has shape \(4, 10\): dim 1 must be 11"):
        C.fine_tail(t["feat_f"], t["feat_c"], t["eyes"], up, *head, lcm[0][:, :10].contiguous(), *lcm[1:], 1.0, 1.0, False)
    if DEVICES[-1] == "cuda":
        with pytest.raises(RuntimeError, match="weight must be on the same device as x"):
            C.conv_bias_relu(x.cuda(), w, b.cuda(), None, True)


# ----------------------------------------------------------------- low precision (GPU)
@pytest.mark.gpu
@needs_ext
@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device and the extension's CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_error_is_bounded_by_the_reference_in_the_same_precision(gen, dtype):
    """err(kernel) <= 2 * err(PyTorch in the same dtype) + a small floor, both against fp64."""
    t = _tail_inputs(gen, "cuda", H=41, W=51, Cc=32, Cf=32, Ch=32, L1=8, L2=8, flow_scale=1.0)
    x = rand(gen, 4, 16, 41, 51, device="cuda")
    w, b = _params(gen, 32, 16, 3, 3, scale=0.2).cuda(), _params(gen, 32).cuda()
    exact = conv_bias_relu_reference(x.double(), w.double(), b.double())
    err_k = (conv_bias_relu(x.to(dtype), w, b, None, True).double() - exact).abs().max().item()
    err_r = (conv_bias_relu_reference(x.to(dtype), w, b).double() - exact).abs().max().item()
    assert err_k <= 2 * err_r + 1e-3, (err_k, err_r)
    sx, sy = 25.0, 20.0
    args = (t["feat_c"], t["cw1"], t["cb1"], t["cw2"], t["cb2"], t["eyes"], sx, sy)
    exact = coarse_tail_reference(*[a.double() if torch.is_tensor(a) else a for a in args])
    low = [a.to(dtype) if torch.is_tensor(a) and a.dim() == 4 else a for a in args]
    err_k = (coarse_tail(*low).double() - exact).abs().max().item()
    err_r = (coarse_tail_reference(*low).double() - exact).abs().max().item()
    assert err_k <= 2 * err_r + 1e-3, (err_k, err_r)
