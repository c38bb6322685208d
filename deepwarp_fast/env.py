"""What this install can run: versions, devices, and each backend's availability."""
from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
from typing import Any, Dict


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as exc:
        return f"not available ({type(exc).__name__}: {exc})"


def _nvcc_version() -> str:
    import os

    for cand in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if cand and os.path.exists(cand):
            try:
                out = subprocess.run([cand, "--version"], capture_output=True, text=True, timeout=20).stdout
                return out.strip().splitlines()[-1] + f" ({cand})"
            except Exception as exc:  # pragma: no cover - depends on the machine
                return f"{cand} failed: {exc}"
    return "not found"


def collect() -> Dict[str, Any]:
    import torch

    from . import __version__
    from .backends import available_backends

    info: Dict[str, Any] = {
        "deepwarp_fast": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch CUDA build": torch.version.cuda or "none (CPU build)",
        "triton": _version("triton"),
        "nvcc": _nvcc_version(),
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "dlib": _version("dlib"),
        "cpu threads": torch.get_num_threads(),
        "cuda devices": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["cuda devices"].append(f"{i}: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB")
    from . import _ext

    ext, why = _ext.load(jit=False)
    if ext is None:
        info["extension"] = f"not loaded: {why}"
    else:
        kinds = "CPU ops and CUDA kernels" if ext.has_cuda() else "CPU ops only (built without CUDA kernels)"
        info["extension"] = f"{kinds} ({getattr(ext, '__file__', 'deepwarp_fast._C')})"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    info["backends"] = {dev: available_backends(dev) for dev in devices}
    return info


def format_report(info: Dict[str, Any]) -> str:
    lines = []
    for k, v in info.items():
        if k == "backends":
            continue
        if isinstance(v, list):
            v = "; ".join(v) if v else "none visible"
        lines.append(f"{k:18s} {v}")
    lines.append("backends:")
    for dev, table in info["backends"].items():
        for name, why in table.items():
            state = "available" if not why else f"unavailable: {why}"
            lines.append(f"  {dev:5s} {name:10s} {state}")
    return "\n".join(lines)
