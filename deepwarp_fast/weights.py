"""Weights files: safetensors with the config and provenance in the metadata.

Loading never unpickles: safetensors holds raw tensors and a JSON header only.
"""
from __future__ import annotations

import datetime
import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

from safetensors import safe_open

from .config import DeepWarpConfig

if TYPE_CHECKING:
    import torch

    from .model import DeepWarp

# torch is imported where a tensor is made, not here: the paths and the metadata are read
# without it (the NumPy backend's start-up, numpy_model.load_numpy_model).

FORMAT = "deepwarp_fast/1"
DEFAULT_WEIGHTS_NAME = "default.safetensors"

PathLike = Union[str, os.PathLike]


def default_weights_path() -> Optional[Path]:
    """The bundled default weights, or None when this install ships none."""
    p = Path(str(resources.files("deepwarp_fast").joinpath("weights", DEFAULT_WEIGHTS_NAME)))
    return p if p.is_file() else None


def save_weights(model: DeepWarp, path: PathLike, provenance: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``model``'s parameters and BN statistics to ``path`` (safetensors).

    The metadata holds the config (JSON), the provenance (JSON: how the weights were
    made) and the format tag. The parent folder must exist.
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save weights to {path}: folder {path.parent} does not exist")
    if any(not hasattr(m, "bn") for t in (model.coarse, model.fine) for m in t.layers):
        raise ValueError("save the unfused model: this one has its BatchNorms folded (fuse_bn())")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    prov = {"saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__}
    prov.update(provenance or {})
    meta = {"format": FORMAT, "config": model.config.to_json(), "provenance": json.dumps(prov, sort_keys=True)}
    save_file(tensors, str(path), metadata=meta)
    return path


def read_metadata(path: PathLike) -> Dict[str, Any]:
    """The config (a DeepWarpConfig), provenance (a dict) and format of a weights file.

    Every problem (not safetensors, another format, config or provenance that is not
    valid JSON, a config field out of range) is a ValueError that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise ValueError(f"{path} is not a readable safetensors weights file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a deepwarp_fast weights file (format {meta.get('format')!r}, expected {FORMAT!r})")
    if "config" not in meta:
        raise ValueError(f"{path}: the metadata holds no 'config' (the model's architecture)")
    try:
        config = DeepWarpConfig.from_json(meta["config"])
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: the config in its metadata is invalid: {exc}") from exc
    try:
        provenance = json.loads(meta.get("provenance", "{}"))
    except ValueError as exc:
        raise ValueError(f"{path}: the provenance in its metadata is not valid JSON: {exc}") from exc
    if not isinstance(provenance, dict):
        raise ValueError(f"{path}: the provenance in its metadata must be a JSON object, got {type(provenance).__name__}")
    return {"format": meta["format"], "config": config, "provenance": provenance}


def expected_tensors(config: DeepWarpConfig) -> Dict[str, "tuple[tuple[int, ...], torch.dtype]"]:
    """name -> (shape, dtype) of every tensor a weights file of ``config`` holds, found
    without allocating the model (it is built on the "meta" device)."""
    import torch

    from .model import DeepWarp

    with torch.device("meta"):
        model = DeepWarp(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def read_tensors(path: PathLike, config: DeepWarpConfig) -> Dict[str, torch.Tensor]:
    """The tensors of the weights file ``path``, checked against ``config`` before any
    is read (names, shapes and dtypes from the file's header) and after (every float
    finite, BN variances >= 0): a ValueError names the file and the tensor."""
    import torch

    path = Path(path)
    expected = expected_tensors(config)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
            if missing or unexpected:
                raise ValueError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
            for k in expected:  # in the model's order: the first layer that differs is named
                shape = tuple(f.get_slice(k).get_shape())
                if shape != expected[k][0]:
                    raise ValueError(f"{path}: tensor {k!r} has shape {shape}, but the file's config needs {expected[k][0]}")
            state = {}
            for k in sorted(keys):
                t = f.get_tensor(k)
                if t.dtype.is_floating_point != expected[k][1].is_floating_point or t.is_complex():
                    raise ValueError(f"{path}: tensor {k!r} has dtype {t.dtype}, expected {expected[k][1]}")
                state[k] = t
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: the tensors cannot be read ({type(exc).__name__}: {exc})") from exc
    for k, t in state.items():
        if t.dtype.is_floating_point:
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                raise ValueError(f"{path}: tensor {k!r} holds {int(bad.sum())} NaN or infinite value(s) of {t.numel()} "
                                 f"(a diverged training run?); refusing to load it")
            if k.endswith("running_var") and bool((t < 0).any()):
                raise ValueError(f"{path}: tensor {k!r} holds negative variances; refusing to load it")
    return state


def load_model(path: Optional[PathLike] = None, backend: str = "reference", device: "str | torch.device" = "cpu") -> DeepWarp:
    """Build the model described by a weights file and load its tensors, in eval mode.

    ``path=None`` loads the bundled default weights. The config and every tensor's
    name, shape, dtype and values are checked before the model is built.
    """
    from .backends import BACKENDS, check_backend_name
    from .model import DeepWarp

    check_backend_name(backend, ("auto",) + BACKENDS)
    if path is None:
        path = default_weights_path()
        if path is None:
            raise FileNotFoundError(
                "this install ships no default weights (deepwarp_fast/weights/default.safetensors); "
                "pass a weights file, or train one with `deepwarp-fast train`"
            )
    meta = read_metadata(path)
    state = read_tensors(path, meta["config"])
    model = DeepWarp(meta["config"], backend=backend)
    model.load_state_dict(state, strict=True)
    model.provenance = meta["provenance"]
    return model.to(device).eval()
