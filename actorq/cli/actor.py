"""`actorq _actor ROLE SPEC`: the internal entry point of every child actor process.

The node and supervisors start each actor as `python -m actorq _actor ROLE SPEC_JSON`
(node/children.py); this decodes the spec into the role's Struct and runs it.
"""

from __future__ import annotations

import argparse
import os
import sys

import msgspec

from actorq.cli.common import EXIT_CONFIG, setup_logging
from actorq.node import specs

COMMAND = "_actor"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=f"actorq {COMMAND}", add_help=False)
    ap.add_argument("role")
    ap.add_argument("spec")
    return run_actor(ap.parse_args(argv))


def run_actor(args: argparse.Namespace) -> int:
    setup_logging(os.environ.get("ACTORQ_LOG_LEVEL", "INFO"), args.role)
    set_title(args.role, args.spec)
    if args.role == "broker":
        from actorq.broker import loop

        return loop.main(msgspec.json.decode(args.spec, type=specs.BrokerSpec))
    if args.role == "worker":
        from actorq.worker import worker

        return worker.main(msgspec.json.decode(args.spec, type=specs.WorkerSpec))
    if args.role == "supervisor":
        from actorq.worker import supervisor

        return supervisor.main(msgspec.json.decode(args.spec, type=specs.SupervisorSpec))
    if args.role == "scheduler":
        from actorq.scheduler import loop as scheduler

        return scheduler.main(msgspec.json.decode(args.spec, type=specs.SchedulerSpec))
    if args.role == "gateway":
        from actorq.http import gateway

        return gateway.main(msgspec.json.decode(args.spec, type=specs.GatewaySpec))
    print(f"actorq: unknown actor role {args.role!r}", file=sys.stderr)
    return EXIT_CONFIG


def set_title(role: str, spec_json: str) -> None:
    """Show the role in ps and top (`actorq: worker default.host.12.3`), not the spec."""
    from setproctitle import setproctitle

    spec = msgspec.json.decode(spec_json)
    name = spec.get("worker_id") or (spec.get("pool") or {}).get("name", "") \
        if isinstance(spec, dict) else ""
    setproctitle(f"actorq: {role} {name}".rstrip())
