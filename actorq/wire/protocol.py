"""Every message on the wire, PROTOCOL_VERSION, and the decoders each actor uses.

Messages are tagged msgspec Structs encoded as msgpack, one message per ZeroMQ
frame. Values carried inside messages (task specs, leases, results) are untagged
array-like Structs: they are the bulk of every batch, so they are encoded as
positional arrays, which is both smaller and faster than maps.

Each socket has its own inbound union, so a message sent to the wrong actor fails
at decode time (and is answered with an Error) rather than deep in a handler.
"""

from __future__ import annotations

import enum
from typing import Any, Union

import msgspec

PROTOCOL_VERSION = 1

# A frame bigger than the largest legal payload plus this much framing is refused
# before decoding. The payload limit itself is configurable per broker.
FRAME_OVERHEAD_BYTES = 64 * 1024
# A peer that lost its connection tries again after 0.1 s, backing off to this: a
# broker restarted from its database waits that long (plus a liveness period) for
# workers to say what they still run.
RECONNECT_MAX_MS = 1000


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
_msg = dict(tag=True, frozen=True, gc=False, omit_defaults=True)


# ---- values carried inside messages -------------------------------------------------


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


# ---- messages -------------------------------------------------------------------------


class Holding(msgspec.Struct, **_value):
    """A lease a worker holds (buffered or running), named in its Hello so that a
    restarted broker adopts it rather than running the task a second time."""

    id: str
    token: int


class Hello(msgspec.Struct, **_msg):
    """First message of every peer. Workers and supervisors describe themselves."""

    version: int
    role: str  # "client" | "worker" | "supervisor" | "scheduler"
    pool: str = ""
    queues: list[str] = []
    credit: int = 0  # how many leases the worker can hold now
    pid: int = 0
    host: str = ""
    rate_limits: dict[str, float] = {}  # task name -> most dispatches per second
    holding: list[Holding] = []  # a worker's leases when it (re)registers
    slots: int = 0  # a worker's slots: how many of its leases can be running at once


class Welcome(msgspec.Struct, **_msg):
    version: int
    instance: str  # changes every time a broker starts
    max_payload_bytes: int
    heartbeat_interval_s: float
    durable: bool = False  # tasks survive a broker restart: clients wait on across it
    # The broker takes Release: a worker may hand back leases that wait behind a long
    # call. Absent (False) from a broker that predates it, so a newer worker keeps them.
    takes_release: bool = False


class Error(msgspec.Struct, **_msg):
    """A request or frame the receiver could not act on. `req` echoes the request id, if any."""

    code: str
    message: str
    req: int = 0


# client -> broker
class Submit(msgspec.Struct, **_msg):
    tasks: list[TaskSpec]
    # The client is not waiting on this acknowledgement: the broker may hold it for a
    # moment (ACK_DELAY_S) and send it with the tasks' outcomes, one message instead
    # of two. A client that needs it at once (flush(), a key or dependency) says
    # False, or sends a Ping.
    ack_later: bool = False


class Watch(msgspec.Struct, **_msg):
    """Ask for the outcomes of tasks this client did not submit (or lost track of)."""

    ids: list[str]


class Query(msgspec.Struct, **_msg):
    req: int
    ids: list[str]


class Cancel(msgspec.Struct, **_msg):
    req: int
    ids: list[str]


class GetStats(msgspec.Struct, **_msg):
    req: int


class DeadLetters(msgspec.Struct, **_msg):
    req: int
    queue: str | None = None
    limit: int = 100


class Requeue(msgspec.Struct, **_msg):
    req: int
    ids: list[str]


class AddCron(msgspec.Struct, **_msg):
    req: int
    entry: CronEntry


class RemoveCron(msgspec.Struct, **_msg):
    req: int
    name: str


class ListCrons(msgspec.Struct, **_msg):
    req: int


class Ping(msgspec.Struct, **_msg):
    """Answered with a Pong; also releases acknowledgements the broker holds for this client."""


# broker -> client
class Accepted(msgspec.Struct, **_msg):
    ids: list[str]
    instance: str  # which broker accepted them: a client can tell acks from a restarted one
    # submitted id -> id of the task already holding the same idempotency key
    aliases: dict[str, str] = {}
    # Queues these tasks went to that no live worker consumes: they wait until one comes.
    unserved: list[str] = []


class Rejected(msgspec.Struct, **_msg):
    items: list[Rejection]


class Outcomes(msgspec.Struct, **_msg):
    items: list[Outcome]
    accepted: Accepted | None = None  # held acknowledgements, applied before the items


class Infos(msgspec.Struct, **_msg):
    req: int
    items: list[TaskInfo | None]


class CancelReply(msgspec.Struct, **_msg):
    req: int
    cancelled: list[bool]


class Done(msgspec.Struct, **_msg):
    """One yes/no per item of a request (requeue, remove_cron, add_cron)."""

    req: int
    ok: list[bool]


class CronsReply(msgspec.Struct, **_msg):
    req: int
    entries: list[CronEntry]


class StatsReply(msgspec.Struct, **_msg):
    req: int
    stats: Stats


class Pong(msgspec.Struct, **_msg):
    instance: str


# worker -> broker
class Report(msgspec.Struct, **_msg):
    """Results of finished attempts; each frees one unit of credit, plus `credit` extra."""

    results: list[Result]
    credit: int = 0
    progress: list[Progress] = []


class Stuck(msgspec.Struct, **_msg):
    """A plain function overran its timeout or was cancelled while running: the worker
    cannot stop it, so it asks (through the broker) for its supervisor to kill it."""

    reason: str


class Due(msgspec.Struct, **_msg):
    """scheduler -> broker: these scheduled tasks are due now."""

    ids: list[str]


class Fire(msgspec.Struct, **_msg):
    """scheduler -> broker: these cron due times have come."""

    items: list[Firing]


class Heartbeat(msgspec.Struct, **_msg):
    pass


class Release(msgspec.Struct, **_msg):
    """Leases the worker never started, waiting behind a call that is taking long: requeue
    them for another worker. Their credit stays spent until a later Report's `credit`
    returns it, so they do not come straight back to this busy worker."""

    ids: list[str]


class Goodbye(msgspec.Struct, **_msg):
    """The worker is draining: take no more work, requeue these leases it never started."""

    released: list[str] = []


# supervisor -> broker
class WorkerExited(msgspec.Struct, **_msg):
    """Sent the moment a supervisor reaps a worker, so its leases are requeued at once."""

    worker: str  # the worker's routing id
    exit_code: int
    restarted: bool = False  # True when the supervisor is starting a replacement
    # Tokens of the leases it was running when it died (worker/running.py): only these
    # are charged an attempt. None when not known (charge what may have been running).
    running: list[int] | None = None


class PoolFailed(msgspec.Struct, **_msg):
    reason: str


# broker -> worker
class Dispatch(msgspec.Struct, **_msg):
    leases: list[Lease]


class Beat(msgspec.Struct, **_msg):
    instance: str


class Stop(msgspec.Struct, **_msg):
    """broker -> worker: these tasks were cancelled; stop them if they run."""

    ids: list[str]


class Kill(msgspec.Struct, **_msg):
    """broker -> supervisor: SIGTERM this worker, then SIGKILL after `grace` seconds."""

    worker: str
    reason: str
    grace: float


class Schedule(msgspec.Struct, **_msg):
    """broker -> scheduler: hold these until due. `reset` replaces everything held."""

    items: list[Timer]
    reset: bool = False


class Crons(msgspec.Struct, **_msg):
    """broker -> scheduler: the whole cron table (it is small)."""

    entries: list[CronEntry]


ClientToBroker = Union[Hello, Submit, Watch, Query, Cancel, GetStats, Ping, DeadLetters,
                       Requeue, AddCron, RemoveCron, ListCrons]
WorkerToBroker = Union[Hello, Report, Heartbeat, Release, Goodbye, WorkerExited, PoolFailed,
                       Stuck, Due, Fire]
BrokerToClient = Union[
    Welcome, Accepted, Rejected, Outcomes, Infos, CancelReply, StatsReply, Pong, Error, Done,
    CronsReply,
]
BrokerToWorker = Union[Welcome, Dispatch, Beat, Error, Stop, Kill, Schedule, Crons]

encode = msgspec.msgpack.Encoder().encode


def decoder(union: object) -> msgspec.msgpack.Decoder:
    """One decoder per socket, built once at start-up."""
    return msgspec.msgpack.Decoder(union)


DecodeError = msgspec.DecodeError  # also raised for frames that validate badly
