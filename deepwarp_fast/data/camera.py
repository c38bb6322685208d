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
    K = _kron_dct(x.device)                                               # (64, 64)
    blocks = x.view(N, C, Hp // 8, 8, Wp // 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(N, -1, 64)
    q = (table.to(x.device).reshape(1, 1, 64) * scale.view(N, 1, 1)).clamp(min=1.0)
    coef = torch.matmul(blocks, K.t())
    coef = torch.round(coef.mul_(q.reciprocal())).mul_(q)
    out = torch.matmul(coef, K)
    return out.view(N, C, Hp // 8, Wp // 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(N, C, Hp, Wp)[..., :H, :W]


_KRON = {}


def _kron_dct(device) -> torch.Tensor:
    key = str(device)
    if key not in _KRON:
        D = _dct_matrix(device)
        _KRON[key] = torch.kron(D, D).contiguous()
    return _KRON[key]


def _up2(c: torch.Tensor, dim: int) -> torch.Tensor:
    """x2 linear upsampling along ``dim`` (pixel centres, edges replicated), like
    F.interpolate(mode="bilinear", align_corners=False) but cheaper for small images."""
    n = c.shape[dim]
    prev = torch.cat([c.narrow(dim, 0, 1), c.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([c.narrow(dim, 1, n - 1), c.narrow(dim, n - 1, 1)], dim)
    c = c * 0.75
    return torch.stack([c.add(prev, alpha=0.25), c.add_(nxt, alpha=0.25)], dim + 1).flatten(dim, dim + 1)


# RGB (0..255) <-> YCbCr (JFIF), Y not yet centred
_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])


def jpeg_roundtrip(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Simulated JPEG compression of img (N, 3, H, W) in [0, 1]; quality (N,) in 1..100
    (images with quality <= 0 are returned unchanged)."""
    N, _, H, W = img.shape
    idx = (quality > 0).nonzero().flatten()
    if idx.numel() == 0:
        return img
    part = idx.numel() < N
    x = img.index_select(0, idx) if part else img
    n = x.shape[0]
    qs = _quality_scale(quality.index_select(0, idx).float() if part else quality.float())
    # colour conversion as one (3 x 3) matrix product, with the 255 scale folded in
    ycc = torch.matmul(_TO_YCC.to(x.device) * 255.0, x.reshape(n, 3, H * W)).view(n, 3, H, W)
    y = _blockwise(ycc[:, 0:1] - 128.0, _Q_LUMA, qs)
    c = ycc[:, 1:3]
    if H % 2 or W % 2:
        c = F.pad(c, (0, W % 2, 0, H % 2), mode="replicate")
    cs = (c[..., 0::2, 0::2] + c[..., 0::2, 1::2] + c[..., 1::2, 0::2] + c[..., 1::2, 1::2]) * 0.25
    cs = _blockwise(cs, _Q_CHROMA, qs)
    c = _up2(_up2(cs, 2), 3)[..., :H, :W]
    # back to RGB: Y has weight 1 in every row, the chroma a (3 x 2) matrix
    out = torch.matmul(_FROM_YCC[:, 1:].to(x.device) * (1.0 / 255.0), c.reshape(n, 2, H * W)).view(n, 3, H, W)
    out = out.add_(y.add_(128.0).mul_(1.0 / 255.0)).clamp_(0, 1)
    if not part:
        return out
    return img.index_copy(0, idx, out)


def gaussian_blur(img: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (N,) in pixels (~0 = unchanged),
    border replicate: per pass, one multiply-add per tap on shifted views of the padded
    image (cheaper here than depthwise convolutions or banded matrix products)."""
    N, C, H, W = img.shape
    K = 2 * radius + 1
    x = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype).view(1, -1)
    s = sigma.to(img.dtype).clamp(min=1e-3).view(-1, 1)
    k = torch.exp((x / s).square_().mul_(-0.5).clamp_(min=-60.0))
    kv = (k / k.sum(1, keepdim=True)).view(N, 1, 1, 1, K)
    xp = F.pad(img.reshape(1, N * C, H, W), (radius,) * 4, mode="replicate").view(N, C, H + K - 1, W + K - 1)
    rows = xp[..., 0:W] * kv[..., 0]
    for j in range(1, K):
        rows.addcmul_(xp[..., j:j + W], kv[..., j])
    out = rows[:, :, 0:H] * kv[..., 0]
    for j in range(1, K):
        out.addcmul_(rows[:, :, j:j + H], kv[..., j])
    return out


def apply_camera(img: torch.Tensor, p: Dict[str, torch.Tensor], noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Exposure, saturation, blur, sensor noise, JPEG, in that order. ``p`` holds (N,)
    tensors exposure, saturation, blur (sigma), noise (std), jpeg_q (0 = none); ``noise``
    is a standard-normal tensor like img (so a pair can share one).

    Exposure and saturation are one (3 x 3) colour matrix per image; images with a blur
    sigma <= 0.2 px are not blurred (an exact identity kernel)."""
    N, C, H, W = img.shape
    e = p["exposure"].to(img.dtype).view(N, 1, 1)
    s = p["saturation"].to(img.dtype).view(N, 1, 1)
    eye = torch.eye(3, device=img.device, dtype=img.dtype)
    M = e * (s * eye + (1 - s) / 3.0)                                     # grey + s * (img - grey), times exposure
    img = torch.matmul(M, img.reshape(N, 3, H * W)).view(N, 3, H, W).clamp_(0, 1)
    # images with sigma <= 0.2 px get the identity kernel (sigma 0): one batched blur for all
    img = gaussian_blur(img, torch.where(p["blur"] > 0.2, p["blur"], torch.zeros_like(p["blur"])))
    if noise is not None:
        # signal-dependent noise: shot noise grows with the intensity
        img = torch.addcmul(img, noise * p["noise"].to(img.dtype).view(N, 1, 1, 1), img.sqrt().add_(0.5))
    img = img.clamp_(0, 1)
    img = jpeg_roundtrip(img, p["jpeg_q"])
    return img.clamp_(0, 1)
