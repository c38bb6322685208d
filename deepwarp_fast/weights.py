"""Weights files: safetensors with the config and provenance in the metadata.

Loading never unpickles: safetensors holds raw tensors and a JSON header only.
"""
from __future__ import annotations

import datetime
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import DeepWarpConfig
from .model import DeepWarp

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
    """The config (a DeepWarpConfig), provenance (a dict) and format of a weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise ValueError(f"{path} is not a readable safetensors weights file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a deepwarp_fast weights file (format {meta.get('format')!r}, expected {FORMAT!r})")
    return {
        "format": meta["format"],
        "config": DeepWarpConfig.from_json(meta["config"]),
        "provenance": json.loads(meta.get("provenance", "{}")),
    }


def load_model(path: Optional[PathLike] = None, backend: str = "reference", device: "str | torch.device" = "cpu") -> DeepWarp:
    """Build the model described by a weights file and load its tensors, in eval mode.

    ``path=None`` loads the bundled default weights.
    """
    if path is None:
        path = default_weights_path()
        if path is None:
            raise FileNotFoundError(
                "this install ships no default weights (deepwarp_fast/weights/default.safetensors); "
                "pass a weights file, or train one with `deepwarp-fast train`"
            )
    meta = read_metadata(path)
    model = DeepWarp(meta["config"], backend=backend)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=True)
    model.provenance = meta["provenance"]
    return model.to(device).eval()
