"""`deepwarp-fast export-onnx`: the network as an ONNX file (deepwarp_fast.export)."""
NAME = "export-onnx"
HELP = "write the network as an ONNX file (for ONNX Runtime, OpenVINO, TensorRT)"

import sys


def add_arguments(p):
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write; its folder must exist")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default weights)")
    p.add_argument("--outputs", choices=("image", "fields"), default="image",
                   help="image: the redirected eye (default); fields: the flow and LCM mask, unapplied")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: %(default)s = deepwarp_fast.export.OPSET)")
    p.add_argument("--no-check", action="store_true", help="skip running the file in ONNX Runtime against the model")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")


def run(args) -> int:
    import os

    from ..export import OPSET, ExportError, export_onnx

    if os.path.exists(args.output) and not args.force:
        print(f"error: {args.output} exists: pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        path = export_onnx(args.weights, args.output, outputs=args.outputs, opset=args.opset or OPSET,
                           check=False if args.no_check else None)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = os.path.getsize(path) / 1e6
    print(f"{path}: {size:.1f} MB, inputs eyes (B, 3, H, W), anchors (B, K, 2), angles (B, 2); outputs "
          + ("output (B, 3, H, W)" if args.outputs == "image" else "flow (B, 2, H, W), mask (B, 1, H, W)"))
    return 0
