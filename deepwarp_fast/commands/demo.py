"""`deepwarp-fast demo`: gaze sweeps on the bundled sample, written as pictures."""
NAME = "demo"
HELP = "run the model on the bundled sample and write pictures"

from pathlib import Path


def add_arguments(p):
    p.add_argument("-o", "--output", default="demo_out", help="folder for the pictures (created; default: demo_out)")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default weights)")
    p.add_argument("--max-angle", type=float, default=15.0, help="sweep from -A to +A degrees (default 15)")
    p.add_argument("--steps", type=int, default=7, help="angles per sweep (default 7)")
    p.add_argument("--backend", default="auto", help="reference, triton, cuda or auto (default)")


def get_model(weights, backend):
    """The model from ``weights`` or the bundled default; an identity-initialised one
    (with a warning) when this install ships no default weights."""
    import sys

    from ..model import DeepWarp
    from ..weights import default_weights_path, load_model

    if weights is None and default_weights_path() is None:
        print("warning: no default weights are bundled with this install; using an untrained, "
              "identity-initialised model (outputs equal inputs)", file=sys.stderr)
        return DeepWarp(backend=backend).eval()
    return load_model(weights, backend=backend)


def run(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ..samples import sample_eye, to_uint8_image

    out_dir = Path(args.output)
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
