"""Test setup: CPU by default, the Triton kernels through the interpreter.

TRITON_INTERPRET must be set before triton is imported; with no GPU it is the
only way Triton kernels run.
"""
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture
def gen():
    """A seeded generator: inputs are random, never zeros, and reproducible."""
    return torch.Generator().manual_seed(1234)


def rand(gen, *shape, lo=0.0, hi=1.0, dtype=torch.float32, device="cpu"):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(dtype=dtype, device=device)


def non_integer(x: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
    """Nudge values away from integers (where bilinear sampling has a kink)."""
    frac = x - x.floor()
    return torch.where(frac < margin, x + margin, torch.where(frac > 1 - margin, x - margin, x))


# ------------------------------------------------------------------ model helpers
# A tiny configuration (whole-model gradchecks in seconds), random parameters and inputs:
# shared by the model, accelerate and kernel tests.
from deepwarp_fast.config import DeepWarpConfig  # noqa: E402
from deepwarp_fast.model import DeepWarp  # noqa: E402

TINY = DeepWarpConfig(height=9, width=11, angle_hidden=4, angle_dim=4, coarse_channels=(4, 4), coarse_kernels=(3, 1),
                      fine_channels=(4, 4), fine_kernels=(3, 1), lcm_feature_layer=0, lcm_channels=(3,))


def randomize(model: DeepWarp, seed: int = 0, scale: float = 1.0) -> DeepWarp:
    """Random parameters and BN statistics (the default init has zero heads)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) - 0.5).to(p.dtype) * (0.6 if "weight" in name else 0.2) * scale)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.add_(1.0)
                m.running_mean.copy_((torch.rand(m.running_mean.shape, generator=g, dtype=torch.float64) - 0.5).to(m.running_mean.dtype))
                m.running_var.copy_((torch.rand(m.running_var.shape, generator=g, dtype=torch.float64) + 0.5).to(m.running_var.dtype))
    return model


def inputs(gen, B, cfg, dtype=torch.float32):
    eyes = rand(gen, B, 3, cfg.height, cfg.width, dtype=dtype)
    anchors = torch.stack([rand(gen, B, 7, lo=2, hi=cfg.width - 3), rand(gen, B, 7, lo=2, hi=cfg.height - 3)], -1).to(dtype)
    angles = rand(gen, B, 2, lo=-20, hi=20, dtype=dtype)
    return eyes, anchors, angles


def read_video(path):
    """(every frame OpenCV decodes from the video at ``path``, its frame rate)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames, fps
