"""The `deepwarp-fast` command line: one subcommand per module in deepwarp_fast.commands.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). Modules are imported lazily so that
`deepwarp-fast env` works even when an optional dependency of another command is
missing.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# (command name, module, one-line help)
COMMANDS = [
    ("env", "env", "versions, devices and which backends are available (and why not)"),
    ("demo", "demo", "run the model on the bundled sample and write pictures"),
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="deepwarp-fast", description="DeepWarp gaze redirection, fast.")
    parser.add_argument("--version", action="version", version=f"deepwarp_fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_ in COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        mod = importlib.import_module(f"deepwarp_fast.commands.{module}")
        mod.add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    mod = importlib.import_module(f"deepwarp_fast.commands.{args._module}")
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
