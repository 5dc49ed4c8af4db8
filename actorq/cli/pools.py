"""`actorq scale`: change a pool's bounds on a running broker."""

from __future__ import annotations

import argparse
import sys

from actorq.cli.common import BROKER_HELP, EXIT_FAILURE, EXIT_OK, broker_address


def add_commands(sub: argparse._SubParsersAction) -> None:
    scale = sub.add_parser("scale", help="set a pool's min and max workers (equal bounds fix "
                           "its size)")
    scale.add_argument("pool", help="the pool's name, as in its [[pools]] entry")
    scale.add_argument("--min", type=int, dest="min_workers", help="min_workers")
    scale.add_argument("--max", type=int, dest="max_workers", help="max_workers")
    scale.add_argument("--broker", default=None, help=BROKER_HELP)
    scale.add_argument("--timeout", type=float, default=10.0,
                       help="seconds to wait for the broker (default 10)")
    scale.set_defaults(func=scale_pool)


def scale_pool(args: argparse.Namespace) -> int:
    from actorq.client.sync import Client
    from actorq.errors import ActorqError

    try:
        with Client(broker_address(args), connect_timeout=args.timeout) as client:
            client.scale(args.pool, min_workers=args.min_workers,
                         max_workers=args.max_workers, timeout=args.timeout)
    except ActorqError as exc:
        print(f"actorq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    low = "unchanged" if args.min_workers is None else args.min_workers
    high = "unchanged" if args.max_workers is None else args.max_workers
    print(f"pool {args.pool}: min_workers {low}, max_workers {high}")
    return EXIT_OK
