"""Command line: argument parsing and wiring only. Logging is set up here and nowhere else.

One module per command group: node.py (run, check), tasks.py (submit, stats, tasks,
task, cancel, requeue, dead), pools.py (workers, pools, queues, crons, scale, pause,
resume, purge), token.py (token new), keys.py (keys generate), actor.py (the internal entry point of every child actor process).

Exit codes: 0 ok, 1 failure at run time, 2 bad usage or config. Actors use 2 and 3
among themselves (node/specs.py) to tell their parent not to restart them.
"""

from __future__ import annotations

import argparse
import sys

from actorq.cli import actor, keys, node, pools, tasks, token
from actorq.cli.common import EXIT_CONFIG


def parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    ap = argparse.ArgumentParser(prog="actorq", description="actorq: a distributed task queue.")
    ap.add_argument("--version", action="version", version=f"actorq {version('actorq')}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    node.add_commands(sub)
    tasks.add_commands(sub)
    pools.add_commands(sub)
    token.add_commands(sub)
    keys.add_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The internal actor command is nobody's to type: it is parsed on its own, so it
    # appears in no help and no usage error.
    if argv[:1] == [actor.COMMAND]:
        return actor.main(argv[1:])
    ap = parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return EXIT_CONFIG
    return args.func(args)
