"""Camera effects on batches of small RGB images, vectorised with torch: exposure,
saturation, Gaussian blur, sensor noise and a JPEG round trip (YCbCr, 4:2:0 chroma,
8x8 DCT with the standard quantisation tables scaled by quality).

Convention: images (N, 3, H, W) float in [0, 1]; per-image parameters are (N,) tensors.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F

# The JPEG standard's example quantisation tables (ITU-T T.81, Annex K).
_Q_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
_Q_CHROMA = torch.tensor([
    [17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99], [47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4, dtype=torch.float32)


def _dct_matrix(device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64).view(8, 1)
    x = torch.arange(8, dtype=torch.float64).view(1, 8)
    d = torch.cos((2 * x + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float().to(device)


def _quality_scale(q: torch.Tensor) -> torch.Tensor:
    """libjpeg's quality (1..100) -> table scale factor."""
    q = q.clamp(1, 100)
    return torch.where(q < 50, 50.0 / q, (200 - 2 * q) / 100.0).clamp(min=0.01)


def _blockwise(x: torch.Tensor, table: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """DCT-quantise-IDCT every 8x8 block of x (N, C, H, W) (values in 0..255, centred).
    The 2-D DCT of a block is one (64 x 64) matrix, kron(D, D), on the flattened block."""
    N, C, H, W = x.shape
    ph, pw = (-H) % 8, (-W) % 8
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    Hp, Wp = x.shape[-2:]
    D = _dct_matrix(x.device)
    K = torch.kron(D, D)                                                  # (64, 64)
    blocks = x.view(N, C, Hp // 8, 8, Wp // 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(N, -1, 64)
    q = (table.to(x.device).reshape(1, 1, 64) * scale.view(N, 1, 1)).clamp(min=1.0)
    coef = torch.round(torch.matmul(blocks, K.t()) / q) * q
    out = torch.matmul(coef, K)
    return out.view(N, C, Hp // 8, Wp // 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Hp, Wp)[..., :H, :W]


def _up2(c: torch.Tensor, dim: int) -> torch.Tensor:
    """x2 linear upsampling along ``dim`` (pixel centres, edges replicated), like
    F.interpolate(mode="bilinear", align_corners=False) but cheaper for small images."""
    n = c.shape[dim]
    prev = torch.cat([c.narrow(dim, 0, 1), c.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([c.narrow(dim, 1, n - 1), c.narrow(dim, n - 1, 1)], dim)
    even = 0.75 * c + 0.25 * prev
    odd = 0.75 * c + 0.25 * nxt
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def jpeg_roundtrip(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Simulated JPEG compression of img (N, 3, H, W) in [0, 1]; quality (N,) in 1..100
    (images with quality <= 0 are returned unchanged)."""
    N, _, H, W = img.shape
    on = quality > 0
    if not bool(on.any()):
        return img
    x = img[on] * 255.0
    qs = _quality_scale(quality[on].float())
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    y = _blockwise(y - 128.0, _Q_LUMA, qs) + 128.0
    c = torch.cat([cb, cr], 1)
    c = F.pad(c, (0, W % 2, 0, H % 2), mode="replicate")
    cs = (c[..., 0::2, 0::2] + c[..., 0::2, 1::2] + c[..., 1::2, 0::2] + c[..., 1::2, 1::2]) * 0.25
    cs = _blockwise(cs, _Q_CHROMA, qs)
    c = _up2(_up2(cs, 2), 3)[..., :H, :W]
    cb, cr = c[:, 0:1], c[:, 1:2]
    out = torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1) / 255.0
    res = img.clone()
    res[on] = out.clamp(0, 1)
    return res


def _blur_matrices(k: torch.Tensor, n: int) -> torch.Tensor:
    """(N, n, n) matrices that filter a length-n signal with the per-image kernels k (N, K)
    (border replicate): out = M @ signal."""
    K = k.shape[1]
    r = K // 2
    i = torch.arange(n, device=k.device)
    j = (i.view(-1, 1) + torch.arange(-r, r + 1, device=k.device).view(1, -1)).clamp(0, n - 1)   # (n, K)
    S = torch.zeros(K, n, n, device=k.device, dtype=k.dtype)
    S.index_put_((torch.arange(K, device=k.device).view(1, K).expand(n, K), i.view(-1, 1).expand(n, K), j),
                 torch.ones(n, K, device=k.device, dtype=k.dtype), accumulate=True)
    return torch.einsum("nk,kij->nij", k, S)


def gaussian_blur(img: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (N,) in pixels (~0 = unchanged),
    border replicate; two batched matrix products (faster than grouped convs here)."""
    N, C, H, W = img.shape
    x = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype).view(1, -1)
    s = sigma.to(img.dtype).clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (x / s) ** 2)
    k = k / k.sum(1, keepdim=True)
    Mw = _blur_matrices(k, W)                                            # (N, W, W)
    Mh = _blur_matrices(k, H)                                            # (N, H, H)
    out = torch.matmul(img.reshape(N, C * H, W), Mw.transpose(1, 2)).view(N, C, H, W)
    return torch.matmul(Mh.unsqueeze(1), out)


def apply_camera(img: torch.Tensor, p: Dict[str, torch.Tensor], noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Exposure, saturation, blur, sensor noise, JPEG, in that order. ``p`` holds (N,)
    tensors exposure, saturation, blur (sigma), noise (std), jpeg_q (0 = none); ``noise``
    is a standard-normal tensor like img (so a pair can share one)."""
    N = img.shape[0]
    img = img * p["exposure"].view(N, 1, 1, 1)
    grey = img.mean(1, keepdim=True)
    img = grey + p["saturation"].view(N, 1, 1, 1) * (img - grey)
    img = img.clamp(0, 1)
    on = p["blur"] > 0.2
    if bool(on.any()):
        img = img.clone()
        img[on] = gaussian_blur(img[on], p["blur"][on])
    if noise is not None:
        # signal-dependent noise: shot noise grows with the intensity
        img = img + noise * p["noise"].view(N, 1, 1, 1) * (0.5 + img.sqrt())
    img = img.clamp(0, 1)
    img = jpeg_roundtrip(img, p["jpeg_q"])
    return img.clamp(0, 1)
