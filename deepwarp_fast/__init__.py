"""deepwarp_fast: DeepWarp gaze redirection (Ganin et al., ECCV 2016), fast.

    import deepwarp_fast
    model = deepwarp_fast.load_model()            # bundled default weights
    out = model(eyes, anchors, angles)            # (B, 3, 41, 51) in [0, 1]

Tensor conventions and op semantics: SPEC.md (see README).
"""
from .accelerate import AcceleratedDeepWarp, accelerate
from .backends import BackendChoiceWarning, BackendUnavailableError, available_backends, backend_status
from .config import DeepWarpConfig
from .export import export_onnx
from .model import DeepWarp, DeepWarpOutput, count_parameters
from .weights import default_weights_path, load_model, read_metadata, save_weights

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
