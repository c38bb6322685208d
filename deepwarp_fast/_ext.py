"""Loading the C++/CUDA extension: the installed deepwarp_fast._C, or a JIT build.

``load()`` returns ``(module, "")`` or ``(None, why)``; the reason is kept and quoted
by every error that needs the extension (``deepwarp-fast env`` prints it).

The JIT route (``torch.utils.cpp_extension.load``) builds the same sources with the
same flags (``_build.py``) on first use, into a cache folder
(``$DEEPWARP_EXT_CACHE`` or ``~/.cache/deepwarp_fast/ext-<torch version>``) that later
runs reuse. A build takes minutes, so it only runs when asked for: ``DEEPWARP_JIT=1``
in the environment, or ``load(jit=True)``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from typing import Optional, Tuple

_lock = threading.Lock()
_state: dict = {}


def jit_requested() -> bool:
    return os.environ.get("DEEPWARP_JIT", "0") not in ("", "0")


def cache_dir() -> str:
    import torch

    base = os.environ.get("DEEPWARP_EXT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "deepwarp_fast")
    # torch.utils.cpp_extension.load rebuilds by itself when the sources or flags change.
    return os.path.join(base, "ext-torch-" + torch.__version__.replace("+", "_"))


def _load_build_module():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build.py")
    spec = importlib.util.spec_from_file_location("_deepwarp_build", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _jit_build():
    import torch
    from torch.utils import cpp_extension

    build = _load_build_module()
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    return cpp_extension.load(**build.jit_kwargs(cpp_extension, torch, folder))


def load(jit: Optional[bool] = None) -> Tuple[Optional[object], str]:
    """The extension module and '' , or None and why it is unavailable."""
    jit = jit_requested() if jit is None else jit
    with _lock:
        if "module" in _state and (_state["module"] is not None or not jit or _state.get("jit_tried")):
            return _state["module"], _state["why"]
        try:
            mod = importlib.import_module("deepwarp_fast._C")
            _state.update(module=mod, why="")
            return mod, ""
        except Exception as exc:  # keep the reason to quote it later
            why = f"import deepwarp_fast._C failed ({type(exc).__name__}: {exc})"
        if jit:
            _state["jit_tried"] = True
            try:
                mod = _jit_build()
                _state.update(module=mod, why="")
                return mod, ""
            except Exception as exc:
                why += f"; the JIT build (DEEPWARP_JIT=1) failed too ({type(exc).__name__}: {str(exc)[-500:]})"
        else:
            why += (
                "; build it with `pip install --no-build-isolation -e .` (CUDA kernels need a CUDA build of torch "
                "and a CUDA toolkit), or set DEEPWARP_JIT=1 to build it on first use"
            )
        _state.update(module=None, why=why)
        return None, why


def require():
    """The extension module, or RuntimeError quoting why it could not be loaded."""
    mod, why = load()
    if mod is None:
        raise RuntimeError(f"the C++/CUDA extension is unavailable: {why}")
    return mod
