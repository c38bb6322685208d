"""Time per pipeline stage (decode, detect/track, landmarks, crop, model, paste, encode)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict

STAGES = ("decode", "detect/track", "landmarks", "crop", "model", "paste", "encode")


class StageTimes:
    """Accumulated wall time per stage. Stages may run in other threads (decode and
    encode do in a video run): each stage is written by one thread only."""

    def __init__(self):
        self.seconds: Dict[str, float] = {s: 0.0 for s in STAGES}
        self.calls: Dict[str, int] = {s: 0 for s in STAGES}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1

    def report(self, frames: int) -> str:
        """One line per stage: ms per frame and the share of the summed stage time."""
        frames = max(frames, 1)
        total = sum(self.seconds.values()) or 1e-12
        lines = [f"{'stage':<13}{'ms/frame':>10}{'share':>8}"]
        for s, sec in self.seconds.items():
            lines.append(f"{s:<13}{1e3 * sec / frames:>10.2f}{100 * sec / total:>7.1f}%")
        lines.append(f"{'sum':<13}{1e3 * total / frames:>10.2f}")
        return "\n".join(lines)


@contextmanager
def _null(stage: str):
    yield


def timer(times):
    """``times`` itself, or a do-nothing timer when it is None."""
    return times if times is not None else _null
