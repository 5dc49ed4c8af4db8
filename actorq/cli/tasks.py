"""`actorq submit` and `actorq stats`: talk to a running broker through the Client."""

from __future__ import annotations

import argparse
import json
import sys

import msgspec

from actorq.cli.common import BROKER_HELP, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, broker_address


def add_commands(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="submit one task; prints its id (or its result "
                            "with --wait)")
    submit.add_argument("name", help="task name, module:function")
    submit.add_argument("args", nargs="?", default="[]", help="JSON list of arguments")
    submit.add_argument("--broker", default=None, help=BROKER_HELP)
    submit.add_argument("--queue", default="default")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--wait", action="store_true", help="wait for and print the result")
    submit.add_argument("--timeout", type=float, default=60.0)
    submit.set_defaults(func=submit_task)

    stats = sub.add_parser("stats", help="print the broker's counters as JSON")
    stats.add_argument("--broker", default=None, help=BROKER_HELP)
    stats.set_defaults(func=print_stats)


def submit_task(args: argparse.Namespace) -> int:
    from actorq.client.sync import Client
    from actorq.errors import ActorqError

    try:
        call_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"actorq: ARGS is not JSON: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not isinstance(call_args, list):
        call_args = [call_args]
    try:
        with Client(broker_address(args)) as client:
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


def print_stats(args: argparse.Namespace) -> int:
    from actorq.client.sync import Client
    from actorq.errors import ActorqError

    try:
        with Client(broker_address(args), connect_timeout=5) as client:
            stats = client.stats(timeout=5)
    except ActorqError as exc:
        print(f"actorq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(msgspec.to_builtins(stats), indent=2))
    return EXIT_OK
