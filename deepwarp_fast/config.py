"""The one configuration object that describes a DeepWarp network (SPEC.md, "Architecture")."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Dict, Tuple


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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DeepWarpConfig fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "DeepWarpConfig":
        return cls.from_dict(json.loads(s))
