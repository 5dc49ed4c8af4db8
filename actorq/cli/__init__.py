"""Command line: argument parsing and wiring only. Logging is set up here and nowhere else.

One module per command group: node.py (run, check), tasks.py (submit, stats),
pools.py (scale), actor.py (the internal entry point of every child actor process).

Exit codes: 0 ok, 1 failure at run time, 2 bad usage or config. Actors use 2 and 3
among themselves (node/specs.py) to tell their parent not to restart them.
"""

from __future__ import annotations

import argparse

from actorq.cli import actor, node, pools, tasks
from actorq.cli.common import EXIT_CONFIG


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="actorq", description="actorq: a distributed task queue.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    node.add_commands(sub)
    tasks.add_commands(sub)
    pools.add_commands(sub)
    actor.add_command(sub)
    # The internal actor command is nobody's to type: hidden from help and usage.
    sub._choices_actions = [a for a in sub._choices_actions if a.dest != actor.COMMAND]
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return EXIT_CONFIG
    return args.func(args)
