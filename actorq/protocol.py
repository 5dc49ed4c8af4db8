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
from typing import Union

import msgspec

PROTOCOL_VERSION = 1

# A frame bigger than the largest legal payload plus this much framing is refused
# before decoding. The payload limit itself is configurable per broker.
FRAME_OVERHEAD_BYTES = 64 * 1024


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


class TaskSpec(msgspec.Struct, **_value):
    """What a client submits: payload is msgpack of [args, kwargs], opaque to the broker."""

    id: str
    name: str
    payload: bytes
    queue: str = "default"
    priority: int = 0


class Lease(msgspec.Struct, **_value):
    """A task handed to a worker; `token` identifies this attempt's lease."""

    id: str
    name: str
    payload: bytes
    token: int
    attempt: int


class Result(msgspec.Struct, **_value):
    """A worker's report of one attempt."""

    id: str
    token: int
    ok: bool
    value: bytes | None = None  # msgpack of the return value when ok
    error: str | None = None  # "ExcType: message" when not ok
    traceback: str | None = None
    duration_s: float = 0.0


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
    error: str | None = None


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


# ---- messages -------------------------------------------------------------------------


class Hello(msgspec.Struct, **_msg):
    """First message of every peer. Workers and supervisors describe themselves."""

    version: int
    role: str  # "client" | "worker" | "supervisor"
    pool: str = ""
    queues: list[str] = []
    credit: int = 0  # how many leases the worker can hold now
    pid: int = 0
    host: str = ""


class Welcome(msgspec.Struct, **_msg):
    version: int
    instance: str  # changes every time a broker starts
    max_payload_bytes: int
    heartbeat_interval_s: float


class Error(msgspec.Struct, **_msg):
    """A request or frame the receiver could not act on. `req` echoes the request id, if any."""

    code: str
    message: str
    req: int = 0


# client -> broker
class Submit(msgspec.Struct, **_msg):
    tasks: list[TaskSpec]


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


class Ping(msgspec.Struct, **_msg):
    pass


# broker -> client
class Accepted(msgspec.Struct, **_msg):
    ids: list[str]
    instance: str  # which broker accepted them: a client can tell acks from a restarted one


class Rejected(msgspec.Struct, **_msg):
    items: list[Rejection]


class Outcomes(msgspec.Struct, **_msg):
    items: list[Outcome]


class Infos(msgspec.Struct, **_msg):
    req: int
    items: list[TaskInfo | None]


class CancelReply(msgspec.Struct, **_msg):
    req: int
    cancelled: list[bool]


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


class Heartbeat(msgspec.Struct, **_msg):
    pass


class Goodbye(msgspec.Struct, **_msg):
    """The worker is draining: take no more work, requeue these leases it never started."""

    released: list[str] = []


# supervisor -> broker
class WorkerExited(msgspec.Struct, **_msg):
    """Sent the moment a supervisor reaps a worker, so its leases are requeued at once."""

    worker: str  # the worker's routing id
    exit_code: int
    restarted: bool = False  # True when the supervisor is starting a replacement


class PoolFailed(msgspec.Struct, **_msg):
    reason: str


# broker -> worker
class Dispatch(msgspec.Struct, **_msg):
    leases: list[Lease]


class Beat(msgspec.Struct, **_msg):
    instance: str


ClientToBroker = Union[Hello, Submit, Watch, Query, Cancel, GetStats, Ping]
WorkerToBroker = Union[Hello, Report, Heartbeat, Goodbye, WorkerExited, PoolFailed]
BrokerToClient = Union[
    Welcome, Accepted, Rejected, Outcomes, Infos, CancelReply, StatsReply, Pong, Error
]
BrokerToWorker = Union[Welcome, Dispatch, Beat, Error]

encode = msgspec.msgpack.Encoder().encode


def decoder(union: object) -> msgspec.msgpack.Decoder:
    """One decoder per socket, built once at start-up."""
    return msgspec.msgpack.Decoder(union)


DecodeError = msgspec.DecodeError  # also raised for frames that validate badly
