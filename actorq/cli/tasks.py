"""Tasks from the shell: submit, list, inspect, cancel, requeue, dead letters, stats."""

from __future__ import annotations

import argparse
import json
import sys

from actorq.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    add_broker_options,
    emit,
    when,
    with_client,
)

STATES = ("pending", "scheduled", "queued", "running", "succeeded", "failed", "dead",
          "cancelled", "expired")


def add_commands(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="submit one task; prints its id (or its result "
                            "with --wait)")
    submit.add_argument("name", help="task name, module:function")
    submit.add_argument("args", nargs="?", default="[]", help="JSON list of arguments")
    submit.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    submit.add_argument("--queue", default=None)
    submit.add_argument("--priority", type=int, default=None)
    submit.add_argument("--delay", type=float, default=None, help="seconds before it may run")
    submit.add_argument("--key", default=None, help="idempotency key")
    submit.add_argument("--retries", type=int, default=None)
    submit.add_argument("--task-timeout", type=float, default=None, dest="task_timeout",
                        help="the task's own timeout, seconds")
    submit.add_argument("--wait", action="store_true", help="wait for and print the result")
    submit.add_argument("--wait-timeout", type=float, default=None, dest="wait_timeout",
                        help="seconds --wait waits for the result (default: --timeout, "
                        "else 60)")
    add_broker_options(submit, json_output=False)
    submit.set_defaults(func=submit_task)

    stats = sub.add_parser("stats", help="the broker's counters, rates and depths")
    add_broker_options(stats)
    stats.set_defaults(func=print_stats)

    tasks = sub.add_parser("tasks", help="list tasks, newest first")
    tasks.add_argument("--state", choices=STATES)
    tasks.add_argument("--queue")
    tasks.add_argument("--name", help="task name, module:function")
    tasks.add_argument("--limit", type=int, default=20)
    tasks.add_argument("--cursor", help="the next cursor a page before printed")
    add_broker_options(tasks)
    tasks.set_defaults(func=list_tasks)

    task = sub.add_parser("task", help="one task in full")
    task.add_argument("id")
    add_broker_options(task)
    task.set_defaults(func=show_task)

    cancel = sub.add_parser("cancel", help="cancel tasks")
    cancel.add_argument("ids", nargs="+", metavar="ID")
    add_broker_options(cancel, json_output=False)
    cancel.set_defaults(func=cancel_tasks)

    requeue = sub.add_parser("requeue", help="run dead tasks again: by id, or every one "
                             "(--dead, with --queue/--name to narrow it)")
    requeue.add_argument("ids", nargs="*", metavar="ID")
    requeue.add_argument("--dead", action="store_true", help="every dead letter")
    requeue.add_argument("--queue")
    requeue.add_argument("--name")
    add_broker_options(requeue, json_output=False)
    requeue.set_defaults(func=requeue_tasks)

    dead = sub.add_parser("dead", help="dead letters, oldest first")
    dead.add_argument("--queue")
    dead.add_argument("--limit", type=int, default=50)
    add_broker_options(dead)
    dead.set_defaults(func=list_dead)


def _json_arg(text: str, what: str, kind: type):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"actorq: {what} is not JSON: {exc}", file=sys.stderr)
        return None
    if kind is list and not isinstance(value, list):
        value = [value]
    if not isinstance(value, kind):
        print(f"actorq: {what} must be a JSON {kind.__name__}", file=sys.stderr)
        return None
    return value


def submit_task(args: argparse.Namespace) -> int:
    call_args = _json_arg(args.args, "ARGS", list)
    kwargs = _json_arg(args.kwargs, "--kwargs", dict)
    if call_args is None or kwargs is None:
        return EXIT_CONFIG
    wait_s = args.wait_timeout or args.timeout or 60.0
    options = {k: v for k, v in (("queue", args.queue), ("priority", args.priority),
                                 ("delay", args.delay), ("key", args.key),
                                 ("retries", args.retries), ("timeout", args.task_timeout))
               if v is not None}

    def work(client) -> int:
        h = client.submit(args.name, call_args, kwargs, **options)
        if not args.wait:
            client.flush(args.timeout)
            if h._error is not None:
                raise h._error
            print(h.id)
            return EXIT_OK
        print(json.dumps(h.result(timeout=wait_s)))
        return EXIT_OK

    return with_client(args, work)


def print_stats(args: argparse.Namespace) -> int:
    def work(client) -> int:
        s = client.stats(timeout=args.timeout)
        rows = [("broker", s.instance), ("uptime", f"{s.uptime_s:.0f} s"),
                ("submitted", s.submitted_total),
                *((f"finished {k}", v) for k, v in sorted(s.finished_total.items())),
                ("running", s.running), ("scheduled", s.scheduled), ("pending", s.pending),
                ("dead letters", s.dead),
                *((f"queue {q}", n) for q, n in sorted(s.queue_depth.items())),
                *((f"rate {k}", f"{v:.1f}/s") for k, v in sorted(s.rates.items())),
                ("run time p50 / p99", f"{s.duration_p50_s:g} / {s.duration_p99_s:g} s"),
                *((f"workers {pl}", f"{n} alive, {s.workers_busy.get(pl, 0)} busy")
                  for pl, n in sorted(s.workers_alive.items()))]
        return emit(args, s, "actorq stats", ["", "value"], rows)

    return with_client(args, work)


def _task_rows(tasks) -> list[tuple]:
    return [(t.id, t.name, t.queue, t.priority, t.state, t.attempts, t.worker,
             when(t.submitted_at), t.error) for t in tasks]


TASK_COLUMNS = ["id", "name", "queue", "priority", "state", "attempts", "worker", "submitted",
                "error"]


def list_tasks(args: argparse.Namespace) -> int:
    def work(client) -> int:
        page = client.list_tasks(args.state, queue=args.queue, name=args.name,
                                 limit=args.limit, cursor=args.cursor, timeout=args.timeout)
        code = emit(args, page, "tasks, newest first", TASK_COLUMNS, _task_rows(page.tasks))
        if page.next_cursor and not args.json:
            print(f"more: --cursor {page.next_cursor}")
        return code

    return with_client(args, work)


def show_task(args: argparse.Namespace) -> int:
    from actorq.http.api import task_json

    def work(client) -> int:
        info = client.task(args.id, timeout=args.timeout)
        shown = task_json(info, full=True)
        rows = [(k, json.dumps(v) if isinstance(v, (list, dict)) else v)
                for k, v in shown.items() if k not in ("history", "traceback")]
        rows += [(f"attempt {i}", f"{a.worker} {when(a.started_at)} -> {a.outcome}")
                 for i, a in enumerate(info.history, 1)]
        if info.traceback:
            rows.append(("traceback", info.traceback))
        return emit(args, shown, f"task {info.id}", ["", "value"], rows)

    return with_client(args, work)


def _each(ids: list[str], act, done: str, not_done: str) -> int:
    """`act` on every id, saying what became of each; exit 1 if any was not done."""
    failed = 0
    for tid in ids:
        if act(tid):
            print(f"{tid}: {done}")
        else:
            failed += 1
            print(f"{tid}: {not_done}", file=sys.stderr)
    return EXIT_FAILURE if failed else EXIT_OK


def cancel_tasks(args: argparse.Namespace) -> int:
    return with_client(args, lambda client: _each(
        args.ids, lambda tid: client.cancel(tid, timeout=args.timeout), "cancelled",
        "not cancelled (unknown, or it had ended)"))


def requeue_tasks(args: argparse.Namespace) -> int:
    if bool(args.ids) == args.dead:
        print("actorq: give task ids, or --dead (not both)", file=sys.stderr)
        return EXIT_CONFIG

    def work(client) -> int:
        if args.dead:
            n = client.requeue_dead(queue=args.queue, name=args.name, timeout=args.timeout)
            print(f"requeued {n} dead task(s)")
            return EXIT_OK
        return _each(args.ids, lambda tid: client.requeue(tid, timeout=args.timeout),
                     "requeued", "not requeued (unknown, or not dead)")

    return with_client(args, work)


def list_dead(args: argparse.Namespace) -> int:
    def work(client) -> int:
        items = client.dead_letters(args.queue, args.limit, timeout=args.timeout)
        return emit(args, items, "dead letters, oldest first", TASK_COLUMNS, _task_rows(items))

    return with_client(args, work)
