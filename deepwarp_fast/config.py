"""The one configuration object that describes a DeepWarp network (SPEC.md, "Architecture")."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Dict, Tuple


# Bounds far above any sensible DeepWarp (the default has 16-32 channels, 5x5 kernels,
# 41x51 patches) that stop a damaged config from asking for gigabytes.
MAX_CHANNELS = 1024
MAX_KERNEL = 31
MAX_LAYERS = 32
MAX_PATCH = 1024


@dataclass(frozen=True)
class DeepWarpConfig:
    """Every architectural choice of the model; the defaults are the shipped model.

    Convention: patches are ``height x width`` (41 x 51), the angle embedding maps
    (vertical, horizontal) degrees to ``angle_dim`` features, and each tower is a list
    of conv-BN-ReLU layers (``*_channels`` / ``*_kernels``) followed by a 1x1 conv to
    the 2-channel flow.
    """

    height: int = 41
    width: int = 51
    angle_hidden: int = 16
    angle_dim: int = 16
    coarse_channels: Tuple[int, ...] = (16, 32, 32, 32)
    coarse_kernels: Tuple[int, ...] = (5, 3, 3, 1)
    fine_channels: Tuple[int, ...] = (16, 32, 32, 32)
    fine_kernels: Tuple[int, ...] = (5, 3, 3, 1)
    # Index (into the tower's layers) of the features the LCM reads (feat_c, feat_f).
    lcm_feature_layer: int = 2
    lcm_channels: Tuple[int, ...] = (8, 8)
    use_lcm: bool = True
    bn_eps: float = 1e-3
    # Eye extraction: the patch width covers crop_scale * (corner distance).
    crop_scale: float = 2.0
    # The redirection range (degrees) the weights were trained for; inputs beyond it
    # are rejected by the face pipeline.
    max_angle: float = 30.0

    def __post_init__(self):
        self._check_values()
        for name in ("coarse", "fine"):
            ch = tuple(getattr(self, f"{name}_channels"))
            ks = tuple(getattr(self, f"{name}_kernels"))
            object.__setattr__(self, f"{name}_channels", ch)
            object.__setattr__(self, f"{name}_kernels", ks)
            if len(ch) != len(ks) or not ch:
                raise ValueError(f"{name}_channels and {name}_kernels must be non-empty and of equal length, got {ch} and {ks}")
            if any(k % 2 == 0 for k in ks):
                raise ValueError(f"{name}_kernels must be odd for 'same' padding, got {ks}")
            if not 0 <= self.lcm_feature_layer < len(ch):
                raise ValueError(f"lcm_feature_layer={self.lcm_feature_layer} is outside the {name} tower ({len(ch)} layers)")
        object.__setattr__(self, "lcm_channels", tuple(self.lcm_channels))
        if self.height < 4 or self.width < 4:
            raise ValueError(f"patch size must be at least 4x4, got {self.height}x{self.width}")

    def _check_values(self) -> None:
        """Types and sane ranges, so that a damaged or hand-edited config fails here with
        the field's name instead of allocating a huge model or disabling a check."""
        def count(name, v, hi):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"{name} must be an integer in [1, {hi}], got {v!r}")

        def positive(name, v, hi):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= hi):  # NaN fails too
                raise ValueError(f"{name} must be a finite number in (0, {hi:g}], got {v!r}")

        for name in ("height", "width"):
            count(name, getattr(self, name), MAX_PATCH)
        for name in ("angle_hidden", "angle_dim"):
            count(name, getattr(self, name), MAX_CHANNELS)
        for name in ("coarse_channels", "fine_channels", "lcm_channels", "coarse_kernels", "fine_kernels"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"{name} must be a list of integers, got {v!r}")
            if len(v) > MAX_LAYERS:
                raise ValueError(f"{name} must have at most {MAX_LAYERS} entries, got {len(v)}")
            for x in v:
                count(name, x, MAX_KERNEL if name.endswith("kernels") else MAX_CHANNELS)
        if isinstance(self.lcm_feature_layer, bool) or not isinstance(self.lcm_feature_layer, int):
            raise ValueError(f"lcm_feature_layer must be an integer, got {self.lcm_feature_layer!r}")
        if not isinstance(self.use_lcm, bool):
            raise ValueError(f"use_lcm must be true or false, got {self.use_lcm!r}")
        positive("bn_eps", self.bn_eps, 1.0)
        positive("crop_scale", self.crop_scale, 10.0)
        positive("max_angle", self.max_angle, 90.0)

    @property
    def num_anchors(self) -> int:
        return 7

    @property
    def input_channels(self) -> int:
        """Channels of the input stack: eyes 3 + anchor maps 14 + angle maps."""
        return 3 + 2 * self.num_anchors + self.angle_dim

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DeepWarpConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a DeepWarpConfig must be a JSON object of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DeepWarpConfig fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "DeepWarpConfig":
        return cls.from_dict(json.loads(s))
