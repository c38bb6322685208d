"""Videos through the face pipeline: frames stream in (decoded in a thread), through a
GazeStream (tracking and smoothing), and out (encoded in a thread), in order, none
dropped: a frame that cannot be processed goes out untouched.

Output codecs (OpenCV): .mp4/.m4v/.mov mp4v, .avi MJPG, .mkv HuffYUV (HFYU, lossless:
frames without a face come out bit for bit). HuffYUV writes a 720p frame in ~6-11 ms
where FFV1 (also lossless, ~25% smaller files; ``codec="FFV1"``) takes ~55 ms and bounded
a whole run at ~20 fps (2-core CPU; `deepwarp-fast redirect --help` lists each codec's cost). OpenCV carries no audio: the output is silent.
The video is written to a temporary file beside the output and renamed into place
when it is closed, in a ``finally``: an interrupted run (Ctrl-C, SIGTERM in the CLI)
leaves a playable file holding every frame written so far, and a run that wrote no
frame leaves no file at all.

Damaged frames in the middle of a video (a decoder error) are skipped, counted and
reported; decoding goes on after them (VideoReader.skipped).
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from .io import InputError, _check_readable
from .profile import StageTimes

FOURCC_BY_EXT = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "HFYU"}
_END = object()


# A read that fails is retried this many times in a row before the video counts as
# ended: each retry moves the demuxer past one damaged packet (at the real end of the
# file a retry costs ~1 us).
MAX_CONSECUTIVE_FAILURES = 500


class VideoReader:
    """Frames (BGR uint8) of a video file; ``prefetch`` decodes ahead in a thread.

    Frames that cannot be decoded are skipped: ``skipped`` counts the failed reads
    that were followed by a good frame (damage in the middle; the exact number of
    frames lost is ``frame_count`` minus the frames read, where the header stores it).
    """

    def __init__(self, path, prefetch: bool = True, times: Optional[StageTimes] = None, queue_size: int = 4):
        import cv2

        self.path = Path(path)
        _check_readable(self.path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"{self.path} is not a readable video (unknown format, truncated or damaged)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.times = times
        self.skipped = 0
        ok, first = self._read()
        if not ok:
            self._cap.release()
            raise InputError(f"{self.path}: no frame could be decoded (truncated or damaged?)")
        self.height, self.width = first.shape[:2]
        self._first = first
        self._prefetch = prefetch
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = None

    def _read(self) -> Tuple[bool, Optional[np.ndarray]]:
        t0 = time.perf_counter()
        ok, frame = self._cap.read()
        failures = 0
        while not ok and failures < MAX_CONSECUTIVE_FAILURES:
            failures += 1
            ok, frame = self._cap.read()
        if ok and failures:
            self.skipped += failures
        if self.times is not None and ok:
            self.times.add("decode", time.perf_counter() - t0)
        return ok, frame

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                ok, frame = self._read()
                if not ok:
                    break
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer
            self._queue.put(exc)
        finally:
            self._queue.put(_END)

    def __iter__(self) -> Iterator[np.ndarray]:
        first, self._first = self._first, None
        if first is None:
            raise RuntimeError("a VideoReader can be iterated once")
        yield first
        if not self._prefetch:
            while True:
                ok, frame = self._read()
                if not ok:
                    return
                yield frame
        self._thread = threading.Thread(target=self._pump, name="deepwarp-decode", daemon=True)
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)
        self._cap.release()


def _can_create(folder: Path) -> bool:
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".deepwarp-probe.", dir=str(folder))
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


class VideoWriter:
    """Writes BGR uint8 frames; the codec follows the extension (FOURCC_BY_EXT) unless
    ``codec`` (a four-letter code) is given. ``threaded`` encodes in a thread."""

    def __init__(self, path, fps: float, size: Tuple[int, int], codec: Optional[str] = None, threaded: bool = True,
                 times: Optional[StageTimes] = None, queue_size: int = 4):
        import cv2

        self.path = Path(path)
        ext = self.path.suffix.lower()
        if codec is None:
            if ext not in FOURCC_BY_EXT:
                raise ValueError(f"{self.path}: cannot write video as {ext!r}; use one of "
                                 f"{' '.join(sorted(FOURCC_BY_EXT))} (or pass a codec)")
            codec = FOURCC_BY_EXT[ext]
        if len(codec) != 4:
            raise ValueError(f"codec must be a four-letter code such as mp4v, MJPG, HFYU or FFV1, got {codec!r}")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self.codec, self.fps, self.size = codec, float(fps), (int(size[0]), int(size[1]))
        # OpenCV picks the container from the extension: the temporary name keeps it.
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.{id(self):x}.part{self.path.suffix}")
        self._w = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*codec), self.fps, self.size)
        if not self._w.isOpened():
            self._w.release()
            self._discard()
            if not os.access(self.path.parent, os.W_OK) or not _can_create(self.path.parent):
                raise PermissionError(f"cannot write {self.path}: no file can be created in {self.path.parent}")
            raise OSError(f"OpenCV cannot write {self.path} with codec {codec!r} at {self.size[0]}x{self.size[1]}")
        self.times = times
        self.written = 0
        self._error: Optional[BaseException] = None
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._drain, name="deepwarp-encode", daemon=True)
            self._thread.start()

    def _encode(self, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        self._w.write(frame)
        self.written += 1
        if self.times is not None:
            self.times.add("encode", time.perf_counter() - t0)

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            try:
                self._encode(item)
            except BaseException as exc:
                self._error = exc

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.size[1], self.size[0]) or frame.dtype != np.uint8:
            raise ValueError(f"frames must be {self.size[1]}x{self.size[0]} uint8, got {frame.shape} {frame.dtype}")
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._encode(frame)
        else:
            self._queue.put(frame)

    def _discard(self) -> None:
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Encode what is queued, finish the container (a playable file) and move it to
        ``path``; with no frame written, remove it (no file that would not open)."""
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
            self._thread = None
        self._w.release()
        if self._error is not None or self.written == 0:
            self._discard()
        elif self._tmp.exists():
            os.replace(self._tmp, self.path)
        if self._error is not None:
            raise self._error


@dataclass
class VideoSummary:
    """What a video run did: frames read and written, faces, timing, what went wrong."""

    input: str
    output: str
    frames: int = 0
    expected_frames: int = 0
    faces_found: int = 0
    frames_without_face: int = 0
    frames_failed: int = 0
    frames_dropped: int = 0
    eyes_redirected: int = 0
    fps_in: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False
    skipped_eyes: Counter = field(default_factory=Counter)
    messages: List[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        """Frames of the input were lost: undecodable (damaged), or the file ends early."""
        return not self.interrupted and self.frames_dropped > 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        lines = [f"{self.output}: {self.frames} frames at {self.fps_in:g} fps"
                 + (" (interrupted)" if self.interrupted else ""),
                 f"faces found: {self.faces_found} (in {self.frames - self.frames_without_face} frames); "
                 f"frames without a face: {self.frames_without_face}",
                 f"processed at {self.fps:.1f} fps ({self.seconds:.1f} s)"]
        if self.skipped_eyes:
            lines.append("eyes left unchanged: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_eyes.items())))
        if self.frames_failed:
            lines.append(f"frames passed through unprocessed after an error: {self.frames_failed}")
        if self.frames_dropped:
            lines.append(f"input frames that could not be decoded (dropped): {self.frames_dropped}")
        return "\n".join(lines)


def _video_size(path) -> Optional[Tuple[int, int]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read()
        return (frame.shape[1], frame.shape[0]) if ok else None
    finally:
        cap.release()


def redirect_video(redirector, src, dst, vertical: float = 0.0, horizontal: float = 0.0, *, detect_every: int = 10,
                   smooth: bool = True, codec: Optional[str] = None, progress: bool = True,
                   times: Optional[StageTimes] = None, threads: bool = True,
                   on_frame: Optional[Callable[[int, object], None]] = None) -> VideoSummary:
    """Redirect every frame of the video ``src`` into ``dst`` (same size and frame rate).

    Returns a VideoSummary. Ctrl-C stops the run cleanly: ``dst`` is closed and
    playable, and the summary says ``interrupted``. ``on_frame(index, result)`` is
    called after each frame (for a preview, or a test).
    """
    from tqdm import tqdm

    redirector.check_angles(vertical, horizontal)
    summary = VideoSummary(str(src), str(dst))
    reader = VideoReader(src, prefetch=threads, times=times)
    fps = reader.fps
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        summary.messages.append(f"{src}: the frame rate is not stored ({fps}); writing 30 fps")
        fps = 30.0
    summary.fps_in, summary.expected_frames = fps, reader.frame_count
    stream = redirector.stream(vertical, horizontal, color="bgr", fps=fps, detect_every=detect_every, smooth=smooth)
    writer = None
    bar = None
    odd_sized = 0
    t0 = time.perf_counter()
    try:
        writer = VideoWriter(dst, fps, (reader.width, reader.height), codec=codec, threaded=threads, times=times)
        bar = tqdm(total=reader.frame_count or None, unit="frame", disable=not progress, desc="redirect", leave=True)
        for i, frame in enumerate(reader):
            if frame.shape[:2] != (reader.height, reader.width):
                # A damaged header mid-stream can decode to another size: the frame is
                # dropped (and counted) rather than ending the run.
                odd_sized += 1
                continue
            try:
                res = stream.process(frame, times=times)
                out = res.image
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # loses nothing: the frame goes out as it came in
                res, out = None, frame
                summary.frames_failed += 1
                if summary.frames_failed == 1:
                    summary.messages.append(f"frame {i}: {type(exc).__name__}: {exc} (frame written unchanged)")
            writer.write(out)
            summary.frames += 1
            if res is not None:
                summary.eyes_redirected += res.eyes_redirected
                summary.faces_found += len(res.faces)
                summary.frames_without_face += not res.faces
                for f in res.faces:
                    for e in f.eyes:
                        if e.skipped:
                            summary.skipped_eyes[e.skipped] += 1
            else:
                summary.frames_without_face += 1
            bar.update(1)
            if on_frame is not None:
                on_frame(i, res)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if bar is not None:
            bar.close()
        reader.close()
        stream.close()
        if writer is not None:
            writer.close()
        summary.seconds = time.perf_counter() - t0
    if writer is not None and summary.frames:
        size = _video_size(dst)
        if size is not None and size != (reader.width, reader.height):
            summary.messages.append(
                f"{dst}: the encoder wrote {size[0]}x{size[1]} frames for {reader.width}x{reader.height} input "
                f"(OpenCV's encoders round odd sizes down to even)")
    if not summary.interrupted:
        # The header's frame count makes the count exact; without it, the failed reads
        # that a good frame followed are a lower bound.
        if summary.expected_frames > 0:
            summary.frames_dropped = max(0, summary.expected_frames - summary.frames)
        else:
            summary.frames_dropped = reader.skipped + odd_sized
        if summary.frames_dropped and summary.expected_frames > 0:
            summary.messages.append(
                f"{src}: {summary.frames_dropped} of {summary.expected_frames} frames could not be decoded "
                f"(damaged or truncated) and were dropped; the other {summary.frames} were written")
        elif summary.frames_dropped:
            summary.messages.append(
                f"{src}: at least {summary.frames_dropped} frames could not be decoded (damaged) and were dropped; "
                f"the {summary.frames} decodable frames were written")
    return summary
