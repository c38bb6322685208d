"""`deepwarp-fast demo`: the face pipeline on the bundled sample face (scikit-image's
public-domain astronaut portrait): a contact sheet of gaze angles, two sweep GIFs and
a picture of what the pipeline found. ``--eye-patch`` runs the model alone on the
bundled eye patch instead."""
NAME = "demo"
HELP = "redirect the gaze of the bundled sample face and write pictures (contact sheet, sweep GIFs)"

import sys
from pathlib import Path


def add_arguments(p):
    p.add_argument("-o", "--output", default="demo_out", help="folder for the pictures (created; default: demo_out)")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default weights)")
    p.add_argument("--max-angle", type=float, default=15.0, help="angles from -A to +A degrees (default 15)")
    p.add_argument("--steps", type=int, default=5, help="angles per axis on the contact sheet (default 5)")
    p.add_argument("--gif-frames", type=int, default=13, help="frames per sweep GIF, one way (default 13)")
    p.add_argument("--backend", default="auto", help="reference, triton, cuda or auto (default)")
    p.add_argument("--eye-patch", action="store_true",
                   help="instead: run the model alone on the bundled eye patch and write eye_sweep.png")


def get_model(weights, backend):
    """The model from ``weights`` or the bundled default (see load_redirect_model)."""
    import warnings

    from ..face.loading import load_redirect_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_redirect_model(weights, backend=backend, device="cpu", fuse=False)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return model


def _label(img, text):
    import cv2

    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _box(points, fx, fy, W, H):
    """A box around ``points`` grown by fx / fy of its size on each side, inside the image."""
    import numpy as np

    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    w = x1 - x0
    return (max(0, int(np.floor(x0 - fx * w))), max(0, int(np.floor(y0 - fy * w))),
            min(W, int(np.ceil(x1 + fx * w))), min(H, int(np.ceil(y1 + fy * w))))


def run(args) -> int:
    import torch

    if args.steps < 2 or args.gif_frames < 2:
        print("error: --steps and --gif-frames must be at least 2", file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    threads = torch.get_num_threads()
    # A batch of a few 41x51 eyes gains nothing from intra-op threads, and on a busy
    # machine their barriers cost 10-50x: one thread (restored after the run).
    torch.set_num_threads(1)
    try:
        if args.eye_patch:
            return _eye_patch(args, out_dir)
        return _face(args, out_dir)
    finally:
        torch.set_num_threads(threads)


def _face(args, out_dir: Path) -> int:
    import warnings

    import cv2
    import numpy as np
    from PIL import Image
    from skimage import data

    from ..face import AngleRangeError, GazeRedirector

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gr = GazeRedirector(weights=args.weights, backend=args.backend)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    A = args.max_angle
    try:
        gr.check_angles(A, A)
    except AngleRangeError as exc:
        print(f"error: --max-angle: {exc}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    img = data.astronaut()  # RGB, public domain
    H, W = img.shape[:2]
    base = gr.redirect(img, 0, 0, color="rgb")
    if not base.faces:
        print("error: no face found in the sample image", file=sys.stderr)
        return 1
    lm = base.faces[0].landmarks
    ex0, ey0, ex1, ey1 = _box(lm[36:48], 0.12, 0.25, W, H)
    fx0, fy0, fx1, fy1 = _box(lm, 0.1, 0.15, W, H)

    # What the pipeline found: landmarks, pupils, eye patch outlines.
    vis = np.ascontiguousarray(img[fy0:fy1, fx0:fx1])
    zoom = max(1, 480 // max(1, fx1 - fx0))
    vis = cv2.resize(vis, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)

    def to_vis(pts):
        return [(int(round((x - fx0 + 0.5) * zoom - 0.5)), int(round((y - fy0 + 0.5) * zoom - 0.5))) for x, y in pts]

    for p in to_vis(lm):
        cv2.circle(vis, p, 2, (0, 255, 0), -1, cv2.LINE_AA)
    cfg = gr.config
    for e in base.faces[0].eyes:
        if e.crop is not None:
            corners = e.crop.to_frame(np.array([[-0.5, -0.5], [cfg.width - 0.5, -0.5], [cfg.width - 0.5, cfg.height - 0.5], [-0.5, cfg.height - 0.5]]))
            cv2.polylines(vis, [np.array(to_vis(corners), np.int32)], True, (255, 255, 0), 1, cv2.LINE_AA)
        if e.pupil is not None:
            cv2.circle(vis, to_vis([e.pupil])[0], 4, (255, 0, 0), -1, cv2.LINE_AA)
    Image.fromarray(vis).save(out_dir / "landmarks.png")

    # The contact sheet: rows = vertical angle (top: +A, gaze up), columns = horizontal.
    angles = np.linspace(-A, A, args.steps)
    ezoom = max(1, 320 // max(1, ex1 - ex0))
    rows = []
    for v in angles[::-1]:
        cells = []
        for h in angles:
            out = gr.redirect(img, float(v), float(h), color="rgb", faces=base.faces).image[ey0:ey1, ex0:ex1]
            cell = cv2.resize(np.ascontiguousarray(out), None, fx=ezoom, fy=ezoom, interpolation=cv2.INTER_CUBIC)
            cell = cv2.copyMakeBorder(_label(cell, f"v {v:+g} h {h:+g}"), 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            cells.append(cell)
        rows.append(np.concatenate(cells, axis=1))
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(sheet).save(out_dir / "contact_sheet.png")

    # The sweeps: -A -> +A -> -A, one axis at a time, on the face.
    fzoom = max(1, 360 // max(1, fx1 - fx0))
    sweep = np.linspace(-A, A, args.gif_frames)
    sweep = np.concatenate([sweep, sweep[-2:0:-1]])
    names = []
    for axis, name in ((0, "vertical"), (1, "horizontal")):
        frames = []
        for a in sweep:
            va, ha = (float(a), 0.0) if axis == 0 else (0.0, float(a))
            out = gr.redirect(img, va, ha, color="rgb", faces=base.faces).image[fy0:fy1, fx0:fx1]
            f = cv2.resize(np.ascontiguousarray(out), None, fx=fzoom, fy=fzoom, interpolation=cv2.INTER_CUBIC)
            frames.append(Image.fromarray(_label(f, f"{name} {a:+.1f}")).quantize(256, method=Image.Quantize.FASTOCTREE))
        path = out_dir / f"gaze_{name}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
        names.append(path.name)
    print(f"wrote {out_dir}/: contact_sheet.png (rows: vertical {A:+g} at the top to {-A:+g}; columns: horizontal "
          f"{-A:+g} to {A:+g}), {', '.join(names)} and landmarks.png (landmarks green, pupils red, eye patches yellow)")
    return 0


def _eye_patch(args, out_dir: Path) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ..samples import sample_eye, to_uint8_image

    out_dir.mkdir(parents=True, exist_ok=True)
    model = get_model(args.weights, args.backend)
    eyes, anchors = sample_eye()
    angles = torch.linspace(-args.max_angle, args.max_angle, args.steps)
    rows = []
    for axis in (0, 1):  # 0: vertical sweep, 1: horizontal sweep
        a = torch.zeros(args.steps, 2)
        a[:, axis] = angles
        with torch.no_grad():
            out = model(eyes.expand(args.steps, -1, -1, -1), anchors.expand(args.steps, -1, -1), a)
        rows.append(np.concatenate([to_uint8_image(o) for o in out], axis=1))
    sheet = np.concatenate(rows, axis=0)
    scale = 4
    img = Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)
    path = out_dir / "eye_sweep.png"
    img.save(path)
    print(f"wrote {path}: top row vertical, bottom row horizontal, "
          f"{args.steps} angles from {-args.max_angle:g} to {args.max_angle:g} degrees")
    return 0
