"""One frame's eyes, redirected: :class:`_Frame` (the input's format, its grayscale for the
detector, conversions of eye patches to and from the model's RGB in [0, 1]) and
:class:`_FrameRedirector`, the per-frame core that GazeRedirector and GazeStream share:
crop every eye of the faces found, skip the small, closed or cut ones with a message, run
the model once on all eyes, and paste the results (the native paste applies the model's
flow and mask to the frame's own pixels; the patch paste blends the output patch back)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, List, Optional

import numpy as np

from .eyes import EYE_CORNERS, EYE_POINTS, EyeCrop, eye_aspect_ratio, eye_crop, extract_patch
from .io import _check_color, image_format
from .paste import feather_mask, paste_patch
from .profile import StageTimes, timer
from .pupil import estimate_pupil
from .results import EyeResult, FaceResult, RedirectResult

if TYPE_CHECKING:
    from .stream import NullFieldCache

SIDES = ("image_left", "image_right")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class _Frame:
    """An input frame's format, its grayscale (uint8) for dlib, and views of its colour."""

    def __init__(self, image: np.ndarray, color: str):
        import cv2

        _check_color(color)
        self.maxval, self.channels = image_format(image)
        self.image, self.color = image, color
        src = image[..., 0] if (image.ndim == 3 and self.channels == 1) else image
        if src.dtype == np.float64:
            src = src.astype(np.float32)
        if self.channels == 3:
            src = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY if color == "rgb" else cv2.COLOR_BGR2GRAY)
        elif self.channels == 4:
            src = cv2.cvtColor(src, cv2.COLOR_RGBA2GRAY if color == "rgb" else cv2.COLOR_BGRA2GRAY)
        if src.dtype == np.uint16:
            src = (src >> 8).astype(np.uint8)
        elif src.dtype != np.uint8:
            src = np.clip(src * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.gray = np.ascontiguousarray(src)

    def colour_view(self, image: np.ndarray) -> np.ndarray:
        """The colour (or gray) channels of ``image`` in this frame's layout, as a view."""
        if image.ndim == 2:
            return image
        return image[..., 0] if self.channels == 1 else image[..., :3]

    def to_rgb01(self, patch: np.ndarray) -> np.ndarray:
        # Bicubic sampling can overshoot a float image's [0, 1]: the model wants [0, 1].
        p = np.clip(patch.astype(np.float32) * np.float32(1.0 / self.maxval), 0.0, 1.0)
        if p.ndim == 2:
            return np.repeat(p[..., None], 3, axis=2)
        return p[..., ::-1] if self.color == "bgr" else p

    def from_rgb01(self, patch: np.ndarray) -> np.ndarray:
        if self.channels == 1:
            return patch @ _LUMA
        return patch[..., ::-1] if self.color == "bgr" else patch

    def paste_channels(self):
        return slice(0, 1) if self.channels == 1 else slice(0, 3)


def _blend_region_leaves_frame(crop: EyeCrop, w: int, h: int, frame_w: int, frame_h: int) -> bool:
    """Whether the feathered ellipse around an eye (where the paste can change pixels)
    reaches outside the frame."""
    from .paste import MASK_AX, MASK_AY

    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    u = (w - 1) / 2.0 + MASK_AX * w / 2.0 * np.cos(t)
    v = (h - 1) / 2.0 + MASK_AY * h / 2.0 * np.sin(t)
    pts = crop.to_frame(np.stack([u, v], axis=1))
    return bool((pts[:, 0] < -0.5).any() or (pts[:, 1] < -0.5).any() or (pts[:, 0] > frame_w - 0.5).any()
                or (pts[:, 1] > frame_h - 0.5).any())


class _FrameRedirector:
    """The per-frame core of :class:`~deepwarp_fast.face.redirector.GazeRedirector` (its
    base class): it reads the redirector's ``model``, ``config``, ``device``, ``paste``,
    ``kernel``, ``null_correction``, ``level_roll``, ``min_eye_px`` and ``closed_eye_ratio``."""

    numpy = False  # a NumPy model (numpy_model.NumpyDeepWarp): arrays in and out, no torch

    def _redirect_faces(self, frame: _Frame, faces: List[FaceResult], v: float, h: float,
                        times: Optional[StageTimes], pupil_filter=None, null_cache: Optional["NullFieldCache"] = None) -> RedirectResult:
        t = timer(times)
        cfg = self.config
        Hp, Wp = cfg.height, cfg.width
        out = frame.image.copy()
        messages: List[str] = []
        if not faces:
            return RedirectResult(out, faces, messages)
        src = frame.colour_view(frame.image)
        Hf, Wf = frame.gray.shape
        batch_patches, batch_anchors, batch_angles, batch_eyes, batch_keys = [], [], [], [], []
        with t("crop"):
            for face in faces:
                lm = face.landmarks
                widths = [float(np.hypot(*(lm[b] - lm[a]))) for a, b in EYE_CORNERS.values()]
                face.eyes = [EyeResult(side, lm[list(EYE_CORNERS[side])].copy()) for side in SIDES]
                if min(widths) < self.min_eye_px:
                    face.skipped = (f"face at {face.box}: eyes {min(widths):.0f} px wide, below min_eye_px="
                                    f"{self.min_eye_px:g}; left unchanged")
                    for e in face.eyes:
                        e.skipped = "too small"
                    messages.append(face.skipped)
                    continue
                for eye in face.eyes:
                    pts = lm[list(EYE_POINTS[eye.side])]
                    if (pts[:, 0].min() < 0 or pts[:, 1].min() < 0 or pts[:, 0].max() > Wf - 1 or pts[:, 1].max() > Hf - 1):
                        eye.skipped = "cut by the image border"
                        messages.append(f"face at {face.box}: the {eye.side.replace('_', '-')} eye is cut by the image border; left unchanged")
                        continue
                    crop = eye_crop(lm, eye.side, Wp, Hp, cfg.crop_scale, self.level_roll)
                    eye.crop = crop
                    if _blend_region_leaves_frame(crop, Wp, Hp, Wf, Hf):
                        messages.append(f"face at {face.box}: the {eye.side.replace('_', '-')} eye's blend region reaches "
                                        "past the image border; redirected from the visible part (check the result)")
                    if eye_aspect_ratio(crop.eyelid) < self.closed_eye_ratio:
                        eye.skipped = "closed"
                        messages.append(f"face at {face.box}: the {eye.side.replace('_', '-')} eye is closed; left unchanged")
                        continue
                    patch = frame.to_rgb01(extract_patch(src, crop, Wp, Hp))
                    pupil, eye.pupil_found = estimate_pupil(patch, crop.eyelid)
                    pupil_frame = crop.to_frame(pupil)[0]
                    if pupil_filter is not None:
                        pupil_frame = pupil_filter(face, eye.side, pupil_frame)
                        pupil = crop.to_patch(pupil_frame)[0]
                    eye.pupil = pupil_frame
                    batch_patches.append(patch)
                    batch_anchors.append(np.concatenate([crop.eyelid, np.asarray(pupil, np.float32)[None]], axis=0))
                    batch_angles.append((v, -h if crop.mirrored else h))
                    batch_eyes.append(eye)
                    batch_keys.append((face.track_id, eye.side) if face.track_id is not None else None)
        if not batch_eyes:
            return RedirectResult(out, faces, messages)
        native = self.paste == "native" and callable(getattr(self.model, "fields", None))
        with t("model"):
            if self.numpy:
                flow, mask, res, finite = self._run_model_numpy(batch_patches, batch_anchors, batch_angles, batch_keys,
                                                                null_cache, native)
            else:
                flow, mask, res, finite = self._run_model_torch(batch_patches, batch_anchors, batch_angles, batch_keys,
                                                                null_cache, native)
        ok = finite.tolist()
        for eye, good in zip(batch_eyes, ok):
            if not good:
                eye.skipped = "the model's output is not finite"
                messages.append(f"the {eye.side.replace('_', '-')} eye: the model returned NaN or infinite values "
                                "(damaged weights?); left unchanged")
                warnings.warn(messages[-1], RuntimeWarning, stacklevel=3)
        with t("paste"):
            if native:
                keep = [i for i, good in enumerate(ok) if good]
                if keep:
                    out = self._warp_native(out, frame, [batch_eyes[i] for i in keep], flow[keep],
                                            mask[keep] if mask is not None else None)
            else:
                for eye, patch, good in zip(batch_eyes, res, ok):
                    if good:
                        paste_patch(out, frame.from_rgb01(patch), eye.crop, frame.maxval, frame.paste_channels())
                        eye.redirected = True
        return RedirectResult(out, faces, messages)

    def _run_model_torch(self, patches, anchors, angles, keys, null_cache, native):
        """(flow, mask, None, finite) with ``native``, else (None, None, images (E, h, w, 3), finite)."""
        import torch

        eyes_t = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).to(self.device).contiguous()
        anchors_t = torch.from_numpy(np.stack(anchors).astype(np.float32)).to(self.device)
        angles_t = torch.tensor(angles, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            if native:
                flow, mask = self._fields(eyes_t, anchors_t, angles_t, keys, null_cache)
                return flow, mask, None, _finite(flow, mask)
            res = self.model(eyes_t, anchors_t, angles_t).float()
            finite = torch.isfinite(res).flatten(1).all(1).cpu()
            return None, None, res.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy(), finite

    def _run_model_numpy(self, patches, anchors, angles, keys, null_cache, native):
        """``_run_model_torch`` for a NumPy model (numpy_model.NumpyDeepWarp)."""
        eyes = np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2), dtype=np.float32)
        anchors_a = np.stack(anchors).astype(np.float32)
        angles_a = np.asarray(angles, dtype=np.float32)
        if native:
            flow, mask = self._fields(eyes, anchors_a, angles_a, keys, null_cache)
            return flow, mask, None, _finite(flow, mask)
        res = np.asarray(self.model(eyes, anchors_a, angles_a), dtype=np.float32)
        finite = np.isfinite(res).reshape(len(res), -1).all(1)
        return None, None, np.clip(res, 0, 1).transpose(0, 2, 3, 1), finite

    def _fields(self, eyes_t, anchors_t, angles_t, keys=None, cache: Optional["NullFieldCache"] = None):
        """(flow, mask) on the CPU; with ``null_correction``, minus the fields the model
        predicts for the same eyes at angle 0 (one batch of both). In a stream, ``cache``
        keeps each tracked eye's angle-0 fields for a few frames (``keys``: per eye its
        (track id, side) or None), so most frames run the model once. Tensors, or arrays
        for a NumPy model."""
        xp = _ArrayOps(self.numpy)
        if not self.null_correction:
            flow, mask = self.model.fields(eyes_t, anchors_t, angles_t)
            return xp.host(flow), (xp.host(mask) if mask is not None else None)
        E = eyes_t.shape[0]
        if not bool(angles_t.any()):  # angle 0 with the correction: exactly nothing to do
            h, w = eyes_t.shape[-2:]
            return xp.zeros((E, 2, h, w)), xp.zeros((E, 1, h, w))
        keys = keys if keys is not None else [None] * E
        need = [i for i in range(E) if cache is None or not cache.fresh(keys[i])]
        flow, mask = self.model.fields(xp.cat([eyes_t, eyes_t[need]]), xp.cat([anchors_t, anchors_t[need]]),
                                       xp.cat([angles_t, 0 * angles_t[need]]))
        flow, mask = xp.host(flow), (xp.host(mask) if mask is not None else None)
        flow0 = [None] * E
        mask0 = [None] * E
        for j, i in enumerate(need):
            flow0[i], mask0[i] = flow[E + j], (mask[E + j] if mask is not None else None)
            if cache is not None:
                cache.put(keys[i], flow0[i], mask0[i])
        for i in range(E):
            if flow0[i] is None:
                flow0[i], mask0[i] = cache.get(keys[i])
        flow = flow[:E] - xp.stack(flow0)
        if mask is not None:
            mask = xp.clip01(mask[:E] - xp.stack(mask0))
        return flow, mask

    def _warp_native(self, out: np.ndarray, frame: "_Frame", eyes: List[EyeResult], flow, mask) -> np.ndarray:
        """Apply the fields of ``eyes`` to ``out`` (a copy of the frame) at full resolution."""
        for e in eyes:
            e.redirected = True
        if not bool(flow.any()) and (mask is None or not bool(mask.any())):
            return out  # zero fields are the identity (angle 0 with null correction)
        cfg = self.config
        src = frame.image if frame.image.flags.c_contiguous else np.ascontiguousarray(frame.image)
        A = np.stack([e.crop.A for e in eyes])
        feather = feather_mask(cfg.height, cfg.width)
        index = np.zeros(len(eyes), dtype=np.int64)
        channels = min(frame.channels, 3)
        as_frames = lambda a: (a if a.ndim == 3 else a[..., None])[None]  # noqa: E731
        # ``out`` is already a copy of the frame: the op writes the eyes' pixels into it.
        if self.numpy:
            from ..numpy_ops import warp_frame

            warp_frame(as_frames(src), index, A, flow, mask, feather, kernel=self.kernel, channels=channels,
                       out=as_frames(out))
            return out
        import torch

        from ..ops import warp_frame

        def tensor(a):
            with warnings.catch_warnings():  # a read-only frame is fine: the source is only read
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(a)

        warp_frame(tensor(as_frames(src)), torch.from_numpy(index), torch.from_numpy(A), flow, mask,
                   torch.from_numpy(feather), kernel=self.kernel, channels=channels, backend="auto",
                   out=tensor(as_frames(out)))
        return out


def _finite(flow, mask):
    """Per eye: are its flow and mask finite (tensors or arrays)?"""
    ok = np.isfinite(np.asarray(flow, dtype=np.float32)).reshape(len(flow), -1).all(1)
    if mask is not None:
        ok &= np.isfinite(np.asarray(mask, dtype=np.float32)).reshape(len(mask), -1).all(1)
    return ok


class _ArrayOps:
    """The few array functions ``_fields`` needs, for tensors or for NumPy arrays."""

    def __init__(self, numpy: bool):
        if numpy:
            self.cat, self.stack, self.host = np.concatenate, np.stack, np.asarray
            self.zeros = lambda shape: np.zeros(shape, np.float32)
            self.clip01 = lambda a: np.clip(a, 0, 1)
        else:
            import torch

            self.cat, self.stack, self.zeros = torch.cat, torch.stack, torch.zeros
            self.host = lambda t: t.float().cpu()
            self.clip01 = lambda t: t.clamp(0, 1)
