"""Every message on the wire, PROTOCOL_VERSION, and the decoders each actor uses.

Messages are tagged msgspec Structs encoded as msgpack, one message per ZeroMQ
frame. The values they carry (task specs, leases, results) are in values.py and
are re-exported here, so that `protocol` (imported as `p`) names everything.

Each socket has its own inbound union, so a message sent to the wrong actor fails
at decode time (and is answered with an Error) rather than deep in a handler.
"""

from __future__ import annotations

from typing import Union

import msgspec

from actorq.wire.values import (
    FINAL_STATES as FINAL_STATES,
)
from actorq.wire.values import (  # the values messages carry, re-exported
    AttemptInfo as AttemptInfo,
)
from actorq.wire.values import (
    CronEntry as CronEntry,
)
from actorq.wire.values import (
    Firing as Firing,
)
from actorq.wire.values import (
    Holding as Holding,
)
from actorq.wire.values import (
    Lease as Lease,
)
from actorq.wire.values import (
    NameStats as NameStats,
)
from actorq.wire.values import (
    Options as Options,
)
from actorq.wire.values import (
    Outcome as Outcome,
)
from actorq.wire.values import (
    PoolInfo as PoolInfo,
)
from actorq.wire.values import (
    PoolStats as PoolStats,
)
from actorq.wire.values import (
    Progress as Progress,
)
from actorq.wire.values import (
    QueueInfo as QueueInfo,
)
from actorq.wire.values import (
    Rejection as Rejection,
)
from actorq.wire.values import (
    Result as Result,
)
from actorq.wire.values import (
    Stats as Stats,
)
from actorq.wire.values import (
    TaskInfo as TaskInfo,
)
from actorq.wire.values import (
    TaskPage as TaskPage,
)
from actorq.wire.values import (
    TaskSpec as TaskSpec,
)
from actorq.wire.values import (
    TaskState as TaskState,
)
from actorq.wire.values import (
    Timer as Timer,
)
from actorq.wire.values import (
    WorkerInfo as WorkerInfo,
)
from actorq.wire.values import (
    WorkerLoad as WorkerLoad,
)

PROTOCOL_VERSION = 1

# A frame bigger than the largest legal payload plus this much framing is refused
# before decoding. The payload limit itself is configurable per broker.
FRAME_OVERHEAD_BYTES = 64 * 1024
# A peer that lost its connection tries again after 0.1 s, backing off to this: a
# broker restarted from its database waits that long (plus a liveness period) for
# workers to say what they still run.
RECONNECT_MAX_MS = 1000


_msg = dict(tag=True, frozen=True, gc=False, omit_defaults=True)


# ---- messages -------------------------------------------------------------------------


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
    tasks: list[str] = []  # a worker's registered task names: they get counters of their own
    supervisor: str = ""  # a worker's supervisor (its routing id): only it reports the exit
    secret: str = ""  # the scheduler's proof that its node started it (BrokerSpec)


class Welcome(msgspec.Struct, **_msg):
    version: int
    instance: str  # changes every time a broker starts
    max_payload_bytes: int
    heartbeat_interval_s: float
    durable: bool = False  # tasks survive a broker restart: clients wait on across it
    # The broker takes Release: a worker may hand back leases that wait behind a long
    # call. Absent (False) from a broker that predates it, so a newer worker keeps them.
    takes_release: bool = False
    # Leadership (a broker on a shared PostgreSQL store): grows with every takeover,
    # so a peer that hears two brokers follows the higher one. 0 without leadership.
    epoch: int = 0


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
    full: bool = False  # with arguments, result, traceback and every attempt


class ListTasks(msgspec.Struct, **_msg):
    """A page of tasks, newest first, filtered by what is given; answered with Page."""

    req: int
    state: str | None = None
    queue: str | None = None
    name: str | None = None
    limit: int = 50
    cursor: str | None = None


class RequeueDead(msgspec.Struct, **_msg):
    """Run again every dead letter matching (all when neither is given); Count says how many."""

    req: int
    queue: str | None = None
    name: str | None = None


class Inspect(msgspec.Struct, **_msg):
    """`what`: "workers", "pools" or "queues"; answered with Listing."""

    req: int
    what: str


class QueueCommand(msgspec.Struct, **_msg):
    """`action`: "pause", "resume" or "purge" (queued tasks end cancelled); Count says
    how many tasks (purge) or whether the queue changed (1 or 0)."""

    req: int
    queue: str
    action: str


class RunCron(msgspec.Struct, **_msg):
    """Fire a cron entry now, once, besides its schedule; answered with Done."""

    req: int
    name: str


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


class Scale(msgspec.Struct, **_msg):
    """Change a pool's bounds; 0 keeps a bound as it is. Answered with Done or Error."""

    req: int
    pool: str
    min_workers: int = 0
    max_workers: int = 0


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


class Page(msgspec.Struct, **_msg):
    req: int
    page: TaskPage


class Listing(msgspec.Struct, **_msg):
    req: int
    workers: list[WorkerInfo] = []
    pools: list[PoolInfo] = []
    queues: list[QueueInfo] = []


class Count(msgspec.Struct, **_msg):
    req: int
    n: int


class Pong(msgspec.Struct, **_msg):
    instance: str
    epoch: int = 0  # as Welcome.epoch


class Probe(msgspec.Struct, **_msg):
    """client or worker -> broker: do you lead? Sent by a peer given several broker
    addresses (wire/leader.py); answered with Leader, and registers nothing."""


class Leader(msgspec.Struct, **_msg):
    """broker -> prober: this broker serves, under this leadership epoch."""

    instance: str
    epoch: int = 0


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


class PoolReport(msgspec.Struct, **_msg):
    """supervisor -> broker, after every scaling decision and with each heartbeat."""

    workers: int  # running now, starting ones included
    target: int
    min_workers: int
    max_workers: int
    scale_ups: int
    scale_downs: int


# broker -> worker
class Dispatch(msgspec.Struct, **_msg):
    leases: list[Lease]
    # The broker had more queued for this worker than its credit let it send: a worker
    # whose slots waited for these may take a larger window (worker/credit.py).
    more: bool = False


class Reclaim(msgspec.Struct, **_msg):
    """broker -> worker: a worker is idle while you hold leases you have not started;
    hand back up to `n` of them (Release) for it."""

    n: int


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


class PoolLoad(msgspec.Struct, **_msg):
    """broker -> supervisor, a few times a second: the load its scaling decides on."""

    backlog: int  # tasks queued in the pool's queues
    workers: list[WorkerLoad]  # the supervisor's own workers that the broker knows


class SetBounds(msgspec.Struct, **_msg):
    """broker -> supervisor: a client changed the pool's bounds (client.scale)."""

    min_workers: int
    max_workers: int


class Crons(msgspec.Struct, **_msg):
    """broker -> scheduler: the whole cron table (it is small)."""

    entries: list[CronEntry]


ClientToBroker = Union[Hello, Submit, Watch, Query, Cancel, GetStats, Ping, DeadLetters,
                       Requeue, AddCron, RemoveCron, ListCrons, Scale, ListTasks, RequeueDead,
                       Inspect, QueueCommand, RunCron, Probe]
WorkerToBroker = Union[Hello, Report, Heartbeat, Release, Goodbye, WorkerExited, PoolFailed,
                       PoolReport, Stuck, Due, Fire, Probe]
BrokerToClient = Union[
    Welcome, Accepted, Rejected, Outcomes, Infos, CancelReply, StatsReply, Pong, Error, Done,
    CronsReply, Page, Listing, Count, Leader,
]
BrokerToWorker = Union[Welcome, Dispatch, Beat, Error, Stop, Kill, Schedule, Crons, Reclaim,
                       PoolLoad, SetBounds, Leader]
# What a prober reads, from either endpoint.
ToProber = Union[Leader, Welcome, Pong, Error]

encode = msgspec.msgpack.Encoder().encode


def decoder(union: object) -> msgspec.msgpack.Decoder:
    """One decoder per socket, built once at start-up."""
    return msgspec.msgpack.Decoder(union)


DecodeError = msgspec.DecodeError  # also raised for frames that validate badly
