"""`deepwarp-fast evaluate`: the paper's normalised error on held-out synthetic pairs, or
(``--real [FOLDER]``) the gaze gain on real faces."""
NAME = "evaluate"
HELP = ("normalised error (MSE(out,target)/MSE(in,target)) on held-out synthetic pairs: JSON summary and plots; "
        "--real [FOLDER]: how far the iris moves on real faces (gain per direction and angle), JSON and a sweep PNG")


def add_arguments(p):
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default weights)")
    p.add_argument("-n", "--pairs", type=int, default=2000, help="held-out pairs (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="held-out set seed (default 0)")
    p.add_argument("--max-angle", type=float, default=None, help="largest redirection, degrees (default: the weights' trained range)")
    p.add_argument("--direction", default="any", choices=["any", "vertical"], help="redirection directions (default: any)")
    p.add_argument("-o", "--output", default="eval_out", help="folder for eval_summary.json and the plots (default eval_out)")
    p.add_argument("--prefix", default="eval_", help="file name prefix (default eval_)")
    p.add_argument("--backend", default="auto", help="reference, triton, cuda or auto (default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--anatomy", default="v1", choices=["v1", "anatomical"],
                   help="the renderer's eyeball for the held-out pairs: v1 (the original, default) or anatomical (issue 12)")
    p.add_argument("--real", nargs="?", const="", default=None, metavar="FOLDER",
                   help="evaluate on real faces instead: the bundled portraits (no FOLDER) or the images in FOLDER; "
                        "redirects up/down/left/right by --angles and measures the iris with an independent limbus fit; "
                        "writes <prefix>summary.json and <prefix>sweep.png (prefix default real_)")
    p.add_argument("--augment", action="store_true",
                   help="with --real: each photo also mirrored, x1.6, x0.8 and mirrored x1.6 (5x the faces: a steadier "
                        "score, the same people)")
    p.add_argument("--angles", default="10,15,25", help="with --real: redirection angles in degrees (default 10,15,25), "
                   "clamped to the weights' max_angle")


def run_real(args) -> int:
    from ..evaluate_real import format_table, run_real_evaluation
    from ..face import GazeRedirector

    try:
        angles = [float(a) for a in args.angles.split(",") if a.strip()]
    except ValueError:
        print(f"--angles must be a comma-separated list of degrees, got {args.angles!r}")
        return 2
    if not angles or any(a <= 0 for a in angles):
        print(f"--angles must be positive degrees, got {args.angles!r}")
        return 2
    gr = GazeRedirector(weights=args.weights, backend=args.backend, device=args.device)
    prefix = "real_" if args.prefix == "eval_" else args.prefix
    folder = args.real or None
    s = run_real_evaluation(gr, folder=folder, out_dir=args.output, prefix=prefix, angles=angles, augment=args.augment)
    print(f"photos: {folder or 'bundled (astronaut, grace_hopper)'}{', augmented' if args.augment else ''}; angles allowed: +-{s['max_angle_deg']:g} degrees")
    print(format_table(s))
    print(f"wrote {args.output}/{prefix}summary.json, {prefix}sweep.png")
    return 0 if s["n_faces"] else 4


def run(args) -> int:
    if args.real is not None:
        return run_real(args)
    from ..evaluate import VARIANTS, run_evaluation
    from ..weights import load_model

    model = load_model(args.weights, backend=args.backend, device=args.device)
    s = run_evaluation(model, n=args.pairs, seed=args.seed, out_dir=args.output, prefix=args.prefix,
                       max_angle=args.max_angle, direction=args.direction, anatomy=args.anatomy)
    print(f"{s['n_pairs']} held-out pairs, redirections up to {s['max_angle_deg']:g} degrees; median normalised error:")
    for v in VARIANTS:
        d = s["variants"][v]
        bins = ", ".join(f"{b['range_deg'][0]:g}-{b['range_deg'][1]:g}: {b['median']:.3f}" for b in d["bins"] if b["n"])
        print(f"  {d['label']:<22} all {d['all']['median']:.3f}  <=15deg {d['up_to_15deg'].get('median', float('nan')):.3f}  [{bins}]")
    print("targets: " + ", ".join(f"{k}={'yes' if ok else 'NO'}" for k, ok in s["targets"].items()))
    print(f"wrote {args.output}/{args.prefix}summary.json, {args.prefix}sorted_errors.png, {args.prefix}error_vs_angle.png")
    return 0
