"""Which implementation of the ops runs: "reference", "triton", "cuda" or "auto".

Each backend has a probe that says whether it can run on tensors of a given device
and, if not, why. A backend asked for by name that cannot run raises
``BackendUnavailableError`` with that reason; ``"auto"`` picks the fastest one that
can and says once (a log record and a warning) which one it picked.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import warnings
from typing import TYPE_CHECKING, Dict, Optional, Tuple

if TYPE_CHECKING:
    import torch

# torch is imported by the probes that need it, not here: the CLI imports this module
# for its warning class, and its NumPy photo path never imports torch.

log = logging.getLogger("deepwarp_fast")

BACKENDS = ("reference", "triton", "cuda")
# "auto" preference order, fastest first, per device type.
_AUTO_ORDER = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cuda", "reference")}


class BackendChoiceWarning(UserWarning):
    """Issued once per device type when backend "auto" picks a backend."""


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here; the message says why."""


@functools.lru_cache(maxsize=None)
def _import_status(module: str) -> Tuple[Optional[object], str]:
    try:
        return importlib.import_module(module), ""
    except Exception as exc:  # keep the reason to quote it later
        return None, f"import {module} failed: {type(exc).__name__}: {exc}"


def triton_interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _probe_triton(device_type: str) -> Tuple[bool, str]:
    import torch

    if device_type == "cuda":
        if not torch.cuda.is_available():
            return False, "no CUDA device is visible to torch"
        if triton_interpreter_enabled():
            return False, "TRITON_INTERPRET=1 is set: the interpreter runs on CPU tensors only"
    elif device_type == "cpu":
        if not triton_interpreter_enabled():
            return False, "Triton runs on CPU tensors only through its interpreter (set TRITON_INTERPRET=1 before importing triton)"
    else:
        return False, f"Triton does not support device type {device_type!r}"
    for module in ("triton", "deepwarp_fast.kernels"):
        mod, why = _import_status(module)
        if mod is None:
            return False, why
    return True, ""


def _probe_cuda_ext(device_type: str) -> Tuple[bool, str]:
    import torch

    from . import _ext

    ext, why = _ext.load()
    if ext is None:
        return False, why
    if device_type == "cuda":
        if not torch.cuda.is_available():
            return False, "no CUDA device is visible to torch"
        if not getattr(ext, "has_cuda", lambda: False)():
            return False, (
                "deepwarp_fast._C was built without CUDA kernels (CPU ops only): rebuild it under a CUDA build "
                "of torch with a CUDA toolkit (CUDA_HOME) present"
            )
        return True, ""
    if device_type == "cpu":
        return True, ""
    return False, f"the extension does not support device type {device_type!r}"


def check_backend_name(name, allowed=("auto",) + BACKENDS) -> None:
    """Raise a ValueError at once for a backend name that does not exist (a typo), so
    that it is not found only at the first forward."""
    if name not in allowed:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(allowed)}")


def backend_status(name: str, device: "torch.device | str" = "cpu") -> Tuple[bool, str]:
    """(available, reason) for backend ``name`` on ``device``; reason is '' when available."""
    import torch

    device_type = torch.device(device).type
    if name == "reference":
        return True, ""
    if name == "triton":
        return _probe_triton(device_type)
    if name == "cuda":
        return _probe_cuda_ext(device_type)
    raise ValueError(f"unknown backend {name!r}; expected one of {('auto',) + BACKENDS}")


_announced: Dict[Tuple[str, Tuple[str, ...]], str] = {}

# The extension fuses whole layers (see deepwarp_fast.accelerate), not single ops.
_EXT_HINT = "the C++/CUDA extension fuses whole layers: use deepwarp_fast.accelerate(model) for it"


def resolve_backend(name: str, device: "torch.device | str", choices: Tuple[str, ...] = BACKENDS, what: str = "") -> str:
    """Turn a requested backend (possibly "auto") into one that can run on ``device``.

    ``choices`` are the backends that implement the caller (``what``, for messages):
    "auto" picks the first available of them in speed order; a backend named
    outside them, or unavailable, raises ``BackendUnavailableError`` saying why.
    """
    import torch

    device_type = torch.device(device).type
    if name == "auto":
        order = [c for c in _AUTO_ORDER.get(device_type, ("reference",)) if c in choices] or ["reference"]
        for cand in order:
            ok, _ = backend_status(cand, device_type)
            if ok:
                key = (device_type, tuple(choices))
                if _announced.get(key) != cand:
                    _announced[key] = cand
                    skipped = {c: backend_status(c, device_type)[1] for c in order if c != cand}
                    msg = f"deepwarp_fast: backend 'auto' picked {cand!r} for {device_type} tensors" + (f" in {what}" if what else "")
                    log.info(msg + "; unavailable: %s", skipped)
                    warnings.warn(msg, BackendChoiceWarning, stacklevel=3)
                return cand
        return "reference"
    if name in BACKENDS and name not in choices:
        hint = f": {_EXT_HINT}" if name == "cuda" else ""
        raise BackendUnavailableError(f"backend {name!r} does not implement {what or 'this op'} (it has {', '.join(choices)}){hint}")
    ok, why = backend_status(name, device_type)
    if not ok:
        raise BackendUnavailableError(f"backend {name!r} is unavailable for {device_type} tensors: {why}")
    return name


def available_backends(device: "torch.device | str" = "cpu") -> Dict[str, str]:
    """Map every backend to '' (available) or the reason it is not, for ``device``."""
    return {b: backend_status(b, device)[1] for b in BACKENDS}
