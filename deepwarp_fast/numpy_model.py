"""DeepWarp's inference in NumPy, from the same weights file: no PyTorch import.

:func:`load_numpy_model` reads a weights file with ``safetensors.numpy`` and folds each
BatchNorm into its conv; :class:`NumpyDeepWarp` computes what ``DeepWarp`` computes in
eval mode (``model(eyes, anchors, angles)`` and ``model.fields(...)``) on float32 arrays
in the same NCHW layout. It exists for start-up: the one-photo CLI redirects a photo in
well under a second without the 1.2 s ``import torch`` (see ``numpy_ops``). Outputs
equal the reference's to float32 rounding (tests/test_numpy_backend.py).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from .config import DeepWarpConfig
from .numpy_ops import conv2d, nearest_up, warp


def expected_shapes(cfg: DeepWarpConfig) -> Dict[str, Tuple[int, ...]]:
    """name -> shape of every float tensor a weights file of ``cfg`` holds (BN counters aside)."""
    out = {"angle_embedding.fc1.weight": (cfg.angle_hidden, 2), "angle_embedding.fc1.bias": (cfg.angle_hidden,),
           "angle_embedding.fc2.weight": (cfg.angle_dim, cfg.angle_hidden), "angle_embedding.fc2.bias": (cfg.angle_dim,)}
    l = cfg.lcm_feature_layer
    towers = [("coarse", cfg.input_channels, cfg.coarse_channels, cfg.coarse_kernels),
              ("fine", cfg.input_channels + 5, cfg.fine_channels, cfg.fine_kernels)]
    if cfg.use_lcm:
        towers.append(("lcm", cfg.coarse_channels[l] + cfg.fine_channels[l], cfg.lcm_channels, (1,) * len(cfg.lcm_channels)))
    for name, cin, chans, ks in towers:
        for i, (c, k) in enumerate(zip(chans, ks)):
            out[f"{name}.layers.{i}.conv.weight"] = (c, cin, k, k)
            for s in ("weight", "bias", "running_mean", "running_var"):
                out[f"{name}.layers.{i}.bn.{s}"] = (c,)
            cin = c
        out[f"{name}.head.weight"], out[f"{name}.head.bias"] = (2, cin, 1, 1), (2,)
    return out


def _fold(t: Dict[str, np.ndarray], prefix: str, eps: float) -> Tuple[np.ndarray, np.ndarray]:
    """``ops.fold_bn`` for layer ``prefix`` (conv without bias, then BN)."""
    scale = t[f"{prefix}.bn.weight"] / np.sqrt(t[f"{prefix}.bn.running_var"] + eps)
    w = t[f"{prefix}.conv.weight"] * scale[:, None, None, None]
    b = -t[f"{prefix}.bn.running_mean"] * scale + t[f"{prefix}.bn.bias"]
    return w.astype(np.float32), b.astype(np.float32)


class NumpyDeepWarp:
    """Eval-mode DeepWarp on NumPy arrays (float32, NCHW): eyes (B, 3, H, W) in [0, 1],
    anchors (B, K, 2) patch pixels, angles (B, 2) degrees (SPEC.md, "Tensors")."""

    backend = "numpy"
    training = False

    def __init__(self, tensors: Dict[str, np.ndarray], config: DeepWarpConfig):
        self.config = cfg = config
        self.fc = [(tensors[f"angle_embedding.fc{i}.weight"], tensors[f"angle_embedding.fc{i}.bias"]) for i in (1, 2)]
        self.towers: Dict[str, List[Tuple[np.ndarray, np.ndarray]]] = {}
        self.heads: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        names = {"coarse": len(cfg.coarse_channels), "fine": len(cfg.fine_channels)}
        if cfg.use_lcm:
            names["lcm"] = len(cfg.lcm_channels)
        for name, n in names.items():
            self.towers[name] = [_fold(tensors, f"{name}.layers.{i}", cfg.bn_eps) for i in range(n)]
            self.heads[name] = (tensors[f"{name}.head.weight"], tensors[f"{name}.head.bias"])

    def eval(self) -> "NumpyDeepWarp":
        return self

    def _tower(self, name: str, x: np.ndarray, feature_layer: Optional[int] = None):
        feat = None
        for i, (w, b) in enumerate(self.towers[name]):
            x = np.maximum(conv2d(x, w, b), 0)
            if i == feature_layer:
                feat = x
        return conv2d(x, *self.heads[name]), feat

    def _check(self, eyes, anchors, angles) -> None:
        cfg = self.config
        B = eyes.shape[0] if getattr(eyes, "ndim", 0) == 4 else -1
        if B < 1 or eyes.shape[1:] != (3, cfg.height, cfg.width):
            raise ValueError(f"eyes must have shape (B, 3, {cfg.height}, {cfg.width}), got {getattr(eyes, 'shape', None)}")
        if anchors.shape != (B, cfg.num_anchors, 2) or angles.shape != (B, 2):
            raise ValueError(f"anchors must be ({B}, {cfg.num_anchors}, 2) and angles ({B}, 2), "
                             f"got {anchors.shape} and {angles.shape}")
        if not (np.isfinite(anchors).all() and np.isfinite(angles).all()):
            raise ValueError("anchors and angles must be finite")
        if np.abs(angles).max() > cfg.max_angle:
            raise ValueError(f"angles holds {np.abs(angles).max():g} degrees, outside the range the weights were "
                             f"trained for: [-{cfg.max_angle:g}, {cfg.max_angle:g}] (config.max_angle)")
        if not np.isfinite(eyes).all() or eyes.min() < 0 or eyes.max() > 1:
            raise ValueError("eyes must hold finite values in [0, 1]")

    def _run(self, eyes, anchors, angles):
        self._check(eyes, anchors, angles)
        cfg = self.config
        H, W = cfg.height, cfg.width
        eyes = np.ascontiguousarray(eyes, dtype=np.float32)
        anchors = np.asarray(anchors, dtype=np.float32)
        B = eyes.shape[0]
        (w1, b1), (w2, b2) = self.fc
        emb = np.maximum(np.maximum(np.asarray(angles, np.float32) @ w1.T + b1, 0) @ w2.T + b2, 0)
        # the input stack cat(eyes, anchor maps, angle maps), NHWC
        xs, ys = np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32)
        dx = np.broadcast_to(xs[None, None, :, None] - anchors[:, None, None, :, 0], (B, H, W, anchors.shape[1]))
        dy = np.broadcast_to(ys[None, :, None, None] - anchors[:, None, None, :, 1], (B, H, W, anchors.shape[1]))
        x = np.concatenate([eyes.transpose(0, 2, 3, 1), np.stack([dx, dy], -1).reshape(B, H, W, -1),
                            np.broadcast_to(emb[:, None, None, :], (B, H, W, emb.shape[1]))], axis=-1)
        h2, w2_ = H // 2, W // 2
        pooled = x[:, :2 * h2, :2 * w2_].reshape(B, h2, 2, w2_, 2, -1).mean((2, 4))  # avg_pool2d(2)
        head_c, feat_c = self._tower("coarse", pooled, cfg.lcm_feature_layer)
        up_c = nearest_up(np.tanh(head_c), H, W)  # (B, H, W, 2)
        scale = np.array([(W - 1) / 2.0, (H - 1) / 2.0], np.float32)
        coarse = warp(eyes, (up_c * scale).transpose(0, 3, 1, 2))
        head_f, feat_f = self._tower("fine", np.concatenate([x, coarse.transpose(0, 2, 3, 1), up_c], -1),
                                     cfg.lcm_feature_layer)
        flow = ((up_c + np.tanh(head_f)) * scale).transpose(0, 3, 1, 2)
        logits = None
        if cfg.use_lcm:
            logits, _ = self._tower("lcm", np.concatenate([nearest_up(feat_c, H, W), feat_f], -1))
            logits = logits.transpose(0, 3, 1, 2)
        return flow, logits

    def fields(self, eyes, anchors, angles):
        """``DeepWarp.fields``: (flow (B, 2, H, W) pixels, mask (B, 1, H, W) or None)."""
        flow, logits = self._run(eyes, anchors, angles)
        mask = None if logits is None else 1.0 / (1.0 + np.exp(logits[:, 0:1] - logits[:, 1:2]))
        return flow, mask

    def __call__(self, eyes, anchors, angles):
        """``DeepWarp.forward``: the redirected eyes (B, 3, H, W)."""
        flow, logits = self._run(eyes, anchors, angles)
        fine = warp(np.asarray(eyes, np.float32), flow)
        if logits is None:
            return fine
        m = 1.0 / (1.0 + np.exp(logits[:, 0:1] - logits[:, 1:2]))
        return fine * (1 - m) + m


def load_numpy_model(path=None) -> NumpyDeepWarp:
    """The weights file ``path`` (None: the bundled default) as a :class:`NumpyDeepWarp`.
    Every problem is a ValueError (FileNotFoundError for a missing file) naming the file."""
    from safetensors import safe_open

    from .weights import default_weights_path, read_metadata

    path = path if path is not None else default_weights_path()
    if path is None:
        raise FileNotFoundError("no default weights are bundled with this install: pass a weights file")
    meta = read_metadata(path)
    with safe_open(str(path), framework="np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, shape in expected_shapes(meta["config"]).items():
        if name not in tensors:
            raise ValueError(f"{path} does not match its config: tensor {name!r} is missing")
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, but the file's config needs {shape}")
        if not np.isfinite(tensors[name]).all():
            raise ValueError(f"{path}: tensor {name!r} holds NaN or infinite values; refusing to load it")
        if name.endswith("running_var") and (tensors[name] < 0).any():
            raise ValueError(f"{path}: tensor {name!r} holds negative variances; refusing to load it")
    return NumpyDeepWarp({k: v.astype(np.float32) for k, v in tensors.items()}, meta["config"])
