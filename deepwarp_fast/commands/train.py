"""`deepwarp-fast train`: train DeepWarp from a run config (one process, or torchrun + DDP)."""
NAME = "train"
HELP = "train DeepWarp on synthetic pairs from a run config (TOML/JSON); resumable; torchrun for several processes"


def add_arguments(p):
    p.add_argument("--config", default=None, help="run config file (.toml or .json); default: the built-in defaults")
    p.add_argument("-o", "--output", default="runs/default", help="run folder: checkpoint.pt, metrics.csv, config.toml, weights.safetensors")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt when there is one")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set run.steps=200 (repeatable)")
    p.add_argument("--steps", type=int, default=None, help="shorthand for --set run.steps=N")
    p.add_argument("--device", default=None, help="shorthand for --set run.device=DEV (cpu, cuda, auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import json
    import shlex

    from ..training import Trainer, TrainConfig, load_config

    cfg = load_config(args.config) if args.config else TrainConfig()
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    if args.device is not None:
        overrides.append(f"run.device={args.device}")
    cfg = cfg.with_overrides(overrides)
    # The command as parsed (not sys.argv, which is torchrun's or pytest's when called through them).
    words = ["deepwarp-fast", "train"] + (["--config", args.config] if args.config else []) + ["-o", args.output]
    words += (["--resume"] if args.resume else []) + [w for o in args.overrides for w in ("--set", o)]
    words += (["--steps", str(args.steps)] if args.steps is not None else []) + (["--device", args.device] if args.device else [])
    command = " ".join(shlex.quote(w) for w in words)
    trainer = Trainer(cfg, args.output, resume=args.resume, progress=not args.no_progress, command=command)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    if trainer.info.is_main:
        print(json.dumps(summary))
        print(f"wrote {trainer.out_dir / 'weights.safetensors'}")
    return 0
