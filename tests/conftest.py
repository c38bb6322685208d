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
