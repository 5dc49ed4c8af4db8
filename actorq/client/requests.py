"""Requests other than submissions: what a client checks before it asks, and how it
reads the answers (shared by Client and AsyncClient)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorq.errors import RequestRejected, SubmitRejected, TaskNotFound
from actorq.node.config import MAX_POOL_WORKERS
from actorq.tasks import cron as crons
from actorq.wire import protocol as p
from actorq.wire.payload import encode_args

MAX_PAGE = 500  # tasks a listing returns at most (the broker says the same)


def cron_entry(name: str, schedule: str, task: Any, args: Any, kwargs: dict | None,
               queue: str, priority: int) -> p.CronEntry:
    """Check and encode a cron entry on the client side (the broker checks the schedule)."""
    task = getattr(task, "actorq_name", task)
    problem = crons.check_entry(name, schedule, task, queue, priority)
    if problem:
        raise SubmitRejected("bad_option", problem)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
    return p.CronEntry(name, schedule, task, encode_args(args, kwargs), queue, priority)


def first_info(task_id: str, reply: p.Infos) -> p.TaskInfo:
    info = reply.items[0] if reply.items else None
    if info is None:
        raise TaskNotFound(task_id)
    return info


def scale_bounds(min_workers: int | None, max_workers: int | None) -> tuple[int, int]:
    """The bounds of a Scale request (0: keep as it is), checked before anything is sent."""
    if min_workers is None and max_workers is None:
        raise RequestRejected("bad_option", "give min_workers, max_workers or both")
    for name, value in (("min_workers", min_workers), ("max_workers", max_workers)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not 1 <= value <= MAX_POOL_WORKERS):
            raise RequestRejected("bad_option", f"{name} must be an int in "
                                  f"1..{MAX_POOL_WORKERS}, got {value!r}")
    if min_workers is not None and max_workers is not None and min_workers > max_workers:
        raise RequestRejected("bad_option",
                              f"min_workers {min_workers} is over max_workers {max_workers}")
    return min_workers or 0, max_workers or 0


TASK_STATES = frozenset(s.value for s in p.TaskState)


def list_tasks(state: str | None, queue: str | None, name: str | None, limit: int,
               cursor: str | None) -> Callable[[int], p.ListTasks]:
    """A ListTasks request, checked before anything is sent."""
    if state is not None and str(state) not in TASK_STATES:
        raise RequestRejected("bad_option", f"state must be one of "
                              f"{', '.join(sorted(TASK_STATES))}, got {state!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise RequestRejected("bad_option", f"limit must be an int in 1..{MAX_PAGE}, got {limit!r}")
    state = None if state is None else str(state)
    return lambda req: p.ListTasks(req, state, queue, name, limit, cursor)


def queue_command(queue: str, action: str) -> Callable[[int], p.QueueCommand]:
    if not isinstance(queue, str) or not queue:
        raise RequestRejected("bad_option", f"queue must be a non-empty string, got {queue!r}")
    return lambda req: p.QueueCommand(req, queue, action)

