"""What a render can be asked for: :class:`SynthOptions` (supersampling, crop and its
jitter, the spread of head tilts, eyebrows, glasses, make-up, camera effects, the eyeball's
anatomy) and the constants the options and the samplers share: ``ANATOMIES``,
``ROTATION_RADIUS`` (the "anatomical" eyeball) and ``HARD_TILT`` (the paper's easy/hard
split)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ANATOMIES = ("v1", "anatomical")
# Iris-centre rotation radius in eye units (half the corner distance) for "anatomical":
# 12.5 mm / 15 mm = 0.833, jittered +-7%.
ROTATION_RADIUS = (0.78, 0.89)
HARD_TILT = 8.0  # degrees; |tilt| above this is a "hard" sample (the paper's split)


@dataclass(frozen=True)
class SynthOptions:
    """Rendering options; every field can be passed to :func:`render_pairs` by name."""

    supersample: int = 2            # render at this multiple of the patch size, then area-downsample
    crop_scale: float = 2.0         # patch width / corner distance (DeepWarpConfig.crop_scale)
    scale_jitter: float = 0.08      # relative std of the crop scale (landmark noise)
    center_jitter: float = 0.035    # std of the crop centre, in patch widths
    hard_tilt_max: float = 20.0     # |tilt| of hard samples is uniform in (8, hard_tilt_max)
    easy_tilt_std: float = 3.0      # tilt of easy samples: normal, clipped to +-8
    brow_prob: float = 0.45         # an eyebrow enters the top of the patch
    glasses_prob: float = 0.08      # a glasses frame crosses the patch
    makeup_prob: float = 0.1        # darker lash line
    camera: bool = True             # blur, noise, JPEG, exposure (off: the clean render)
    jpeg_prob: float = 0.6          # fraction of samples JPEG-compressed (quality 35..95)
    blur_max: float = 0.9           # max Gaussian blur sigma, output pixels
    noise_max: float = 0.03         # max sensor noise std
    return_layers: bool = False     # also return masks (for tests and previews)
    # "v1": the original eyeball (the iris centre turns on ~0.72 eye units, i.e. it moves
    # ~0.36 sin(angle) eye widths); "anatomical": the iris centre turns on a radius of
    # 12.5 mm in a ~30 mm eye opening (0.42 sin(angle) eye widths, issue 12), with the
    # same iris sizes. The default stays "v1" so held-out numbers stay comparable.
    anatomy: str = "v1"

    @classmethod
    def from_kwargs(cls, **kw) -> "SynthOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kw) - names)
        if unknown:
            raise TypeError(f"render_pairs got unknown option(s) {unknown}; known options: {sorted(names)}")
        opts = cls(**kw)
        if opts.supersample < 1 or int(opts.supersample) != opts.supersample:
            raise ValueError(f"supersample must be a positive integer, got {opts.supersample}")
        if opts.crop_scale <= 0:
            raise ValueError(f"crop_scale must be positive, got {opts.crop_scale}")
        if opts.anatomy not in ANATOMIES:
            raise ValueError(f"anatomy must be one of {ANATOMIES}, got {opts.anatomy!r}")
        return opts
