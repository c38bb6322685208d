"""warp_frame (SPEC.md "warp_frame"): the reference's semantics, and every fast backend
(the extension's CPU op and CUDA kernel, the Triton kernel: interpreter without a GPU)
against it on random fields, random affines, odd frame sizes, eyes at the border,
several eyes per frame and overlapping footprints."""
import math

import pytest
import torch

from deepwarp_fast import _ext, ops
from deepwarp_fast.backends import backend_status
from deepwarp_fast.face.paste import feather_mask

H, W = 41, 51
KERNELS = ops.FRAME_KERNELS


def _fast_backends():
    """(backend, device) pairs that can run here."""
    out = []
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for be in ("cuda", "triton"):
            if backend_status(be, dev)[0] and (be != "cuda" or dev == "cpu" or _ext.load()[0].has_cuda()):
                out.append((be, dev))
    return out


FAST = _fast_backends()


def affine(cx, cy, scale, rot_deg=0.0, mirror=False, h=H, w=W):
    """Frame -> patch similarity centred on (cx, cy), ``scale`` patch px per frame px."""
    r = math.radians(rot_deg)
    L = scale * torch.tensor([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]], dtype=torch.float64)
    if mirror:
        L = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64) @ L
    t = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64) - L @ torch.tensor([cx, cy], dtype=torch.float64)
    return torch.cat([L, t[:, None]], dim=1)


def feather():
    return torch.from_numpy(feather_mask(H, W))


def random_frames(gen, N, Hf, Wf, C, dtype):
    x = torch.randint(0, 256, (N, Hf, Wf, C), generator=gen, dtype=torch.int32)
    if dtype == torch.uint8:
        return x.to(torch.uint8)
    if dtype == torch.uint16:
        return (x * 257 + torch.randint(0, 257, x.shape, generator=gen, dtype=torch.int32)).to(torch.uint16)
    return (x.double() / 255).to(dtype)


def random_case(gen, Hf=97, Wf=131, N=2, C=3, dtype=torch.uint8):
    """Eyes with rotations up to 30 degrees, 0.25 to 4 patch px per frame px, one mirrored,
    one at the frame border, two overlapping in frame 0, one alone in frame 1."""
    frames = random_frames(gen, N, Hf, Wf, C, dtype)
    u = lambda lo, hi: float(torch.empty(1, dtype=torch.float64).uniform_(lo, hi, generator=gen))  # noqa: E731
    A = torch.stack([
        affine(u(30, 60), u(30, 60), u(0.6, 1.2), u(-30, 30)),
        affine(u(55, 75), u(40, 55), u(0.5, 1.0), u(-30, 30), mirror=True),   # overlaps the first
        affine(u(1, 6), u(Hf - 6, Hf - 1), u(1.5, 4.0), u(-30, 30)),          # at the corner, scale up to 4
        affine(u(50, 80), u(30, 60), u(0.25, 0.4), u(-30, 30)),                # large footprint, frame 1
    ])
    index = torch.tensor([0, 0, 0, N - 1])
    E = A.shape[0]
    flow = (torch.rand(E, 2, H, W, generator=gen, dtype=torch.float64) * 2 - 1).float() * 4
    mask = (torch.rand(E, 1, H, W, generator=gen, dtype=torch.float64) * 0.6).float()
    return frames, index, A, flow, mask


def weights_at(A, fe, Hf, Wf):
    """Each eye's feather weight at every frame pixel (E, Hf, Wf), as the op computes it."""
    return ops.warp_frame_weights(A, fe, Hf, Wf)


# ---------------------------------------------------------------------------- reference
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32, torch.float64])
def test_zero_fields_are_the_identity_bit_for_bit(gen, kernel, dtype):
    frames, index, A, flow, _ = random_case(gen, dtype=dtype)
    out = ops.warp_frame_reference(frames, index, A, torch.zeros_like(flow), torch.zeros(4, 1, H, W), feather(), kernel=kernel)
    assert out.dtype == frames.dtype and torch.equal(out, frames)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mirror", [False, True])
def test_constant_flow_at_unit_scale_moves_the_pixels(gen, kernel, mirror):
    """A patch pixel = a frame pixel: a constant integer flow (dx, dy) copies frame[p + L^-1 d]
    where the feather weight is 1 (mirrored: dx is reversed in the frame)."""
    frames = random_frames(gen, 1, 80, 90, 3, torch.uint8)
    A = affine(45.0, 40.0, 1.0, mirror=mirror)[None]
    flow = torch.zeros(1, 2, H, W)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    out = ops.warp_frame_reference(frames, torch.tensor([0]), A, flow, None, feather(), kernel=kernel)
    full = weights_at(A, feather(), 80, 90)[0] == 1
    assert int(full.sum()) > 300
    ys, xs = torch.nonzero(full, as_tuple=True)
    sx = xs - 3 if mirror else xs + 3
    assert torch.equal(out[0, ys, xs], frames[0, ys - 2, sx])


def test_pixels_outside_the_feather_are_untouched_and_inside_change(gen):
    frames, index, A, flow, mask = random_case(gen)
    out = ops.warp_frame_reference(frames, index, A, flow, mask, feather())
    w = weights_at(A, feather(), *frames.shape[1:3])
    for n in range(frames.shape[0]):
        outside = (w[index == n] > 0).sum(0) == 0
        assert torch.equal(out[n][outside], frames[n][outside])
        inside = (w[index == n] > 0.9).any(0)
        assert (out[n][inside] != frames[n][inside]).any(-1).float().mean() > 0.5


def test_overlaps_go_to_the_eye_with_the_larger_weight(gen):
    frames, index, A, flow, mask = random_case(gen)
    both = ops.warp_frame_reference(frames, index[:2], A[:2], flow[:2], mask[:2], feather())
    alone = [ops.warp_frame_reference(frames, index[i:i + 1], A[i:i + 1], flow[i:i + 1], mask[i:i + 1], feather()) for i in range(2)]
    w = weights_at(A[:2], feather(), *frames.shape[1:3])
    overlap = (w[0] > 0) & (w[1] > 0)
    assert int(overlap.sum()) > 50, "the case needs overlapping footprints"
    first = overlap & (w[0] > w[1])
    second = overlap & (w[1] >= w[0])
    assert torch.equal(both[0][first], alone[0][0][first])
    assert torch.equal(both[0][second], alone[1][0][second])


def test_alpha_and_unlisted_channels_are_copied(gen):
    frames, index, A, flow, mask = random_case(gen, C=4)
    out = ops.warp_frame_reference(frames, index, A, flow, mask, feather(), channels=3)
    assert torch.equal(out[..., 3], frames[..., 3])
    assert not torch.equal(out[..., :3], frames[..., :3])


def test_white_mask_gives_white_where_the_feather_is_one(gen):
    frames, index, A, flow, _ = random_case(gen)
    out = ops.warp_frame_reference(frames, index[:1], A[:1], flow[:1], torch.ones(1, 1, H, W), feather())
    full = weights_at(A[:1], feather(), *frames.shape[1:3])[0] == 1
    assert int(full.sum()) > 100 and bool((out[0][full] == 255).all())


def test_sharper_kernels_keep_more_detail(gen):
    """A half-pixel shift: Laplacian energy kept grows bilinear < bicubic < lanczos4."""
    frames = random_frames(gen, 1, 80, 90, 1, torch.float32)
    A = affine(45.0, 40.0, 1.0)[None]
    flow = torch.full((1, 2, H, W), 0.5)
    full = weights_at(A, feather(), 80, 90)[0] == 1
    lap = lambda f: (4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:])  # noqa: E731
    energy = []
    for k in KERNELS:
        out = ops.warp_frame_reference(frames, torch.tensor([0]), A, flow, None, feather(), kernel=k)[0, ..., 0]
        energy.append(float((lap(out)[full[1:-1, 1:-1]] ** 2).sum()))
    assert energy[0] < energy[1] < energy[2]


def test_errors_name_the_argument(gen):
    frames, index, A, flow, mask = random_case(gen)
    fe = feather()
    with pytest.raises(ValueError, match="kernel must be one of"):
        ops.warp_frame(frames, index, A, flow, mask, fe, kernel="nearest")
    with pytest.raises(ValueError, match="frame_index must lie in"):
        ops.warp_frame(frames, index + 5, A, flow, mask, fe)
    with pytest.raises(ValueError, match="feather must have shape"):
        ops.warp_frame(frames, index, A, flow, mask, fe[:-1])
    with pytest.raises(ValueError, match="mask must have shape"):
        ops.warp_frame(frames, index, A, flow, mask[:, :, :-1], fe)
    with pytest.raises(ValueError, match="A must have shape"):
        ops.warp_frame(frames, index, A[:2], flow, mask, fe)
    with pytest.raises(TypeError, match="frames must be uint8, uint16 or floating point"):
        ops.warp_frame(frames.to(torch.int32), index, A, flow, mask, fe)
    with pytest.raises(ValueError, match="channels must be in"):
        ops.warp_frame(frames, index, A, flow, mask, fe, channels=5)


# ---------------------------------------------------------------------------- fast backends
@pytest.mark.skipif(not FAST, reason="no fast backend runs here (extension not built, Triton not runnable)")
@pytest.mark.parametrize("be_dev", FAST, ids=lambda p: f"{p[0]}-{p[1]}")
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.float32])
def test_fast_backends_match_the_reference(gen, be_dev, kernel, dtype):
    be, dev = be_dev
    if be == "triton" and dev == "cpu" and (kernel != "lanczos4" and dtype != torch.uint8):
        pytest.skip("the interpreter is slow: every kernel on uint8, every dtype with lanczos4")
    frames, index, A, flow, mask = random_case(gen, Hf=97, Wf=131, C=4, dtype=dtype)
    fe = torch.stack([feather(), feather().sqrt(), feather() ** 2, feather()])  # per-eye feathers
    ref = ops.warp_frame_reference(frames, index, A, flow, mask, fe, kernel=kernel, channels=3)
    out = ops.warp_frame(frames.to(dev), index, A, flow.to(dev), mask.to(dev), fe.to(dev), kernel=kernel, channels=3,
                         backend=be).cpu()
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert torch.equal(out[..., 3], frames[..., 3])
    changed = ref != frames
    assert changed.any(-1).sum() > 2000, "the case must change many pixels"
    d = (out.double() - ref.double()).abs()
    # Sample coordinates round differently in float32 (~1e-5 px on random noise, whose
    # gradient is a full range per pixel): 3e-4 of white at most, and for 8 bits a single
    # level on a few pixels.
    white = ops.frame_maxval(dtype)
    assert float(d.max()) <= max(1.0, 3e-4 * white) if dtype != torch.float32 else float(d.max()) < 3e-4
    if dtype == torch.uint8:
        assert float((d > 0).double().mean()) < 1e-3
    # untouched pixels are untouched bit for bit on every backend
    w = weights_at(A, fe, *frames.shape[1:3])
    for n in range(frames.shape[0]):
        outside = (w[index == n] > 0).sum(0) == 0
        assert torch.equal(out[n][outside], frames[n][outside])


@pytest.mark.skipif(not FAST, reason="no fast backend runs here")
@pytest.mark.parametrize("be_dev", FAST, ids=lambda p: f"{p[0]}-{p[1]}")
def test_fast_backends_zero_fields_identity_and_no_mask(gen, be_dev):
    be, dev = be_dev
    frames, index, A, flow, _ = random_case(gen, Hf=61, Wf=77)
    out = ops.warp_frame(frames.to(dev), index, A, torch.zeros_like(flow).to(dev), None, feather().to(dev), backend=be)
    assert torch.equal(out.cpu(), frames)
    ref = ops.warp_frame_reference(frames, index, A, flow, None, feather(), kernel="bicubic")
    out = ops.warp_frame(frames.to(dev), index, A, flow.to(dev), None, feather().to(dev), kernel="bicubic", backend=be).cpu()
    assert float((out.double() - ref.double()).abs().max()) <= 1


def test_tables_hold_each_eyes_footprint_and_inverse(gen):
    """The per-eye tables every backend reads: the affine, its linear part's inverse, and
    the footprint box, the same as the face pipeline's own ``face.eyes.footprint`` (no
    padding) for eyes inside and across the border, empty for an eye outside the frame."""
    from deepwarp_fast.face.eyes import footprint

    frames, index, A, flow, _ = random_case(gen)
    A = torch.cat([A, A + torch.tensor([[0.0, 0.0, 200.0], [0.0, 0.0, -150.0]], dtype=A.dtype)])
    index = torch.cat([index, index])
    Hf, Wf = frames.shape[1:3]
    params, boxes, largest = ops.warp_frame_tables(A, index, H, W, Hf, Wf)
    assert params.dtype == torch.float32 and boxes.dtype == torch.int32
    empty = 0
    for e in range(len(A)):
        n, x0, y0, bw, bh = boxes[e].tolist()
        assert n == int(index[e])
        if bw * bh == 0:
            empty += 1
            continue
        assert (x0, y0, x0 + bw, y0 + bh) == footprint(A[e].numpy(), W, H, Wf, Hf, pad=0)
        inv = torch.linalg.inv(A[e, :, :2].double()).float()
        torch.testing.assert_close(params[e, 6:].view(2, 2), inv)
        torch.testing.assert_close(params[e, :6], A[e].reshape(6).float())
    assert largest == int((boxes[:, 3] * boxes[:, 4]).max())
    assert empty >= 1, "the case needs an eye outside the frame"
    # eyes outside the frame change nothing
    outside = (boxes[:, 3] * boxes[:, 4] == 0).nonzero().flatten()
    out = ops.warp_frame_reference(frames, index[outside], A[outside], flow.repeat(2, 1, 1, 1)[outside], None, feather())
    assert torch.equal(out, frames)


@pytest.mark.skipif(not backend_status("cuda", "cpu")[0], reason="the extension's CPU op is not built")
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_extension_cpu_op_is_the_same_on_one_and_two_threads(gen, dtype):
    """The CPU op splits the eyes' rows over OpenMP threads (the module is built with
    -fopenmp): each frame pixel is written by one eye (overlaps included), so the result
    does not depend on the thread count."""
    frames, index, A, flow, mask = random_case(gen, dtype=dtype)
    if dtype == torch.float32:
        frames = frames.float() / 255.0
    saved = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(ops.warp_frame(frames, index, A, flow, mask, feather(), backend="cuda"))
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], frames)
