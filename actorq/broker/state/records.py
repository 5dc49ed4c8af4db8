"""The broker's records: a task and its latest run, a worker, a supervisor.

Records refer to each other by id (task ids, worker routing ids), never by object,
except a worker's own leases, which it holds so that a result finds its task in a
small dict that stays in cache.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import msgspec

from actorq.wire import protocol as p
from actorq.wire.protocol import TaskState

QUEUED = TaskState.QUEUED
RUNNING = TaskState.RUNNING
SUCCEEDED = TaskState.SUCCEEDED
SCHEDULED = TaskState.SCHEDULED
PENDING = TaskState.PENDING
DEAD = TaskState.DEAD
CANCELLED = TaskState.CANCELLED
EXPIRED = TaskState.EXPIRED
NOT_STARTED = frozenset({PENDING, SCHEDULED, QUEUED})


class Attempt(msgspec.Struct, gc=False):
    """A task's latest run and how it ended. Made when the task is first leased (or ends
    without running), so a queued task that never ran carries none of these fields:
    a backlog of a million tasks is ~64 MB smaller for it."""

    token: int = 0  # lease token of the latest attempt
    worker: bytes | None = None  # routing id of the worker holding (or that held) the lease
    started_at: float = 0.0
    attempts: int = 0  # runs so far, this one included
    finished_at: float = 0.0
    value: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    ran_on: str | None = None  # the worker's name, kept once `worker` is cleared


NO_ATTEMPT = Attempt()  # what a task that never ran reads as; never mutated


def _from_run(field: str) -> Any:
    """A read-only property of Task giving one field of its Attempt."""
    get = operator.attrgetter(field)
    return property(lambda task: get(task.run or NO_ATTEMPT))


class Task(msgspec.Struct, gc=False):
    """The broker's record of one task. Mutable; referred to by id everywhere else.

    Every field costs 8 bytes per queued task, so only what a queued task needs is
    here; the rest is in `run`. Hot paths use `run` directly; the read-only properties
    below are for the cold ones (status, storage, dependencies).
    """

    id: str
    name: str
    payload: bytes
    queue: str
    priority: int
    state: TaskState
    submitted_at: float
    # Client routing ids to push the outcome to: one bare id (the usual case, and 72
    # bytes a task cheaper than a one-element list) or a list when several watch.
    watchers: bytes | list[bytes] | None = None
    opts: p.Options | None = None  # lifecycle options; None for a plain task
    run: Attempt | None = None
    # Who submitted it (access.py): its client key with Curve, else its routing id.
    owner: bytes | None = None

    def attempt(self) -> Attempt:
        """This task's Attempt, made on first need."""
        run = self.run
        if run is None:
            run = self.run = Attempt()
        return run

    # Read-only views of the latest run, for the cold paths (a task that never ran
    # reads as NO_ATTEMPT's defaults). Not annotated: an annotation makes a field.
    token = _from_run("token")
    worker = _from_run("worker")
    attempts = _from_run("attempts")
    started_at = _from_run("started_at")
    finished_at = _from_run("finished_at")
    value = _from_run("value")
    error = _from_run("error")
    traceback = _from_run("traceback")
    ran_on = _from_run("ran_on")


def _is_queued(task: Task) -> bool:
    return task.state is QUEUED


class Worker:
    __slots__ = ("ident", "name", "pool", "queues", "credit", "last_seen", "leased", "pid",
                 "host", "draining", "slots", "lost_at", "reclaimed_at", "idle_since", "done",
                 "supervisor")

    def __init__(self, ident: bytes, hello: p.Hello, now: float) -> None:
        self.ident = ident
        self.name = ident.decode(errors="replace")
        self.pool = hello.pool
        self.queues = tuple(hello.queues)
        self.credit = max(0, hello.credit)
        self.last_seen = now
        self.leased: dict[str, Task] = {}
        self.pid = hello.pid
        self.host = hello.host
        self.draining = False
        self.slots = max(0, hello.slots)  # 0: an older worker that does not say
        self.lost_at: float | None = None  # a send to it failed: its supervisor's word is awaited
        self.reclaimed_at = float("-inf")  # when it was last asked for leases back
        self.idle_since = now  # when it last held no lease (scaling down drains the idle)
        self.done = 0  # results it reported
        self.supervisor = hello.supervisor.encode()  # the one peer that may report its exit


@dataclass
class Supervisor:
    ident: bytes
    pool: str
    last_seen: float
    failed: str = ""  # the reason, once the pool gave up
    host: str = ""
    queues: tuple[str, ...] = ()  # the pool's queues: its backlog, for scaling
    report: p.PoolReport | None = None  # its latest word on the pool's size
