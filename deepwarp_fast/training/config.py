"""The run configuration: one file (TOML or JSON) that fully describes a training run.

Sections: ``model`` (DeepWarpConfig fields that differ from the defaults), ``data``
(the synthetic generator and the paper's batch composition), ``loss`` (each term a
switch with a weight), ``optim`` (Adam, schedule, curriculum) and ``run`` (steps,
device, checkpoints, logging). Unknown keys are errors, so a typo cannot silently
fall back to a default.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

from ..config import DeepWarpConfig


@dataclass
class DataConfig:
    # Arguments of deepwarp_fast.data.render_pairs (the synthetic generator).
    gaze_range: float = 30.0
    # Redirections are drawn with magnitude in [0, max_redirect] degrees.
    max_redirect: float = 30.0
    # The paper's sampling: the redirection range split into num_bins bins; each batch
    # takes bins_per_batch bins, each with easy_per_bin + hard_per_bin pairs.
    num_bins: int = 15
    bins_per_batch: int = 4
    easy_per_bin: int = 24
    hard_per_bin: int = 8
    # "Hard" pairs have a head tilt above hard_tilt degrees (up to max_tilt).
    hard_tilt: float = 8.0  # = deepwarp_fast.data.synth.options.HARD_TILT (the paper's split)
    max_tilt: float = 20.0
    # "magnitude": bins over |angles|, the direction uniform on the circle;
    # "vertical": bins over the vertical angle in [-max_redirect, max_redirect], horizontal 0
    # (the paper's setting).
    binning: str = "magnitude"
    seed: int = 0
    # The renderer's eyeball: "v1" (the original), "anatomical" (the iris turns on
    # 12.5 mm in a 30 mm eye opening; deepwarp_fast.data.synth.options.SynthOptions.anatomy) or
    # "mixed" (each batch one or the other, by its seed's parity: about half each).
    anatomy: str = "v1"
    # Render the masks (target iris, eye opening, eye region) that the flow
    # supervision and TV losses need; switched on automatically when they are used.
    layers: bool = False
    # Real eyes without labels for the anatomical flow term loss.real_iris (issue 12):
    # "bundled" (the bundled portraits), a bundled name, or a folder of portraits;
    # comma-separated for several; "" = none. Each photo is also mirrored and rescaled,
    # each eye cut real_copies times with a jittered crop; real_per_batch of them join
    # every batch (twice: redirected and at angle 0).
    real_eyes: str = ""
    real_per_batch: int = 8
    real_copies: int = 8

    @property
    def batch_size(self) -> int:
        return self.bins_per_batch * (self.easy_per_bin + self.hard_per_bin)


@dataclass
class LossConfig:
    # L2 (mean squared error) on the final output (after the LCM).
    l2_output: float = 1.0
    # L2 on the coarse image O_c (the original TensorFlow project found it necessary).
    l2_coarse: float = 1.0
    # L2 on the fine image O (before the LCM); 0 = off.
    l2_fine: float = 0.0
    # Optional L1 on the final output; 0 = off.
    l1_output: float = 0.0
    # Section 4.5: replace the output's L2 by the min over shifts of up to
    # registration_k pixels (target enlarged by k pixels, border replicated).
    registration_tolerant: bool = False
    registration_k: int = 3
    # Flow supervision where the renderer knows the answer (issue 12): across the
    # target's iris the backward flow equals input pupil - target pupil (pixels^2,
    # mean over iris pixels), at the target's six lid points it equals input point -
    # target point. Applied to the full flow and, at half weight, the coarse flow.
    flow_iris: float = 0.0
    flow_lids: float = 0.0
    # Total variation of the flow: weighted by the target's darkness inside the eye
    # opening (keeps the iris rigid), and plain outside it within the eye region (lids).
    tv_eye: float = 0.0
    tv_lids: float = 0.0
    # Real eyes (data.real_eyes): the backward flow of a redirection, less the flow at
    # angle 0, moves the iris disc (centre + a ring at real_iris_radius eye widths) by
    # the anatomical 0.42 sin(angle) eye widths (pixels^2); full flow and, at half
    # weight, the coarse flow.
    real_iris: float = 0.0
    real_iris_radius: float = 0.08
    # 0 or a second ring at this many eye widths (near the limbus, ~0.18): the visible
    # iris edge moves with the centre, a rigid iris.
    real_iris_rim: float = 0.0
    # Real eyes: the lower lid points move 0.2 of the iris's vertical shift, not with the
    # iris (deepwarp_fast.data.real_eyes.real_lids_loss), pixels^2.
    real_lids: float = 0.0


@dataclass
class OptimConfig:
    lr: float = 2e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    # "cosine" (warmup, then cosine down to lr * final_lr_fraction) or "constant".
    schedule: str = "cosine"
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    # Curriculum: over the first curriculum_steps steps the largest sampled bin grows
    # from curriculum_start_bins to num_bins; 0 = off.
    curriculum_steps: int = 0
    curriculum_start_bins: int = 5
    grad_clip: float = 0.0


@dataclass
class RunConfig:
    steps: int = 1000
    # Stop early (with a checkpoint) after this many seconds of wall time; 0 = no limit.
    max_wall_s: float = 0.0
    device: str = "cpu"
    backend: str = "auto"
    # CPU threads for torch (0 = leave torch's default).
    threads: int = 0
    seed: int = 0
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0
    log_every: int = 10
    channels_last: bool = False
    # Processes that render batches ahead of the training step (0 = render in the loop).
    data_workers: int = 0
    # Start from these weights (a .safetensors file; "default" = the bundled weights)
    # instead of the identity initialisation; ignored when resuming from a checkpoint.
    init_weights: str = ""
    # Also keep weights_step<N>.safetensors every this many steps (0 = off), to pick
    # the best checkpoint on another measure (e.g. the real-face gain) afterwards.
    snapshot_every_steps: int = 0


@dataclass
class TrainConfig:
    model: Dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        self.model_config()  # validates the model section
        d, o = self.data, self.optim
        if d.num_bins < 1 or not 1 <= d.bins_per_batch <= d.num_bins:
            raise ValueError(f"data.bins_per_batch must be in [1, data.num_bins={d.num_bins}], got {d.bins_per_batch}")
        if d.easy_per_bin < 0 or d.hard_per_bin < 0 or d.batch_size < 1:
            raise ValueError(f"data.easy_per_bin and data.hard_per_bin must be >= 0 with a non-empty batch, got {d.easy_per_bin} and {d.hard_per_bin}")
        if d.binning not in ("magnitude", "vertical"):
            raise ValueError(f"data.binning must be 'magnitude' or 'vertical', got {d.binning!r}")
        if not 0 <= d.hard_tilt <= d.max_tilt:
            raise ValueError(f"data.hard_tilt must be in [0, data.max_tilt={d.max_tilt}], got {d.hard_tilt}")
        if d.anatomy not in ("v1", "anatomical", "mixed"):
            raise ValueError(f"data.anatomy must be 'v1', 'anatomical' or 'mixed' (alternate batches), got {d.anatomy!r}")
        if d.max_redirect <= 0:
            raise ValueError(f"data.max_redirect must be > 0, got {d.max_redirect}")
        if o.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {o.schedule!r}")
        if o.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {o.lr}")
        if self.loss.registration_k < 0:
            raise ValueError(f"loss.registration_k must be >= 0, got {self.loss.registration_k}")
        if (self.loss.real_iris or self.loss.real_lids) and not d.real_eyes.strip():
            raise ValueError("loss.real_iris and loss.real_lids need real eyes: set data.real_eyes (\"bundled\", a bundled face or a folder)")
        if d.real_eyes.strip() and (d.real_per_batch < 1 or d.real_copies < 1):
            raise ValueError(f"data.real_per_batch and data.real_copies must be >= 1 with data.real_eyes, "
                             f"got {d.real_per_batch} and {d.real_copies}")
        if self.run.steps < 1:
            raise ValueError(f"run.steps must be >= 1, got {self.run.steps}")

    @property
    def needs_layers(self) -> bool:
        l = self.loss
        return bool(self.data.layers or l.flow_iris or l.flow_lids or l.tv_eye or l.tv_lids)

    def model_config(self) -> DeepWarpConfig:
        return DeepWarpConfig.from_dict(dict(self.model))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(sections)
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)} (expected {sorted(sections)})")
        kwargs: Dict[str, Any] = {}
        for name, value in d.items():
            if name == "model":
                kwargs[name] = dict(value)
                continue
            sub = _SECTION_TYPES[name]
            known = {f.name for f in dataclasses.fields(sub)}
            bad = set(value) - known
            if bad:
                raise ValueError(f"unknown keys in [{name}]: {sorted(bad)} (expected some of {sorted(known)})")
            kwargs[name] = sub(**value)
        return cls(**kwargs)

    def with_overrides(self, overrides: List[str]) -> "TrainConfig":
        """Apply ``section.key=value`` strings (value parsed as JSON, else as a string)."""
        d = self.to_dict()
        for item in overrides:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ValueError(f"--set expects section.key=value, got {item!r}")
            key, raw = item.split("=", 1)
            section, name = key.split(".", 1)
            if section not in d:
                raise ValueError(f"--set {item!r}: unknown section {section!r}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            d[section][name] = value
        return TrainConfig.from_dict(d)


_SECTION_TYPES = {"data": DataConfig, "loss": LossConfig, "optim": OptimConfig, "run": RunConfig}


# ------------------------------------------------------------------------- file I/O
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(d: Dict[str, Dict[str, Any]]) -> str:
    """Write a two-level dict (sections of scalars and lists) as TOML."""
    lines = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def load_config(path: Union[str, Path]) -> TrainConfig:
    """Read a run config from a .toml or .json file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python < 3.11
            try:
                import tomli as tomllib
            except ImportError as exc:
                raise ImportError(f"reading {path} needs Python >= 3.11 (tomllib) or `pip install tomli`; or use a .json config") from exc
        with open(path, "rb") as f:
            d = tomllib.load(f)
    elif path.suffix == ".json":
        d = json.loads(path.read_text())
    else:
        raise ValueError(f"config file {path} must end in .toml or .json")
    return TrainConfig.from_dict(d)


def save_config(cfg: TrainConfig, path: Union[str, Path]) -> Path:
    path = Path(path)
    d = cfg.to_dict()
    if path.suffix == ".json":
        path.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    elif path.suffix == ".toml":
        path.write_text(dumps_toml(d))
    else:
        raise ValueError(f"config file {path} must end in .toml or .json")
    return path
