"""The values messages carry: task states, task specs, leases, results, outcomes,
task infos and statistics.

They are untagged array-like Structs: they are the bulk of every batch, so they are
encoded as positional arrays, which is both smaller and faster than maps. The
messages that carry them are in protocol.py.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class TaskState(enum.StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


FINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED, TaskState.EXPIRED}
)

_value = dict(array_like=True, frozen=True, gc=False)


class Options(msgspec.Struct, **_value):
    """A submission's lifecycle options. Absent (None) on a plain task, so the common
    case costs nothing on the wire or in the broker. Times are unix seconds."""

    retries: int = 0  # runs after the first, on failure
    backoff: float = 1.0  # base seconds of exponential back-off
    max_backoff: float = 3600.0
    retry_on: list[str] | None = None  # exception names that retry; None = any
    timeout: float = 0.0  # seconds an attempt may run; 0 = unlimited
    expires_at: float = 0.0  # not started by then: expired; 0 = never
    not_before: float = 0.0  # delay / eta; 0 = at once
    depends_on: list[str] | None = None
    pipe: bool = False  # receive depends_on[0]'s result as the first argument (chain)
    key: str | None = None  # idempotency key
    ignore_result: bool = False


class TaskSpec(msgspec.Struct, **_value):
    """What a client submits: payload is msgpack of [args, kwargs], opaque to the broker."""

    id: str
    name: str
    payload: bytes
    queue: str = "default"
    priority: int = 0
    opts: Options | None = None


class Lease(msgspec.Struct, **_value):
    """A task handed to a worker; `token` identifies this attempt's lease."""

    id: str
    name: str
    payload: bytes
    token: int
    attempt: int
    timeout: float | None = None  # the worker stops the attempt after this many seconds
    retry_on: list[str] | None = None  # which exceptions the broker may retry
    prev: bytes | None = None  # a chain's previous result (msgpack), prepended to args


class Result(msgspec.Struct, **_value):
    """A worker's report of one attempt."""

    id: str
    token: int
    ok: bool
    value: bytes | None = None  # msgpack of the return value when ok
    error: str | None = None  # "ExcType: message" when not ok
    traceback: str | None = None
    duration_s: float = 0.0
    retry: bool = True  # False when the exception is not one the lease's retry_on names


class Progress(msgspec.Struct, **_value):
    """`actorq.progress()` from inside a running task."""

    id: str
    token: int
    fraction: float
    info: Any = None


class Timer(msgspec.Struct, **_value):
    """A scheduled task and when (unix seconds) the scheduler should hand it back."""

    id: str
    due: float


class CronEntry(msgspec.Struct, **_value):
    """A recurring submission. `schedule` is five cron fields, or six with leading seconds."""

    name: str
    schedule: str
    task: str
    payload: bytes  # msgpack of [args, kwargs]
    queue: str = "default"
    priority: int = 0
    last_fired: float = 0.0  # unix seconds of the last due time that fired
    since: float = 0.0  # due times at or before this are never fired (added / node start)


class Firing(msgspec.Struct, **_value):
    name: str
    at: float  # the due time being fired, unix seconds


class Outcome(msgspec.Struct, **_value):
    """A task's final state, pushed to the clients watching it."""

    id: str
    state: str
    value: bytes | None = None
    error: str | None = None
    traceback: str | None = None


class Rejection(msgspec.Struct, **_value):
    id: str
    code: str
    message: str


class AttemptInfo(msgspec.Struct, frozen=True, gc=False):
    """One run of a task, in TaskInfo.history (unix seconds; 0 = not yet)."""

    worker: str | None
    started_at: float
    finished_at: float
    outcome: str  # "running", "succeeded", or the error ("ValueError: ...", "WorkerLost: ...")


class TaskInfo(msgspec.Struct, frozen=True, gc=False):
    """A task's status as `Client.status()` returns it. Times are unix seconds (0 = not yet)."""

    id: str
    name: str
    queue: str
    priority: int
    state: str
    attempts: int
    worker: str | None
    submitted_at: float
    started_at: float
    finished_at: float
    error: str | None = None  # the last attempt's error, also while a retry waits
    scheduled_for: float = 0.0  # unix seconds a scheduled task is due
    progress: float | None = None  # last actorq.progress() fraction of a running task
    progress_info: Any = None
    retries: int = 0
    depends_on: list[str] | None = None
    # Filled only when asked for a task in full (Client.task()):
    payload: bytes | None = None  # its arguments, msgpack of [args, kwargs]
    value: bytes | None = None  # its result, msgpack
    traceback: str | None = None
    history: list[AttemptInfo] = []  # every attempt, oldest first


class TaskPage(msgspec.Struct, frozen=True, gc=False):
    """A page of a task listing, newest first; `next_cursor` asks for the next one."""

    tasks: list[TaskInfo]
    next_cursor: str | None = None


class WorkerInfo(msgspec.Struct, frozen=True, gc=False):
    name: str
    pool: str
    host: str
    pid: int
    state: str  # "idle", "busy" (every slot used), "draining" or "lost"
    tasks: list[str]  # ids of the leases it holds, running or waiting
    slots: int
    credit: int  # leases the broker may still send it
    done: int  # results it has reported
    last_seen_s: float  # seconds since the broker last heard from it


class PoolInfo(msgspec.Struct, frozen=True, gc=False):
    name: str
    state: str  # "up", "failed", "lost"
    hosts: int
    workers: int  # connected workers
    busy: int  # of which hold at least their slots' worth of leases
    target: int
    min_workers: int
    max_workers: int
    restarts: int
    queues: list[str]
    failure: str = ""


class QueueInfo(msgspec.Struct, frozen=True, gc=False):
    name: str
    depth: int  # tasks queued
    by_priority: dict[int, int]  # priority -> tasks queued (cancelled ones not yet skipped included)
    paused: bool
    consumers: int  # live workers consuming it
    oldest_s: float  # age of the oldest queued task, seconds (0 when empty)


class WorkerLoad(msgspec.Struct, **_value):
    """What the broker knows of one worker's load, for its supervisor's scaling."""

    name: str
    held: int  # leases it holds, running or waiting
    slots: int
    idle_s: float  # seconds since it last held a lease (0 while it holds one)


class PoolStats(msgspec.Struct, frozen=True, gc=False):
    """A pool's size as its supervisors report it, summed over the hosts it runs on."""

    workers: int  # worker processes running now
    target: int  # what the supervisors are heading for
    min_workers: int  # bounds of one supervisor (the same on every host after a scale)
    max_workers: int
    scale_ups: int = 0  # scaling decisions taken
    scale_downs: int = 0
    hosts: int = 1


class NameStats(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Counters of one registered task name."""

    succeeded: int  # attempts that succeeded
    failed: int  # attempts that failed (retried or not)
    run_s: float  # their run time, summed


class Stats(msgspec.Struct, frozen=True, gc=False):
    """A snapshot of broker counters, for /metrics and /health."""

    instance: str
    uptime_s: float
    submitted_total: int
    finished_total: dict[str, int]
    queue_depth: dict[str, int]
    running: int
    workers_alive: dict[str, int]
    worker_restarts: dict[str, int]
    supervisors: dict[str, str]  # pool -> "up" | "failed"
    duration_buckets: list[float]
    duration_counts: list[int]  # cumulative-free counts per bucket, last is +Inf
    duration_sum_s: float
    bad_frames_total: int
    stale_results_total: int
    rejected_total: int
    draining: bool
    scheduled: int = 0  # delayed or waiting for a retry
    pending: int = 0  # waiting for dependencies
    dead: int = 0  # dead letters kept
    retries_total: int = 0
    cron_fired_total: int = 0
    unserved_queues: list[str] = []  # queues with tasks waiting and no live consumer
    leases_returned_total: int = 0  # leases requeued uncharged: handed back or never started
    steals_total: int = 0  # requests to a worker to hand back leases for an idle one
    # Per second over the last 10 s and the last minute: submitted, succeeded, failed
    # (attempts that failed, retried or not), e.g. rates["succeeded_10s"].
    rates: dict[str, float] = {}
    # Leadership on a shared PostgreSQL store: the epoch this broker leads under
    # (0 without leadership) and the name it holds the lease by.
    epoch: int = 0
    leader: str = ""
    duration_p50_s: float = 0.0  # task run time quantiles, from the histogram's buckets
    duration_p99_s: float = 0.0
    workers_busy: dict[str, int] = {}  # pool -> workers holding their slots' worth
    queue_oldest_s: dict[str, float] = {}  # queue -> age of its oldest queued task
    queue_by_priority: dict[str, dict[int, int]] = {}  # queue -> priority -> tasks queued
    process_cpu_s: float = 0.0  # the broker process's own CPU time (user + system)
    process_rss_bytes: int = 0  # and its resident memory
    wait_counts: list[int] = []  # time from submitted to started, per duration bucket
    wait_sum_s: float = 0.0
    by_name: dict[str, NameStats] = {}  # registered task names (at most 100)
    pools: dict[str, PoolStats] = {}


class Holding(msgspec.Struct, **_value):
    """A lease a worker holds (buffered or running), named in its Hello so that a
    restarted broker adopts it rather than running the task a second time."""

    id: str
    token: int
