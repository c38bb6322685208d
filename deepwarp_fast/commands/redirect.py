"""`deepwarp-fast redirect`: move the gaze in a photo or a video, nothing else changed."""
NAME = "redirect"
HELP = "redirect the gaze of every face in an image or a video"

EXIT_OK = 0
EXIT_ERROR = 1        # an unexpected failure while processing
EXIT_USAGE = 2        # bad arguments: angle out of range, output folder missing or read-only, bad backend/device/codec, bad weights...
EXIT_BAD_INPUT = 3    # the input is missing, unreadable, truncated or damaged (a video: frames were dropped)
EXIT_NO_FACE = 4      # nothing redirected (no face, or every eye skipped): the output equals the input
EXIT_INTERRUPTED = 130

EPILOG = f"""\
Exit status: {EXIT_OK} done; {EXIT_USAGE} bad arguments or weights (checked before any work; nothing
was written); {EXIT_BAD_INPUT} unreadable, truncated or damaged input (for a video, every decodable
frame was written and the dropped ones are counted); {EXIT_NO_FACE} nothing redirected: no face found,
or every eye left unchanged (the output equals the input); {EXIT_INTERRUPTED} interrupted (a video
written so far stays playable; with no frame written, no file); {EXIT_ERROR} other errors.
Images are read upright (EXIF orientation) and keep their depth (8/16 bit), channels,
alpha, EXIF, ICC profile, XMP and DPI (.png, .jpg); write .png to keep every pixel
outside the eyes exactly. Videos keep every decodable frame, the size and the frame rate
(no audio); .mkv is lossless (HuffYUV), .mp4/.mov use mp4v, .avi MJPG."""

import sys
from pathlib import Path


def add_arguments(p):
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("input", help="image or video file")
    p.add_argument("-o", "--output", required=True, help="output file (image for an image, video for a video); its folder must exist")
    p.add_argument("--vertical", type=float, default=0.0, help="degrees; > 0 moves the gaze up (default 0)")
    p.add_argument("--horizontal", type=float, default=0.0, help="degrees; > 0 moves the gaze towards the image's right (default 0)")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default weights)")
    p.add_argument("--backend", default="auto", help=(
        "what runs the network: reference = the plain-PyTorch DeepWarp as trained (eager, "
        "BatchNorm unfolded: the oracle, slowest); triton = accelerate()'s BN-folded model on PyTorch convs "
        "with the Triton warp and blend; cuda = accelerate() on the C++/CUDA extension (its CPU ops on a CPU); "
        "numpy = the same network, BlazeFace and frame warp in NumPy, on the CPU (no PyTorch import: ~1.2 s "
        "less start-up, slower per frame); auto (default) = numpy for a photo on the CPU, else accelerate() "
        "on the fastest of reference/triton/cuda that runs here"))
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    p.add_argument("--no-level-roll", action="store_true", help="do not level head roll in the eye patches")
    p.add_argument("--paste", choices=("native", "patch"), default="native",
                   help="native (default): apply the network's warp to the frame's own pixels, as sharp as the input; "
                        "patch: paste the network's 51x41 output patch back (the original pipeline, softer)")
    p.add_argument("--kernel", choices=("lanczos4", "bicubic", "bilinear"), default="lanczos4",
                   help="frame resampling kernel of the native paste (default lanczos4, the sharpest)")
    p.add_argument("--min-face", type=int, default=80, help="smallest face (pixels) to look for; below 80 is slower (default 80)")
    p.add_argument("--min-eye", type=float, default=10.0, help="skip faces whose eyes are narrower than this, in pixels (default 10)")
    p.add_argument("--detector", choices=["blazeface", "hog"], default="blazeface",
                   help="face detector: blazeface (a CNN, default) or hog (dlib's HOG, frontal faces only)")
    p.add_argument("--min-score", type=float, default=None,
                   help="detector score a face needs (default: blazeface 0.75, a probability; hog 0.3, an SVM margin); "
                        "lower finds harder faces and more false alarms")
    p.add_argument("--detect-every", type=int, default=10, help="video: full face detection every N frames (default 10)")
    p.add_argument("--no-smooth", action="store_true", help="video: no temporal smoothing of the landmarks")
    p.add_argument("--codec", default=None, help=(
        "video: four-letter codec; default by extension: .mp4/.mov mp4v (lossy, ~4.5 ms and ~13 KB per 720p frame), "
        ".avi MJPG (lossy, ~6 ms, ~80 KB), .mkv HFYU (HuffYUV, lossless, ~8 ms, ~1.9 MB); FFV1 is lossless with "
        "~25%% smaller files but ~55 ms per frame, which bounds a run at ~20 fps (2-core CPU)"))
    p.add_argument("--torch-threads", type=int, default=1, help="CPU threads for the model and OpenCV (default 1: the other cores decode and encode)")
    p.add_argument("--profile", action="store_true", help="print the time per stage")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _error(msg: str, status: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return status


MIN_SCORE_RANGE = (0.0, 5.0)  # dlib HOG scores start at 0 (its threshold); real faces score ~0.5-3


def _check_writable_folder(folder: Path):
    """None, or why no file can be created in ``folder``: tried for real, because
    os.access says yes to root on a read-only mount or a pseudo file system."""
    import os
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".deepwarp-probe.", dir=str(folder))
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def _numpy_backend(args, kind: str) -> bool:
    """Does this run use the NumPy backend? Asked for, or ``auto`` for a photo on the CPU:
    one photo takes ~0.1 s of work, and ``import torch`` alone ~1.2 s."""
    if args.backend == "numpy":
        return True
    return args.backend == "auto" and kind == "image" and args.device in (None, "cpu")


def _check_device_and_backend(args, kind: str = "image"):
    """None, or why ``--device`` / ``--backend`` cannot run here."""
    if args.backend == "numpy" and args.device not in (None, "cpu"):
        return f"--backend numpy runs on the CPU: drop --device {args.device} or use another backend"
    if _numpy_backend(args, kind):
        return None
    import torch

    from ..backends import BACKENDS, backend_status

    if args.device is not None:
        try:
            dev = torch.device(args.device)
        except (RuntimeError, ValueError) as exc:
            return f"--device {args.device!r} is not a device (use cpu or cuda): {exc}"
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                return f"--device {args.device}: no CUDA device is visible to torch (use --device cpu)"
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                return f"--device {args.device}: there are only {torch.cuda.device_count()} CUDA device(s)"
        elif dev.type != "cpu":
            return f"--device {args.device!r}: only cpu and cuda are supported"
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.backend != "auto":
        if args.backend not in BACKENDS:
            return f"--backend {args.backend!r} is not a backend: use one of auto numpy {' '.join(BACKENDS)}"
        ok, why = backend_status(args.backend, device)
        if not ok:
            return f"--backend {args.backend} cannot run on {torch.device(device).type} here: {why}"
    return None


def _check_codec(args, dst: Path):
    """None, or why the video encoder cannot write ``dst`` with ``--codec`` (tried on a
    tiny file beside it, so a bad codec is found before any work)."""
    import os
    import tempfile

    import cv2

    from ..face.video import FOURCC_BY_EXT

    codec = args.codec or FOURCC_BY_EXT[dst.suffix.lower()]
    if len(codec) != 4 or not all(33 <= ord(c) < 127 for c in codec):
        return f"--codec must be a four-letter code such as mp4v, MJPG, HFYU or FFV1, got {codec!r}"
    fd, tmp = tempfile.mkstemp(prefix=".deepwarp-probe.", suffix=dst.suffix, dir=str(dst.parent))
    os.close(fd)
    try:
        w = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), 30.0, (64, 48))
        ok = w.isOpened()
        w.release()
    finally:
        os.unlink(tmp)
    if not ok:
        return f"OpenCV cannot write {dst.suffix} video with codec {codec!r} (try mp4v for .mp4, MJPG for .avi, HFYU or FFV1 for .mkv)"
    return None


def _check_arguments(args):
    """(kind, status or None): everything that can be checked before any work."""
    import math

    from ..face.io import IMAGE_EXTS, media_kind
    from ..face.video import FOURCC_BY_EXT

    src, dst = Path(args.input), Path(args.output)
    try:
        kind = media_kind(src)
        out_kind = media_kind(dst)
    except ValueError as exc:
        return None, _error(str(exc), EXIT_USAGE)
    if kind != out_kind:
        return None, _error(f"the input is an {kind} but the output {dst} names a {out_kind}: use the same kind", EXIT_USAGE)
    if kind == "video" and args.codec is None and dst.suffix.lower() not in FOURCC_BY_EXT:
        return None, _error(f"cannot write video as {dst.suffix!r}: use {' '.join(sorted(FOURCC_BY_EXT))} or pass --codec", EXIT_USAGE)
    if kind == "image" and dst.suffix.lower() not in IMAGE_EXTS:
        return None, _error(f"cannot write an image as {dst.suffix!r}", EXIT_USAGE)
    if kind == "image" and args.codec is not None:
        return None, _error("--codec is for videos; an image's format follows its extension", EXIT_USAGE)
    if not dst.parent.is_dir():
        return None, _error(f"the output folder {dst.parent} does not exist (nothing was done)", EXIT_USAGE)
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        return None, _error("the output would overwrite the input: choose another output file", EXIT_USAGE)
    if dst.exists() and not args.force:
        return None, _error(f"{dst} exists: pass --force to overwrite it", EXIT_USAGE)
    if not src.exists():
        return None, _error(f"{src} does not exist", EXIT_BAD_INPUT)
    for name in ("vertical", "horizontal"):
        if math.isnan(getattr(args, name)):
            return None, _error(f"--{name} is NaN: give a number of degrees", EXIT_USAGE)
    if args.torch_threads < 1:
        return None, _error(f"--torch-threads must be >= 1, got {args.torch_threads}", EXIT_USAGE)
    if args.detect_every < 1:
        return None, _error(f"--detect-every must be >= 1, got {args.detect_every}", EXIT_USAGE)
    if args.min_face < 10:
        return None, _error(f"--min-face must be at least 10 pixels, got {args.min_face}", EXIT_USAGE)
    if not (math.isfinite(args.min_eye) and args.min_eye > 0):
        return None, _error(f"--min-eye must be a positive number of pixels, got {args.min_eye:g}", EXIT_USAGE)
    lo, hi = MIN_SCORE_RANGE
    if args.min_score is not None and not (lo <= args.min_score <= hi):  # NaN fails too
        return None, _error(f"--min-score must lie in [{lo:g}, {hi:g}] (BlazeFace: a probability, default 0.75; "
                            f"dlib HOG: an SVM margin, default 0.3, real faces ~0.5-3), got {args.min_score:g}", EXIT_USAGE)
    why = _check_device_and_backend(args, kind)
    if why:
        return None, _error(why, EXIT_USAGE)
    why = _check_writable_folder(dst.parent)
    if why:
        return None, _error(f"cannot write to the output folder {dst.parent}: {why} (nothing was done)", EXIT_USAGE)
    if kind == "video":
        why = _check_codec(args, dst)
        if why:
            return None, _error(why, EXIT_USAGE)
    return kind, None


def _sigterm_as_interrupt():
    """SIGTERM ends a run like Ctrl-C: the video written so far is closed and playable."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


def run(args) -> int:
    import signal
    import warnings

    kind, status = _check_arguments(args)
    if status is not None:
        return status

    from ..config import DeepWarpConfig
    from ..face import AngleRangeError, FaceModelsUnavailableError, GazeRedirector, InputError, StageTimes
    from ..weights import default_weights_path, read_metadata

    # The angle range comes from the weights' config: checked before loading anything heavy.
    try:
        wpath = args.weights or default_weights_path()
        cfg = read_metadata(wpath)["config"] if wpath is not None else DeepWarpConfig()
    except (FileNotFoundError, ValueError) as exc:
        return _error(str(exc), EXIT_USAGE)
    from ..face import check_angles

    try:
        check_angles(args.vertical, args.horizontal, cfg.max_angle)
    except AngleRangeError as exc:
        return _error(str(exc), EXIT_USAGE)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = None
            if args.backend == "reference":  # the eager reference itself, not accelerate(backend="reference")
                import torch

                from ..face import load_redirect_model

                device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
                model = load_redirect_model(args.weights, backend="reference", device=device, fuse=False)
            use_numpy = _numpy_backend(args, kind)
            gr = GazeRedirector(model, weights=None if model is not None else args.weights,
                                backend="numpy" if use_numpy else args.backend, device=args.device,
                                level_roll=not args.no_level_roll, min_face=args.min_face, min_eye_px=args.min_eye,
                                min_score=args.min_score, paste=args.paste, kernel=args.kernel,
                                detector=args.detector)
        except FaceModelsUnavailableError as exc:
            return _error(str(exc), EXIT_ERROR)
        except ValueError as exc:
            return _error(str(exc), EXIT_USAGE)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    times = StageTimes() if args.profile else None
    previous = _sigterm_as_interrupt()
    import cv2

    torch = None if gr.numpy else __import__("torch")
    threads, cv_threads = (torch.get_num_threads() if torch else None), cv2.getNumThreads()
    # A batch of a few 41x51 eyes gains little from intra-op threads; the other core
    # decodes and encodes, and on a busy machine OpenMP barriers cost 10-50x. The same
    # holds for OpenCV's own threads in the pipeline's resizes and warps.
    if torch:
        torch.set_num_threads(args.torch_threads)
    cv2.setNumThreads(args.torch_threads)
    try:
        if kind == "image":
            return _run_image(gr, args, times)
        return _run_video(gr, args, times)
    except InputError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    except (OSError, ValueError) as exc:  # e.g. the encoder cannot write this file
        return _error(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    finally:
        if torch:
            torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_image(gr, args, times) -> int:
    import time

    from ..face import read_image, write_image

    t0 = time.perf_counter()
    with times("decode") if times else _nullctx():
        img = read_image(args.input, color="bgr")
    res = gr.redirect(img, args.vertical, args.horizontal, color="bgr", times=times)
    for m in res.messages:
        print(f"warning: {m}", file=sys.stderr)
    src, dst = Path(args.input), Path(args.output)
    with times("encode") if times else _nullctx():
        if not res.eyes_redirected and src.suffix.lower() == dst.suffix.lower():
            _copy_file(src, dst)  # nothing changed: the very same file
        else:
            for m in write_image(dst, res.image, color="bgr", like=src):
                print(f"warning: {m}", file=sys.stderr)
    dt = time.perf_counter() - t0
    skipped = sum(1 for f in res.faces for e in f.eyes if e.skipped)
    print(f"{dst}: {len(res.faces)} face(s), {res.eyes_redirected} eye(s) redirected"
          + (f", {skipped} left unchanged" if skipped else "") + f" in {dt * 1e3:.0f} ms")
    if times:
        print(times.report(1))
    if not res.faces:
        print(f"warning: no face found in {src}: the output equals the input", file=sys.stderr)
        return EXIT_NO_FACE
    if not res.eyes_redirected:
        print(f"warning: {len(res.faces)} face(s) found in {src} but no eye could be redirected (see the warnings "
              f"above): the output equals the input", file=sys.stderr)
        return EXIT_NO_FACE
    return EXIT_OK


def _copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file renamed into place (never half a
    file), with the permissions a new file gets (umask), not the input's."""
    import os
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix + ".part", dir=str(dst.parent))
    try:
        with os.fdopen(fd, "wb") as f, open(src, "rb") as g:
            shutil.copyfileobj(g, f)
        from ..face.io import _umask_mode

        os.chmod(tmp, _umask_mode())
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _run_video(gr, args, times) -> int:
    from ..face.video import redirect_video

    summary = redirect_video(gr, args.input, args.output, args.vertical, args.horizontal,
                             detect_every=args.detect_every, smooth=not args.no_smooth, codec=args.codec,
                             progress=not args.quiet, times=times)
    print(summary.format())
    for m in summary.messages:
        print(f"warning: {m}", file=sys.stderr)
    if times:
        print("time per stage (decode and encode run in their own threads, overlapped with the rest):")
        print(times.report(summary.frames))
    if summary.interrupted:
        if summary.frames:
            print(f"interrupted: {args.output} holds the {summary.frames} frames written so far (playable)", file=sys.stderr)
        else:
            print("interrupted before the first frame was written: no output file was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.frames_failed:
        # Written unchanged so nothing is lost, but not what was asked: never exit 0 (or
        # "no face found" when every frame failed).
        print(f"error: {summary.frames_failed} of {summary.frames} frames could not be processed and were written "
              f"unchanged (the first error is above)", file=sys.stderr)
        return EXIT_ERROR
    if summary.truncated:
        return EXIT_BAD_INPUT
    if summary.frames and summary.faces_found == 0:
        print(f"warning: no face found in any frame of {args.input}: every frame passed through unchanged "
              f"(re-encoded; bit for bit with .mkv)", file=sys.stderr)
        return EXIT_NO_FACE
    if summary.frames and summary.eyes_redirected == 0:
        print(f"warning: faces were found in {args.input} but no eye could be redirected (see the warnings above): "
              f"every frame passed through unchanged (re-encoded; bit for bit with .mkv)", file=sys.stderr)
        return EXIT_NO_FACE
    return EXIT_OK


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
