"""Workers, pools, queues and crons from the shell: list them, scale pools, pause,
resume and purge queues."""

from __future__ import annotations

import argparse
import sys

from actorq.cli.common import EXIT_CONFIG, EXIT_OK, add_broker_options, ago, emit, when, with_client


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, func, about in [("workers", list_workers, "connected workers"),
                              ("pools", list_pools, "pools, their size and bounds"),
                              ("queues", list_queues, "queues: depth, paused, consumers"),
                              ("crons", list_crons, "cron entries and their next run")]:
        parser = sub.add_parser(name, help=about)
        add_broker_options(parser)
        parser.set_defaults(func=func)

    scale = sub.add_parser("scale", help="set a pool's min and max workers (equal bounds fix "
                           "its size)")
    scale.add_argument("pool", help="the pool's name, as in its [[pools]] entry")
    scale.add_argument("--min", type=int, dest="min_workers", help="min_workers")
    scale.add_argument("--max", type=int, dest="max_workers", help="max_workers")
    add_broker_options(scale, json_output=False)
    scale.set_defaults(func=scale_pool)

    for name, func, about in [("pause", hold_queue, "stop dispatching from a queue"),
                              ("resume", hold_queue, "dispatch from a paused queue again"),
                              ("purge", purge_queue, "cancel every task queued in a queue")]:
        parser = sub.add_parser(name, help=about)
        parser.add_argument("queue")
        if name == "purge":
            parser.add_argument("--yes", action="store_true",
                                help="really purge (it cannot be undone)")
        add_broker_options(parser, json_output=False)
        parser.set_defaults(func=func)


def list_workers(args: argparse.Namespace) -> int:
    def work(client) -> int:
        items = client.workers(timeout=args.timeout)
        rows = [(w.name, w.pool, w.host, w.pid, w.state, ", ".join(w.tasks[:3]) +
                 (" ..." if len(w.tasks) > 3 else ""), w.slots, w.credit, w.done,
                 ago(w.last_seen_s)) for w in items]
        return emit(args, items, "workers", ["name", "pool", "host", "pid", "state", "tasks",
                                             "slots", "credit", "done", "last heard"], rows)

    return with_client(args, work)


def list_pools(args: argparse.Namespace) -> int:
    def work(client) -> int:
        items = client.pools(timeout=args.timeout)
        rows = [(pl.name, pl.state, pl.hosts, pl.workers, pl.busy, pl.target,
                 f"{pl.min_workers}..{pl.max_workers}", pl.restarts, ", ".join(pl.queues),
                 pl.failure) for pl in items]
        return emit(args, items, "pools", ["name", "state", "hosts", "workers", "busy",
                                           "target", "bounds", "restarts", "queues",
                                           "failure"], rows)

    return with_client(args, work)


def list_queues(args: argparse.Namespace) -> int:
    def work(client) -> int:
        items = client.queues(timeout=args.timeout)
        rows = [(q.name, q.depth, ", ".join(f"{p}: {n}" for p, n in q.by_priority.items()),
                 "yes" if q.paused else "no", q.consumers, f"{q.oldest_s:.1f} s")
                for q in items]
        return emit(args, items, "queues", ["name", "depth", "by priority", "paused",
                                            "consumers", "oldest"], rows)

    return with_client(args, work)


def list_crons(args: argparse.Namespace) -> int:
    from actorq.http.api import cron_json

    def work(client) -> int:
        items = [cron_json(e) for e in client.crons(timeout=args.timeout)]
        rows = [(c["name"], c["schedule"], c["task"], c["args"], c["kwargs"], c["queue"],
                 when(c["last_fired"]), when(c["next_run"])) for c in items]
        return emit(args, items, "crons (UTC)", ["name", "schedule", "task", "args",
                                                 "kwargs", "queue", "last fired",
                                                 "next run"], rows)

    return with_client(args, work)


def scale_pool(args: argparse.Namespace) -> int:
    def work(client) -> int:
        client.scale(args.pool, min_workers=args.min_workers, max_workers=args.max_workers,
                     timeout=args.timeout)
        low = "unchanged" if args.min_workers is None else args.min_workers
        high = "unchanged" if args.max_workers is None else args.max_workers
        print(f"pool {args.pool}: min_workers {low}, max_workers {high}")
        return EXIT_OK

    return with_client(args, work)


def hold_queue(args: argparse.Namespace) -> int:
    """`pause` or `resume`, as the command says."""
    pausing = args.command == "pause"

    def work(client) -> int:
        act = client.pause if pausing else client.resume
        changed = act(args.queue, timeout=args.timeout)
        done, already = ("paused", "it already was") if pausing else ("resumed", "it was not "
                                                                      "paused")
        print(f"queue {args.queue}: {done}" + ("" if changed else f" ({already})"))
        return EXIT_OK

    return with_client(args, work)


def purge_queue(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"actorq: purging cancels every task queued in {args.queue!r} and cannot be "
              "undone: say --yes", file=sys.stderr)
        return EXIT_CONFIG

    def work(client) -> int:
        print(f"queue {args.queue}: purged {client.purge(args.queue, timeout=args.timeout)} "
              "task(s)")
        return EXIT_OK

    return with_client(args, work)
