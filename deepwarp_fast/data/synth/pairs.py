"""The public entry point, :func:`render_pairs`: draw every random choice (gazes, tilts,
per-chunk parameters), render in chunks of similar window size (optionally in several
threads), apply the camera, and return the pairs with their anchors, gazes and tilts."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Union

import torch

from ..camera import apply_camera
from .geometry import anchors_from_params, derived_params
from .options import SynthOptions
from .render import _bboxes, render_batch
from .sampling import _as_n, sample_gazes, sample_noise_fields, sample_params, sample_tilts


def render_pairs(n: int, seed: int, *, height: int = 41, width: int = 51, gaze_range: float = 30.0,
                 max_redirect: float = 30.0, hard_fraction: float = 0.25, device: Union[str, torch.device] = "cpu",
                 angles=None, tilt=None, input_gaze=None, chunk: int = 32, threads: int = 1,
                 **options) -> Dict[str, torch.Tensor]:
    """Render ``n`` pairs of eye patches of the same eye looking in two directions.

    Returns a dict of tensors on ``device``:
      input (n, 3, H, W), target (n, 3, H, W): float32 in [0, 1];
      anchors (n, 7, 2): the INPUT image's anchors, patch pixels (x, y) (SPEC.md order);
      target_anchors (n, 7, 2): the target's (the lids move with the gaze);
      angles (n, 2): redirection (vertical, horizontal) degrees = target gaze - input gaze;
      input_gaze, target_gaze (n, 2): the gazes themselves (degrees, camera axes);
      tilt (n,): head roll in degrees (see the module docstring); hard = |tilt| > 8.

    ``angles`` ((n, 2) or (2,)) fixes the redirections and ``tilt`` (scalar or (n,)) the
    tilts; the input gaze is then drawn so both gazes stay within +-gaze_range. Without
    them, redirections are uniform in +-max_redirect (clipped to the range) and a
    ``hard_fraction`` of tilts are hard. ``options`` are :class:`SynthOptions` fields.
    The same (n, seed, arguments) give the same pixels on a given device.

    ``threads`` (CPU): 1 (default) renders the chunks of ``chunk`` pairs one after another,
    each op using torch's intra-op threads (``torch.set_num_threads``: 2 threads give ~1.6x
    on 2 idle cores); k > 1 renders them in k Python threads of single-threaded ops, which
    scales less on idle cores but does not stall when other jobs share the cores (no thread
    barrier per op); torch's thread setting is restored afterwards. Pixels do not depend
    on either.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if height < 4 or width < 4:
        raise ValueError(f"height and width must be at least 4, got {height}x{width}")
    if gaze_range <= 0 or max_redirect < 0:
        raise ValueError(f"gaze_range must be > 0 and max_redirect >= 0, got {gaze_range}, {max_redirect}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    opts = SynthOptions.from_kwargs(**options)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed) & 0xFFFFFFFFFFFF)
    g0, g1 = sample_gazes(gen, n, gaze_range, max_redirect, angles, input_gaze)
    tl = sample_tilts(gen, n, hard_fraction, opts) if tilt is None else _as_n(tilt, n, "tilt")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    # every random choice first (per chunk of the sample order), then render in chunks of
    # similar window size: a chunk's window is its largest sample's, so sorting saves work
    ps, zs = [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        cg = torch.Generator().manual_seed((int(seed) * 1_000_003 + start * 7919 + 17) & 0xFFFFFFFFFFFF)
        sl = slice(start, start + m)
        ps.append(sample_params(cg, m, height, width, opts, g0[sl], g1[sl], tl[sl]))
        zs.append(sample_noise_fields(cg, m))
    p_all = {k: torch.cat([q[k] for q in ps]) for k in ps[0]}
    z_all = {k: torch.cat([q[k] for q in zs]) for k in zs[0]}
    d_all = derived_params(p_all)
    lo_xy, hi_xy = _bboxes(d_all, d_all["up"], d_all["lo"])
    size = hi_xy - lo_xy
    order = torch.argsort(size[:, 1] * 64 + size[:, 0], stable=True)
    res = {"input": torch.empty(n, 3, height, width, device=device), "target": torch.empty(n, 3, height, width, device=device)}
    layer_keys = ("opening", "pupil", "iris", "eye_region") if opts.return_layers else ()
    for k in layer_keys:
        res[k] = torch.empty(n, 2, height, width, device=device)
    order_dev = order.to(device)

    d_sorted = {k: t[order] for k, t in d_all.items()}
    z_sorted = {k: t[order] for k, t in z_all.items()}

    def render_chunk(ci: int) -> None:
        sl = slice(ci * chunk, (ci + 1) * chunk)
        m = min(chunk, n - ci * chunk)
        p = {k: t[sl] for k, t in d_sorted.items()}
        z = {k: t[sl] for k, t in z_sorted.items()}
        r = render_batch(p, z, height, width, opts, device, layers=opts.return_layers, derived=True)
        img = r["images"]
        if opts.camera:
            ng = torch.Generator().manual_seed((int(seed) * 999_983 + ci * 104_729 + 5) & 0xFFFFFFFFFFFF)
            cam = {k: p[k].repeat_interleave(2).to(device) for k in ("exposure", "blur", "noise", "jpeg_q", "saturation")}
            noise = torch.randn(m, 1, 3, height, width, generator=ng).to(device).expand(m, 2, 3, height, width)
            img = apply_camera(img.reshape(m * 2, 3, height, width), cam, noise=noise.reshape(m * 2, 3, height, width))
            img = img.view(m, 2, 3, height, width)
        else:
            img = (img * p["exposure"].to(device).view(m, 1, 1, 1, 1)).clamp(0, 1)
        di = order_dev[sl]
        res["input"].index_copy_(0, di, img[:, 0])
        res["target"].index_copy_(0, di, img[:, 1])
        for k in layer_keys:
            res[k].index_copy_(0, di, r[k])

    n_chunks = (n + chunk - 1) // chunk
    workers = min(threads, n_chunks) if device.type == "cpu" else 1
    if workers == 1:
        for ci in range(n_chunks):
            render_chunk(ci)
    else:
        old = torch.get_num_threads()

        def work(ci):
            if torch.get_num_threads() != 1:   # this thread's intra-op setting
                torch.set_num_threads(1)
            render_chunk(ci)

        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="render_pairs") as ex:
                for f in [ex.submit(work, ci) for ci in range(n_chunks)]:
                    f.result()
        finally:
            torch.set_num_threads(old)
    anc = anchors_from_params(d_all)
    res["anchors"] = anc[:, 0].contiguous().to(device)
    res["target_anchors"] = anc[:, 1].contiguous().to(device)
    res["angles"] = (g1 - g0).to(device)
    res["input_gaze"] = g0.to(device)
    res["target_gaze"] = g1.to(device)
    res["tilt"] = tl.to(device)
    return res
