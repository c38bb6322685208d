"""`deepwarp-fast synth`: render procedural training pairs; a contact sheet to judge them."""
NAME = "synth"
HELP = "render synthetic eye pairs: a contact-sheet preview (--preview) or a dataset file (--output)"


def add_arguments(p):
    p.add_argument("--preview", metavar="PNG", help="write a contact sheet of random pairs (input | target, anchors drawn)")
    p.add_argument("--output", metavar="PT", help="write N pairs as a torch file (dict of tensors)")
    p.add_argument("-n", "--num", type=int, default=24, help="number of pairs (default 24)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cols", type=int, default=4, help="pairs per row of the contact sheet (default 4)")
    p.add_argument("--scale", type=int, default=3, help="upscaling of the contact sheet (default 3)")
    p.add_argument("--no-anchors", action="store_true", help="do not draw the anchors")
    p.add_argument("--clean", action="store_true", help="no camera effects (blur, noise, JPEG)")
    p.add_argument("--height", type=int, default=41)
    p.add_argument("--width", type=int, default=51)
    p.add_argument("--gaze-range", type=float, default=30.0, help="max |gaze| of either image, degrees (default 30)")
    p.add_argument("--max-redirect", type=float, default=30.0, help="max |redirection| per axis, degrees (default 30)")
    p.add_argument("--hard-fraction", type=float, default=0.25, help="fraction of tilts above 8 degrees (default 0.25)")


def run(args) -> int:
    import sys

    if not args.preview and not args.output:
        print("nothing to do: give --preview PNG and/or --output PT", file=sys.stderr)
        return 2
    if args.num < 1:
        print(f"--num must be positive, got {args.num}", file=sys.stderr)
        return 2
    kw = dict(height=args.height, width=args.width, gaze_range=args.gaze_range, max_redirect=args.max_redirect,
              hard_fraction=args.hard_fraction)
    if args.clean:
        kw["camera"] = False
    try:
        if args.preview:
            from ..data.preview import preview_sheet

            sheet = preview_sheet(args.num, args.seed, cols=args.cols, scale=args.scale,
                                  draw_anchors=not args.no_anchors, **kw)
            sheet.save(args.preview)
            print(f"wrote {args.preview}: {args.num} pairs (input | target), labels: redirection "
                  f"v(ertical) h(orizontal) and t(ilt) in degrees")
        if args.output:
            import torch

            from ..data import render_pairs

            batch = render_pairs(args.num, args.seed, **kw)
            torch.save(batch, args.output)
            print(f"wrote {args.output}: {args.num} pairs, keys {sorted(batch)}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
