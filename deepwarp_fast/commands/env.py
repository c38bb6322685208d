"""`deepwarp-fast env`: versions, devices and backend availability."""
NAME = "env"
HELP = "versions, devices and which backends are available (and why not)"

import json


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from ..env import collect, format_report

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0
