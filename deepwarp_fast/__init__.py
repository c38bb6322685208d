"""deepwarp_fast: DeepWarp gaze redirection (Ganin et al., ECCV 2016), fast.

    import deepwarp_fast
    model = deepwarp_fast.load_model()            # bundled default weights
    out = model(eyes, anchors, angles)            # (B, 3, 41, 51) in [0, 1]

Tensor conventions and op semantics: SPEC.md (see README).
"""
import importlib
import sys
import types

# The public names load on first use (PEP 562): `import deepwarp_fast` and the CLI start
# without `import torch` (~1.2 s), which the NumPy backend of the one-photo CLI never needs.
_LAZY = {
    "AcceleratedDeepWarp": "accelerate", "accelerate": "accelerate",
    "BackendChoiceWarning": "backends", "BackendUnavailableError": "backends",
    "available_backends": "backends", "backend_status": "backends",
    "DeepWarpConfig": "config", "export_onnx": "export",
    "DeepWarp": "model", "DeepWarpOutput": "model", "count_parameters": "model",
    "default_weights_path": "weights", "load_model": "weights", "read_metadata": "weights", "save_weights": "weights",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``deepwarp_fast.accelerate`` is the function, as it always was, even after the
    submodule of the same name is imported (the import system would bind the module)."""

    def __setattr__(self, name, value):
        if name == "accelerate" and isinstance(value, types.ModuleType):
            value = value.accelerate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    "AcceleratedDeepWarp",
    "accelerate",
    "BackendChoiceWarning",
    "BackendUnavailableError",
    "DeepWarp",
    "DeepWarpConfig",
    "DeepWarpOutput",
    "available_backends",
    "backend_status",
    "count_parameters",
    "default_weights_path",
    "export_onnx",
    "load_model",
    "read_metadata",
    "save_weights",
    "__version__",
]
