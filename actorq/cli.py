"""Command line: argument parsing and wiring only. Logging is set up here and nowhere else.

Exit codes: 0 ok, 1 failure at run time, 2 bad usage or config, 3 an actor could
not start (port in use, task module not importable), 4 a pool gave up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import msgspec

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _setup_logging(level: str, role: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)-7s {role}[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load_config(path: str):
    """The validated config, or None after printing why it is unusable."""
    from . import config

    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"actorq: config error: {exc}", file=sys.stderr)
        return None


def _cmd_run(args: argparse.Namespace) -> int:
    from . import node

    cfg = _load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    _setup_logging(cfg.node.log_level, "node")
    return node.run(cfg, args.ready_file)


def _cmd_check(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    print(f"{args.config}: ok ({'broker, ' if cfg.broker else ''}"
          f"{'http, ' if cfg.http else ''}{len(cfg.pools)} pool(s))")
    return EXIT_OK


def _cmd_submit(args: argparse.Namespace) -> int:
    from .client import Client
    from .errors import ActorqError

    try:
        call_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"actorq: ARGS is not JSON: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not isinstance(call_args, list):
        call_args = [call_args]
    try:
        with Client(args.broker) as client:
            h = client.submit(args.name, call_args, queue=args.queue, priority=args.priority)
            if not args.wait:
                client.flush(10)
                print(h.id)
                return EXIT_OK
            print(json.dumps(h.result(timeout=args.timeout)))
    except ActorqError as exc:
        print(f"actorq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace) -> int:
    from .client import Client
    from .errors import ActorqError

    try:
        with Client(args.broker, connect_timeout=5) as client:
            stats = client.stats(timeout=5)
    except ActorqError as exc:
        print(f"actorq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(msgspec.to_builtins(stats), indent=2))
    return EXIT_OK


def _cmd_actor(args: argparse.Namespace) -> int:
    """Internal: the entry point of every child actor process."""
    _setup_logging(os.environ.get("ACTORQ_LOG_LEVEL", "INFO"), args.role)
    if args.role == "broker":
        from . import broker

        return broker.main(msgspec.json.decode(args.spec, type=broker.BrokerSpec))
    if args.role == "worker":
        from . import worker

        return worker.main(msgspec.json.decode(args.spec, type=worker.WorkerSpec))
    if args.role == "supervisor":
        from . import supervisor

        return supervisor.main(msgspec.json.decode(args.spec, type=supervisor.SupervisorSpec))
    if args.role == "scheduler":
        from . import scheduler

        return scheduler.main(msgspec.json.decode(args.spec, type=scheduler.SchedulerSpec))
    if args.role == "gateway":
        from . import gateway
        from .node import GatewaySpec

        return gateway.main(msgspec.json.decode(args.spec, type=GatewaySpec))
    print(f"actorq: unknown actor role {args.role!r}", file=sys.stderr)
    return EXIT_CONFIG


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="actorq", description="actorq: a distributed task queue.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a node: the broker, gateway and worker pools a config names")
    run.add_argument("config", help="path to a TOML config, e.g. configs/local.toml")
    run.add_argument("--ready-file", help="write the resolved endpoints here as JSON once "
                     "every actor is up")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=_cmd_check)

    submit = sub.add_parser("submit", help="submit one task; prints its id (or its result "
                            "with --wait)")
    submit.add_argument("name", help="task name, module:function")
    submit.add_argument("args", nargs="?", default="[]", help="JSON list of arguments")
    submit.add_argument("--broker", default="tcp://127.0.0.1:5555")
    submit.add_argument("--queue", default="default")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--wait", action="store_true", help="wait for and print the result")
    submit.add_argument("--timeout", type=float, default=60.0)
    submit.set_defaults(func=_cmd_submit)

    stats = sub.add_parser("stats", help="print the broker's counters as JSON")
    stats.add_argument("--broker", default="tcp://127.0.0.1:5555")
    stats.set_defaults(func=_cmd_stats)

    actor = sub.add_parser("_actor")  # internal; hidden from --help's summary below
    actor.add_argument("role")
    actor.add_argument("spec")
    actor.set_defaults(func=_cmd_actor)
    sub._choices_actions = [a for a in sub._choices_actions if a.dest != "_actor"]
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return EXIT_CONFIG
    return args.func(args)
