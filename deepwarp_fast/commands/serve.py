"""`deepwarp-fast serve`: the interactive demo in the browser (deepwarp_fast.web): drop a
photo and drag the gaze, redirect a video with a progress bar, or the webcam live."""
NAME = "serve"
HELP = "a local web app: drop a photo and drag the gaze with sliders, redirect a video, or the webcam live"

EPILOG = """\
Needs the serve extra: pip install "deepwarp_fast[serve]" (Starlette, uvicorn, websockets).
Listens on 127.0.0.1 (this machine only) unless --host says otherwise; anyone who can
reach the address can use the app, so bind another interface only on a network you trust.
Uploads are kept in a temporary folder that is removed when the server stops."""

import sys


def add_arguments(p):
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default weights)")
    p.add_argument("--backend", default="auto", help="reference, triton, cuda or auto (default; see `redirect --help`)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--detector", choices=["blazeface", "hog"], default="blazeface", help="face detector (default blazeface)")
    p.add_argument("--max-photo-mb", type=float, default=25.0, help="largest photo upload in MB (default 25)")
    p.add_argument("--max-video-mb", type=float, default=200.0, help="largest video upload in MB (default 200)")
    p.add_argument("--max-megapixels", type=float, default=40.0, help="largest photo or video frame in megapixels (default 40)")
    p.add_argument("--keep-minutes", type=float, default=60.0,
                   help="idle photos and finished videos are deleted after this many minutes (default 60)")
    p.add_argument("--torch-threads", type=int, default=1, help="CPU threads for the model and OpenCV (default 1)")


def _error(msg: str, status: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return status


def _listen(host: str, port: int):
    """A listening socket on (host, port), or an error message."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return None, f"--host {host!r} is not an address of this machine: {exc.strerror}"
    last = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
            return sock, None
        except OSError as exc:
            sock.close()
            last = exc
    return None, f"cannot listen on {host}:{port}: {last.strerror if last else 'no address'}"


def _url(sock, host: str) -> str:
    import ipaddress

    port = sock.getsockname()[1]
    shown = host
    try:
        ip = ipaddress.ip_address(host)
        if ip.is_unspecified:
            shown = "127.0.0.1" if ip.version == 4 else "::1"
        if ip.version == 6:
            shown = f"[{ipaddress.ip_address(shown)}]"
    except ValueError:
        pass  # a host name
    return f"http://{shown}:{port}/"


def run(args) -> int:
    import math
    import warnings

    try:
        import starlette  # noqa: F401  (checked here: deepwarp_fast.web imports it)
        import uvicorn
    except ImportError as exc:
        return _error(f"serve needs the serve extra ({exc.name} is missing): pip install \"deepwarp_fast[serve]\"")
    for name in ("max_photo_mb", "max_video_mb", "max_megapixels", "keep_minutes"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            return _error(f"--{name.replace('_', '-')} must be a positive number, got {value:g}")
    if not 0 <= args.port <= 65535:
        return _error(f"--port must lie in [0, 65535], got {args.port}")
    if args.torch_threads < 1:
        return _error(f"--torch-threads must be >= 1, got {args.torch_threads}")

    from .redirect import _check_device_and_backend

    why = _check_device_and_backend(args)
    if why:
        return _error(why)
    sock, why = _listen(args.host, args.port)
    if why:
        return _error(why)

    import cv2
    import torch

    from ..face import FaceModelsUnavailableError, GazeRedirector
    from ..web import Limits, create_app

    MB = 1 << 20
    limits = Limits(max_photo_bytes=int(args.max_photo_mb * MB), max_video_bytes=int(args.max_video_mb * MB),
                    max_pixels=int(args.max_megapixels * 1e6), ttl_s=args.keep_minutes * 60.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = None
            if args.backend == "reference":  # the eager reference itself, as `redirect --backend reference`
                from ..face import load_redirect_model

                device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
                model = load_redirect_model(args.weights, backend="reference", device=device, fuse=False)
            gr = GazeRedirector(model, weights=None if model is not None else args.weights, backend=args.backend,
                                device=args.device, detector=args.detector)
        except FaceModelsUnavailableError as exc:
            sock.close()
            return _error(str(exc), 1)
        except (FileNotFoundError, ValueError) as exc:
            sock.close()
            return _error(str(exc))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    torch.set_num_threads(args.torch_threads)
    cv2.setNumThreads(args.torch_threads)
    app = create_app(gr, limits=limits)
    url = _url(sock, args.host)
    print(f"deepwarp-fast serve: open {url} in a browser (Ctrl-C stops; angles +-{gr.config.max_angle:g} degrees, "
          f"photos up to {args.max_photo_mb:g} MB, videos up to {args.max_video_mb:g} MB)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can use the app", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after a clean shutdown
        pass
    finally:
        sock.close()
    print("stopped; the uploads were deleted")
    return 0
