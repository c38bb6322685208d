"""The `deepwarp-fast` command line: one subcommand per module in deepwarp_fast.commands.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). A command module imports only the standard
library at the top, and its heavy dependencies inside ``run``, so that
`deepwarp-fast env` works even when an optional dependency of another command is
missing.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import re
from typing import List, Optional

# Values such as -1e1, -inf or -.5 are numbers, not options (argparse only knows -1 and
# -1.5): without this `--vertical -1e1` fails with "expected one argument".
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def _command_modules():
    """Every module of deepwarp_fast.commands, sorted by command name."""
    from . import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))
    mods = [importlib.import_module(f"deepwarp_fast.commands.{n}") for n in names]
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="deepwarp-fast", description="DeepWarp gaze redirection, fast.")
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    parser.add_argument("--version", action="version", version=f"deepwarp_fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        p._negative_number_matcher = _NEGATIVE_NUMBER
        p.set_defaults(_module=mod.__name__)
        mod.add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    import warnings

    from .backends import BackendChoiceWarning

    # The CLI says which backend it uses in its own words; the library warns once.
    warnings.simplefilter("ignore", BackendChoiceWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    mod = importlib.import_module(args._module)
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
