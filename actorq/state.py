"""BrokerState: the broker's whole logic as a pure object.

The broker loop feeds it decoded messages with the current monotonic time and
flushes what it collects in `outbox`. Nothing here touches a socket, a clock or
the filesystem, so every rule (credit, leases, stale results, liveness) is a
millisecond unit test.

Time: `now` is time.monotonic() of the broker process; user-facing timestamps
are unix time, derived from `now` with an offset fixed at start-up.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import operator
import os
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import crons
from . import protocol as p
from .options import broker_check
from .pacing import Limiter, retry_delay
from .storage import Journal, StoredTask
from .protocol import TaskState

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
MAX_PRIORITY = 255
SUPERVISOR_FORGET_LIVENESSES = 10  # a silent supervisor is forgotten after this many windows
PURGE_BATCH = 1_000  # finished tasks forgotten per loop turn: ~2 ms with storage
MAX_INTERNED = 10_000  # distinct task names and queue names kept as shared strings
# Payloads this short are kept as one shared copy per distinct value (up to
# MAX_INTERNED of them): a task without arguments, or with the same few small ones
# (a cron job, "refresh the cache"), is common, and each decoded copy of its 3-16
# byte payload is a 48-64 byte object per queued task. Longer payloads are rarely
# equal and are not worth the lookup.
SHARED_PAYLOAD_BYTES = 16
DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0]

QUEUED = TaskState.QUEUED
RUNNING = TaskState.RUNNING
SUCCEEDED = TaskState.SUCCEEDED
SCHEDULED = TaskState.SCHEDULED
PENDING = TaskState.PENDING
DEAD = TaskState.DEAD
CANCELLED = TaskState.CANCELLED
EXPIRED = TaskState.EXPIRED
_STATE_OF = {s.value: s for s in TaskState}  # 20x faster than TaskState(value): recovery
NOT_STARTED = frozenset({PENDING, SCHEDULED, QUEUED})
SCHEDULE_CHUNK = 50_000  # timers per message when the whole schedule is sent
EARLY_TOLERANCE_S = 0.5  # a Due this much before the task's due time is a stale one


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


def _is_queued(task: Task) -> bool:
    return task.state is QUEUED


from .queues import TaskQueue  # noqa: E402  (after Task, which it holds)


class Worker:
    __slots__ = ("ident", "name", "pool", "queues", "credit", "last_seen", "leased", "pid",
                 "host", "draining")

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


@dataclass
class Supervisor:
    ident: bytes
    pool: str
    last_seen: float
    failed: str = ""  # the reason, once the pool gave up
    host: str = ""


@dataclass
class Outbox:
    """What one loop turn decided to send, grouped so each peer gets one message per kind."""

    accepted: dict[bytes, list[str]] = field(default_factory=dict)
    rejected: dict[bytes, list[p.Rejection]] = field(default_factory=dict)
    outcomes: dict[bytes, list[p.Outcome]] = field(default_factory=dict)
    dispatch: dict[bytes, list[p.Lease]] = field(default_factory=dict)
    aliases: dict[bytes, dict[str, str]] = field(default_factory=dict)
    to_clients: list[tuple[bytes, object]] = field(default_factory=list)
    to_workers: list[tuple[bytes, object]] = field(default_factory=list)
    # Clients whose acknowledgements go out now, not held to ride with their outcomes.
    ack_now: set[bytes] = field(default_factory=set)
    # The turn gave work to a worker that held none, or a worker's last result left
    # it holding none: an answer (its Report, the client's next submission) is likely
    # near, and the broker spins for it (spinpoll.py). A worker that holds other
    # leases is a stream, where spinning would only take CPU from it.
    handoff: bool = False

    def __bool__(self) -> bool:
        return bool(self.accepted or self.rejected or self.outcomes or self.dispatch
                    or self.to_clients or self.to_workers)


class BrokerState:
    def __init__(
        self,
        *,
        now: float,
        wall_offset: float = 0.0,
        max_payload_bytes: int = 10 * 1024 * 1024,
        heartbeat_interval_s: float = 1.0,
        heartbeat_liveness: int = 3,
        result_ttl_s: float = 86400.0,
        max_deliveries: int = 5,
        kill_grace_s: float = 1.0,
        crons: list[p.CronEntry] | None = None,
        instance: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.instance = instance or os.urandom(6).hex()  # not secrets: it loads OpenSSL (~4 MB)
        self.started = now
        self.wall_offset = wall_offset
        self.max_payload_bytes = max_payload_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.liveness_s = heartbeat_interval_s * heartbeat_liveness
        # How long recovered running tasks wait for their workers to claim them (recover)
        self.claim_window_s = self.liveness_s + p.RECONNECT_MAX_MS / 1000
        self.result_ttl_s = result_ttl_s
        self.max_deliveries = max_deliveries
        self.kill_grace_s = kill_grace_s
        self.draining = False
        self.rand = random.Random(seed)

        self.tasks: dict[str, Task] = {}
        self._strings: dict[str, str] = {}
        self._payloads: dict[bytes, bytes] = {}  # see SHARED_PAYLOAD_BYTES
        self.queues: dict[str, TaskQueue[Task]] = {}
        self.depth: dict[str, int] = {}  # live queued tasks per queue
        self.queued = 0
        self.workers: dict[bytes, Worker] = {}
        self.ready: dict[bytes, None] = {}  # workers with credit, in round-robin order
        self.supervisors: dict[bytes, Supervisor] = {}
        self._finished: deque[tuple[float, str]] = deque()  # (expires_at, id) in finish order
        self._next_token = 0
        self._next_beat = now

        # The lifecycle beyond queued -> running -> done. Each structure holds only the
        # tasks that use the feature, so plain tasks pay nothing for it.
        self.scheduled: dict[str, float] = {}  # id -> due (unix s): delayed, backing off
        self._to_schedule: list[p.Timer] = []  # for the scheduler, this turn
        self.scheduler: bytes | None = None
        self.scheduler_seen = now
        self.waiting: dict[str, int] = {}  # pending id -> dependencies not yet succeeded
        self.dependents: dict[str, list[str]] = {}  # id -> pending ids waiting on it
        self.piped: dict[str, bytes] = {}  # chain step id -> previous step's result
        self.progress: dict[str, tuple[float, Any]] = {}
        self.keys: dict[str, str] = {}  # idempotency key -> task id
        self.dead: dict[str, None] = {}  # dead letters, oldest first
        self.retry_base: dict[str, int] = {}  # attempts before a requeue of a dead task
        self.expiries: list[tuple[float, str]] = []  # heap of (monotonic deadline, id)
        # Tasks recovered as running: their workers may still have them and say so when
        # they register again (Hello.holding); what nobody claims by `unclaimed_until`
        # is queued again.
        self.unclaimed: dict[str, None] = {}
        self.unclaimed_until = 0.0
        # Leases not yet journaled, in two generations (see journal_leases).
        self._new_leases: list[Task] = []
        self._old_leases: list[Task] = []
        self.limits: dict[str, Limiter] = {}  # task name -> rate limit
        self.held: dict[str, deque[Task]] = {}  # rate-limited tasks set aside, by name
        self.crons: dict[str, p.CronEntry] = {}
        # With a durable store: what this turn changed, for the broker to commit before
        # it sends anything. None in memory, so the hot paths skip it with one test.
        self.journal: Journal | None = None
        self.durable = False
        for entry in crons or ():
            self.crons[entry.name] = msgspec.structs.replace(entry, since=now + wall_offset)

        self.submitted_total = 0
        self.finished_total: dict[str, int] = {}
        self.rejected_total = 0
        self.bad_frames_total = 0
        self.stale_results_total = 0
        self.retries_total = 0
        self.cron_fired_total = 0
        self.worker_restarts: dict[str, int] = {}
        self.duration_counts = [0] * (len(DURATION_BUCKETS_S) + 1)
        self.duration_sum_s = 0.0

        self.outbox = Outbox()

    # ---- plumbing ------------------------------------------------------------------

    def take_outbox(self) -> Outbox:
        if self._to_schedule:
            if self.scheduler is not None:  # else sent in full when one says hello
                self.outbox.to_workers.append((self.scheduler, p.Schedule(self._to_schedule)))
            self._to_schedule = []
        out, self.outbox = self.outbox, Outbox()
        return out

    def welcome(self) -> p.Welcome:
        return p.Welcome(
            version=p.PROTOCOL_VERSION,
            instance=self.instance,
            max_payload_bytes=self.max_payload_bytes,
            heartbeat_interval_s=self.heartbeat_interval_s,
            durable=self.durable,
            takes_release=True,
        )

    def bad_frame(self, peer: bytes, from_worker: bool, reason: str) -> None:
        """An undecodable or oversized frame: answer it, count it, carry on."""
        self.bad_frames_total += 1
        reply = p.Error(code="bad_frame", message=reason)
        (self.outbox.to_workers if from_worker else self.outbox.to_clients).append((peer, reply))

    def _version_ok(self, peer: bytes, hello: p.Hello, from_worker: bool) -> bool:
        if hello.version == p.PROTOCOL_VERSION:
            return True
        self.bad_frames_total += 1
        reply = p.Error(
            code="protocol_version",
            message=f"protocol version {hello.version} is not supported; "
            f"this broker speaks version {p.PROTOCOL_VERSION}",
        )
        (self.outbox.to_workers if from_worker else self.outbox.to_clients).append((peer, reply))
        return False

    # ---- clients -------------------------------------------------------------------

    def on_client(self, peer: bytes, msg: object, now: float) -> None:
        match msg:
            case p.Submit(tasks=specs, ack_later=later):
                if not later:
                    self.outbox.ack_now.add(peer)
                self._submit(peer, specs, now)
            case p.Watch(ids=ids):
                self._watch(peer, ids)
            case p.Query(req=req, ids=ids):
                items = [self._info(self.tasks.get(i)) for i in ids]
                self.outbox.to_clients.append((peer, p.Infos(req=req, items=items)))
            case p.Cancel(req=req, ids=ids):
                done = [self._cancel(i, now) for i in ids]
                self.outbox.to_clients.append((peer, p.CancelReply(req=req, cancelled=done)))
            case p.DeadLetters(req=req, queue=queue, limit=limit):
                items = []
                for tid in self.dead:
                    if len(items) >= max(0, limit):
                        break
                    task = self.tasks.get(tid)
                    if task is not None and (queue is None or task.queue == queue):
                        items.append(self._info(task))
                self.outbox.to_clients.append((peer, p.Infos(req=req, items=items)))
            case p.Requeue(req=req, ids=ids):
                ok = [self._requeue_dead(i, now) for i in ids]
                self.outbox.to_clients.append((peer, p.Done(req=req, ok=ok)))
            case p.AddCron(req=req, entry=entry):
                self._add_cron(peer, req, entry, now)
            case p.RemoveCron(req=req, name=name):
                existed = self.crons.pop(name, None) is not None
                if existed:
                    self._send_crons()
                    self._crons_changed()
                self.outbox.to_clients.append((peer, p.Done(req=req, ok=[existed])))
            case p.ListCrons(req=req):
                self.outbox.to_clients.append(
                    (peer, p.CronsReply(req=req, entries=list(self.crons.values()))))
            case p.GetStats(req=req):
                self.outbox.to_clients.append((peer, p.StatsReply(req=req, stats=self.stats(now))))
            case p.Ping():
                self.outbox.ack_now.add(peer)
                self.outbox.to_clients.append((peer, p.Pong(instance=self.instance)))
            case p.Hello() as hello:
                if self._version_ok(peer, hello, False):
                    self.outbox.to_clients.append((peer, self.welcome()))

    def _reject(self, peer: bytes, task_id: str, code: str, message: str) -> None:
        self.rejected_total += 1
        self.outbox.rejected.setdefault(peer, []).append(p.Rejection(task_id, code, message))

    def _submit(self, peer: bytes, specs: list[p.TaskSpec], now: float) -> None:
        wall = now + self.wall_offset
        accepted = self.outbox.accepted.get(peer)
        if accepted is None:
            accepted = self.outbox.accepted[peer] = []
        tasks = self.tasks
        queues = self.queues
        depth = self.depth
        max_payload = self.max_payload_bytes
        strings = self._strings
        payloads = self._payloads
        journal = self.journal
        if len(strings) > MAX_INTERNED:
            strings.clear()  # a flood of distinct names must not grow this forever
        if len(payloads) > MAX_INTERNED:
            payloads.clear()  # nor one of distinct small arguments
        added = 0
        lane_queue: str | None = None  # the queue and priority the last task went to
        lane_priority = lane_added = 0
        lane: deque[Task] = deque()
        for spec in specs:
            tid = spec.id
            existing = tasks.get(tid)
            if existing is not None:
                # A resubmission of an id we hold (client retry): a no-op that answers as
                # the first submission did, and makes sure this peer hears the outcome.
                accepted.append(tid)
                self._add_watcher(existing, peer)
                continue
            name, queue, priority = spec.name, spec.queue, spec.priority
            opts = spec.opts
            # One cheap test on the hot path; the detailed one only when it fails.
            if (self.draining or len(spec.payload) > max_payload or ":" not in name or not queue
                    or not 0 <= priority <= MAX_PRIORITY or not 0 < len(tid) <= MAX_ID_LENGTH):
                self._reject(peer, tid, *self._validate(spec))
                continue
            # Every task of a batch decodes its own copy of the same name and queue
            # strings; keeping one copy of each saves ~120 bytes per queued task.
            name = strings.setdefault(name, name)
            queue = strings.setdefault(queue, queue)
            if opts is not None:
                self._submit_with_options(peer, spec, name, queue, opts, now, accepted)
                continue
            payload = spec.payload
            if len(payload) <= SHARED_PAYLOAD_BYTES:
                payload = payloads.setdefault(payload, payload)
            task = Task(tid, name, payload, queue, priority, QUEUED, wall, watchers=peer)
            tasks[tid] = task
            if journal is not None:
                journal.changed[tid] = task
            # A batch is usually one queue and one priority: find its lane once.
            if queue is not lane_queue or priority != lane_priority:
                if lane_queue is not None:
                    depth[lane_queue] += lane_added
                lane_queue, lane_priority, lane_added = queue, priority, 0
                lane = (queues.get(queue) or self._new_queue(queue)).lane(priority)
            lane.append(task)
            lane_added += 1
            accepted.append(tid)
            added += 1
        if lane_queue is not None:
            depth[lane_queue] += lane_added
        self.queued += added
        self.submitted_total += added

    def _submit_with_options(self, peer: bytes, spec: p.TaskSpec, name: str, queue: str,
                             opts: p.Options, now: float, accepted: list[str]) -> None:
        """The submit path of a task with lifecycle options (its own accounting)."""
        tid = spec.id
        problem = broker_check(opts)
        if problem:
            self._reject(peer, tid, "bad_option", problem)
            return
        tasks = self.tasks
        if opts.key is not None:
            first = tasks.get(self.keys.get(opts.key, ""))
            if first is not None:
                # Idempotent resubmission: answer with the first task and watch it.
                accepted.append(tid)
                self.outbox.aliases.setdefault(peer, {})[tid] = first.id
                self._add_watcher(first, peer)
                return
        deps = opts.depends_on
        if deps:
            for d in deps:
                if d not in tasks:
                    self._reject(peer, tid, "bad_option", f"depends_on: no task {d!r} on this "
                                 "broker (never submitted, not yet acknowledged, or purged)")
                    return
        wall = now + self.wall_offset
        task = Task(tid, name, spec.payload, queue, spec.priority, PENDING, wall, watchers=peer,
                    opts=opts)
        tasks[tid] = task
        self._touch(task)
        accepted.append(tid)
        self.submitted_total += 1
        if opts.key is not None:
            self.keys[opts.key] = tid
        if opts.expires_at:
            if opts.expires_at <= wall:
                self._finish(task, EXPIRED, now, error="Expired: its deadline had passed "
                             "when it was submitted")
                return
            heapq.heappush(self.expiries, (opts.expires_at - self.wall_offset, tid))
        if deps:
            waiting = 0
            for i, d in enumerate(deps):
                dep = tasks[d]
                if dep.state is SUCCEEDED:
                    if i == 0 and opts.pipe:
                        self.piped[tid] = dep.value
                elif dep.state in p.FINAL_STATES:
                    self._finish(task, CANCELLED, now, error=self._dependency_error(dep))
                    return
                else:
                    waiting += 1
                    self.dependents.setdefault(d, []).append(tid)
            if waiting:
                self.waiting[tid] = waiting
                return
        self._release(task, now)
        return

    @staticmethod
    def _dependency_error(dep: Task) -> str:
        """Why a dependent is cancelled; down a graph, every task names the root cause."""
        if dep.error and dep.error.startswith("DependencyFailed:"):
            return dep.error
        why = f": {dep.error}" if dep.error else ""
        return f"DependencyFailed: dependency {dep.id} ({dep.name}) ended {dep.state}{why}"

    def _release(self, task: Task, now: float) -> None:
        """A task free to go: scheduled if its time has not come, else queued."""
        opts = task.opts
        if opts is not None and opts.not_before > now + self.wall_offset:
            self._schedule(task, opts.not_before)
        else:
            self._queue(task)

    def _schedule(self, task: Task, due: float) -> None:
        self._touch(task)
        task.state = SCHEDULED
        self.scheduled[task.id] = due
        self._to_schedule.append(p.Timer(task.id, due))

    def _queue(self, task: Task) -> None:
        self._touch(task)
        task.state = QUEUED
        (self.queues.get(task.queue) or self._new_queue(task.queue)).push(task)
        self.depth[task.queue] += 1
        self.queued += 1

    def _validate(self, spec: p.TaskSpec) -> tuple[str, str]:
        if self.draining:
            return "draining", "the broker is shutting down and takes no new work"
        if not spec.id or len(spec.id) > MAX_ID_LENGTH:
            return "bad_option", f"task id must be 1..{MAX_ID_LENGTH} characters"
        if len(spec.payload) > self.max_payload_bytes:
            return ("too_large", f"payload of {len(spec.payload)} bytes is over the "
                    f"{self.max_payload_bytes}-byte limit")
        if ":" not in spec.name:
            return "bad_option", f"task name {spec.name!r} is not of the form 'module:function'"
        if not spec.queue:
            return "bad_option", "queue must be a non-empty string"
        return "bad_option", f"priority {spec.priority} is outside 0..{MAX_PRIORITY}"

    def _touch(self, task: Task) -> None:
        """Note a changed task for the next group commit (durable stores only)."""
        if self.journal is not None:
            self.journal.changed[task.id] = task

    def _new_queue(self, name: str) -> TaskQueue[Task]:
        q = self.queues[name] = TaskQueue(_is_queued)
        self.depth.setdefault(name, 0)
        return q

    def _requeue(self, task: Task) -> None:
        """Put a leased task back at the front of its priority: it was there first."""
        q = self.queues.get(task.queue) or self._new_queue(task.queue)
        self._touch(task)
        task.state = QUEUED
        if task.run is not None:
            task.run.worker = None  # the token stays: see _results
        q.push_front(task)
        self.depth[task.queue] += 1
        self.queued += 1

    def _unqueue(self, task: Task) -> None:
        """Account for a queued task leaving the queue other than by pop (lazy removal)."""
        self.depth[task.queue] -= 1
        self.queued -= 1

    def _add_watcher(self, task: Task, peer: bytes) -> None:
        if task.state in p.FINAL_STATES:
            self.outbox.outcomes.setdefault(peer, []).append(self._outcome(task))
        elif task.watchers is None:
            task.watchers = peer
        elif isinstance(task.watchers, bytes):
            if task.watchers != peer:
                task.watchers = [task.watchers, peer]
        elif peer not in task.watchers:
            task.watchers.append(peer)

    def _watch(self, peer: bytes, ids: list[str]) -> None:
        for tid in ids:
            task = self.tasks.get(tid)
            if task is None:
                out = p.Outcome(tid, "unknown", error=f"no task {tid!r} on this broker")
                self.outbox.outcomes.setdefault(peer, []).append(out)
            else:
                self._add_watcher(task, peer)

    def _cancel(self, tid: str, now: float) -> bool:
        task = self.tasks.get(tid)
        if task is None or task.state in p.FINAL_STATES:
            return False
        if task.state is RUNNING:
            # The worker stops it: async tasks are cancelled in place; a plain function
            # cannot be, so its worker asks to be killed (Stuck). Its lease stays held
            # until the worker reports or dies.
            if task.worker in self.workers:
                self.outbox.to_workers.append((task.worker, p.Stop([tid])))
        else:
            self._leave_waiting(task)
        self._finish(task, CANCELLED, now, error="Cancelled: cancelled by a client")
        return True

    def _leave_waiting(self, task: Task) -> None:
        """Take a task that has not started out of whatever holds it."""
        state = task.state
        if state is QUEUED:
            self._unqueue(task)
        elif state is SCHEDULED:
            self.scheduled.pop(task.id, None)
        elif state is PENDING:
            self.waiting.pop(task.id, None)

    def _requeue_dead(self, tid: str, now: float) -> bool:
        task = self.tasks.get(tid)
        if task is None or task.state is not DEAD:
            return False
        self.dead.pop(tid, None)
        self.retry_base[tid] = task.attempts  # a fresh retry budget
        if task.run is not None:
            run = task.run
            run.value = run.error = run.traceback = None
            run.finished_at = 0.0
        self._queue(task)
        return True

    @staticmethod
    def _outcome(task: Task) -> p.Outcome:
        return p.Outcome(task.id, task.state, task.value, task.error, task.traceback)

    def _info(self, task: Task | None) -> p.TaskInfo | None:
        if task is None:
            return None
        w = self.workers.get(task.worker) if task.worker else None
        prog = self.progress.get(task.id) if self.progress else None
        return p.TaskInfo(
            id=task.id, name=task.name, queue=task.queue, priority=task.priority,
            state=task.state, attempts=task.attempts,
            worker=w.name if w else (task.worker.decode(errors="replace") if task.worker else None),
            submitted_at=task.submitted_at, started_at=task.started_at,
            finished_at=task.finished_at, error=task.error,
            scheduled_for=self.scheduled.get(task.id, 0.0),
            progress=prog[0] if prog else None, progress_info=prog[1] if prog else None,
            retries=task.opts.retries if task.opts else 0,
            depends_on=task.opts.depends_on if task.opts else None,
        )

    def _finish(self, task: Task, state: TaskState, now: float, *, value: bytes | None = None,
                error: str | None = None, traceback: str | None = None,
                cascade: bool = True) -> None:
        self._touch(task)
        task.state = state
        run = task.attempt()
        run.finished_at = now + self.wall_offset
        run.value = value
        run.error = error
        run.traceback = traceback
        # (success never comes here: _results handles it inline, the hot path)
        self.finished_total[state] = self.finished_total.get(state, 0) + 1
        self._finished.append((now + self.result_ttl_s, task.id))
        if state is DEAD:
            self.dead[task.id] = None
        watchers = task.watchers
        if watchers:
            outcome = self._outcome(task)
            outcomes = self.outbox.outcomes
            for peer in ((watchers,) if isinstance(watchers, bytes) else watchers):
                lst = outcomes.get(peer)
                if lst is None:
                    outcomes[peer] = [outcome]
                else:
                    lst.append(outcome)
            task.watchers = None
        if cascade and self.dependents:
            self._settle_dependents(task, now)

    def _settle_dependents(self, task: Task, now: float) -> None:
        """A task ended: release what waited on it, or cancel it (and so on down)."""
        work = [task]
        tasks, waiting, dependents = self.tasks, self.waiting, self.dependents
        while work:
            done = work.pop()
            ids = dependents.pop(done.id, None)
            if not ids:
                continue
            ok = done.state is SUCCEEDED
            for did in ids:
                d = tasks.get(did)
                if d is None or d.state is not PENDING or did not in waiting:
                    continue
                if ok:
                    if d.opts.pipe and d.opts.depends_on[0] == done.id:
                        self.piped[did] = done.value
                    left = waiting[did] - 1
                    if left:
                        waiting[did] = left
                    else:
                        del waiting[did]
                        self._release(d, now)
                else:
                    del waiting[did]
                    # cascade=False: this loop carries it on, without recursion however
                    # long the chain.
                    self._finish(d, CANCELLED, now, error=self._dependency_error(done),
                                 cascade=False)
                    work.append(d)

    def _attempt_failed(self, task: Task, error: str | None, traceback: str | None,
                        retryable: bool, now: float) -> None:
        """Retry with back-off while the task's retries last, else it is dead."""
        opts = task.opts
        runs = task.attempts - self.retry_base.get(task.id, 0)
        run = task.attempt()
        run.worker = None
        if opts is not None and retryable and runs <= opts.retries:
            run.error, run.traceback = error, traceback
            delay = retry_delay(opts.backoff, opts.max_backoff, runs, self.rand)
            self.retries_total += 1
            self._schedule(task, now + self.wall_offset + delay)
            return
        self._finish(task, DEAD, now, error=error, traceback=traceback)

    # ---- workers and supervisors ---------------------------------------------------

    def on_worker(self, peer: bytes, msg: object, now: float) -> None:
        worker = self.workers.get(peer)
        if worker is not None:
            worker.last_seen = now
        match msg:
            case p.Report(results=results, credit=extra, progress=progress):
                if progress:
                    self._progress(progress)
                self._results(peer, worker, results, now)
                if worker is not None:
                    self._add_credit(worker, len(results) + extra)
                else:
                    self.outbox.to_workers.append((peer, _UNKNOWN_PEER))
            case p.Heartbeat():
                if worker is None:
                    sup = self.supervisors.get(peer)
                    if sup is not None:
                        sup.last_seen = now
                    elif peer == self.scheduler:
                        self.scheduler_seen = now
                    else:
                        self.outbox.to_workers.append((peer, _UNKNOWN_PEER))
            case p.Due(ids=ids):
                self._due(peer, ids, now)
            case p.Fire(items=items):
                self._fire(peer, items, now)
            case p.Stuck(reason=reason):
                if worker is not None:
                    self._kill(worker, reason)
            case p.Hello() as hello:
                if self._version_ok(peer, hello, True):
                    self._hello(peer, hello, now)
            case p.Release(ids=ids):
                if worker is not None:
                    self._hand_back(worker, ids)
            case p.Goodbye(released=released):
                if worker is not None:
                    worker.draining = True
                    self.ready.pop(peer, None)
                    self._hand_back(worker, released)
            case p.WorkerExited(worker=name, exit_code=code, restarted=restarted):
                sup = self.supervisors.get(peer)
                pool = sup.pool if sup else "?"
                if restarted:
                    self.worker_restarts[pool] = self.worker_restarts.get(pool, 0) + 1
                gone = self.workers.get(name.encode())
                if gone is not None:
                    level = logging.INFO if code == 0 and not gone.leased else logging.WARNING
                    log.log(level, "worker %s exited with code %s; requeueing %d task(s)",
                            name, code, len(gone.leased))
                    self._drop_worker(gone, now)
            case p.PoolFailed(reason=reason):
                sup = self.supervisors.get(peer)
                if sup is not None:
                    sup.failed = reason
                log.error("pool %s failed: %s", sup.pool if sup else "?", reason)

    def _hand_back(self, worker: Worker, ids: list[str]) -> None:
        """Leases a worker never started go back to the front of their queues, in the
        order they were (each goes in front of the one after it)."""
        peer = worker.ident
        for tid in reversed(ids):
            task = worker.leased.pop(tid, None)
            if task is not None and task.state is RUNNING and task.worker == peer:
                task.run.attempts -= 1  # never started: not an attempt
                self._requeue(task)

    def _hello(self, peer: bytes, hello: p.Hello, now: float) -> None:
        if hello.role == "supervisor":
            self.supervisors[peer] = Supervisor(peer, hello.pool, now, host=hello.host)
        elif hello.role == "scheduler":
            self._scheduler_hello(peer, now)
            return
        elif hello.role == "worker":
            worker = self.workers.get(peer)
            if worker is not None:
                # It lost touch with us but kept its leases; trust its fresh credit count.
                worker.credit = max(0, hello.credit)
                worker.draining = False
                if worker.credit:
                    self.ready[peer] = None
            else:
                worker = self.workers[peer] = Worker(peer, hello, now)
                if worker.credit:
                    self.ready[peer] = None
            if hello.holding:
                self._adopt(worker, hello.holding, now)
            for name, rate in hello.rate_limits.items():
                lim = self.limits.get(name)
                if rate > 0 and (lim is None or lim.interval != 1.0 / rate):
                    self.limits[name] = Limiter(rate)
        else:
            self.outbox.to_workers.append(
                (peer, p.Error(code="bad_role", message=f"role {hello.role!r} does not "
                               "belong on the worker endpoint"))
            )
            return
        self.outbox.to_workers.append((peer, self.welcome()))

    def _adopt(self, worker: Worker, holding: list[p.Holding], now: float) -> None:
        """A worker registers holding leases, as after a restart of this broker from its
        database: a task recovered as running, or as queued (its lease was sent before
        the commit that would have recorded it), stays with the worker that has it
        instead of running a second time. A lease of a task that has since finished
        or runs elsewhere is left alone: its result will be stale."""
        adopted = 0
        wall = now + self.wall_offset
        for h in holding:
            task = self.tasks.get(h.id)
            if task is None:
                continue
            if task.state is RUNNING and h.id in self.unclaimed:
                del self.unclaimed[h.id]
                run = task.attempt()
            elif task.state is QUEUED:
                self._unqueue(task)  # its queue entry is skipped lazily
                task.state = RUNNING
                run = task.attempt()
                run.attempts += 1
                run.started_at = wall
            else:
                continue
            self._touch(task)
            run.token = h.token
            run.worker = worker.ident
            worker.leased[h.id] = task
            adopted += 1
        if adopted:
            log.info("worker %s registered holding %d task(s); they stay with it",
                     worker.name, adopted)

    def _add_credit(self, worker: Worker, n: int) -> None:
        if n <= 0:
            return
        worker.credit += n
        if not worker.draining and worker.ident not in self.ready:
            self.ready[worker.ident] = None

    def _results(self, peer: bytes, worker: Worker | None, results: list[p.Result],
                 now: float) -> None:
        # The hot path of every task: success is handled inline (the general _finish
        # costs a call and a dict update per task), counters are added once per batch.
        tasks = self.tasks
        workers = self.workers
        counts = self.duration_counts
        buckets = DURATION_BUCKETS_S
        outcomes = self.outbox.outcomes
        finished = self._finished
        expires = now + self.result_ttl_s
        wall = now + self.wall_offset
        journal = self.journal
        succeeded = 0
        duration_sum = 0.0
        # The reporting worker's own leases first: a small dict that stays in cache,
        # where the table of every task kept costs cache misses at a million entries.
        own = worker.leased.get if worker is not None else tasks.get
        shortest = buckets[0]
        in_shortest = 0
        last_client = None
        last_list: list[p.Outcome] = []
        Outcome = p.Outcome
        for r in results:
            task = own(r.id) or tasks.get(r.id)
            # Lease tokens, not timestamps or worker ids, decide whether a result is
            # current: a result from an attempt that was already requeued is stale,
            # unless nobody has leased the task again since (then the work is done).
            run = None if task is None else task.run
            if run is None or run.token != r.token:
                self.stale_results_total += 1
                continue
            wid = run.worker
            if wid is not None:
                holder = worker if worker is not None and worker.ident == wid else workers.get(wid)
                if holder is not None:
                    holder.leased.pop(task.id, None)
            state = task.state
            if state is QUEUED:
                self._unqueue(task)
            elif state is not RUNNING:
                self.stale_results_total += 1  # e.g. cancelled while it ran
                continue
            duration = r.duration_s
            if duration <= shortest:  # most tasks of a busy queue: no search
                in_shortest += 1
            else:
                counts[bisect.bisect_left(buckets, duration)] += 1
            duration_sum += duration
            if not r.ok:
                self._attempt_failed(task, r.error, r.traceback, r.retry, now)
                continue
            if journal is not None:
                journal.changed[task.id] = task
            task.state = SUCCEEDED
            run.finished_at = wall
            run.value = r.value
            task.payload = b""  # no retry can need it now; keeps finished tasks small
            succeeded += 1
            if task.opts is not None and task.opts.ignore_result:
                self._succeeded_ignored(task, now)
                continue
            finished.append((expires, task.id))
            watchers = task.watchers
            if watchers:
                outcome = Outcome(task.id, SUCCEEDED, r.value)
                if watchers.__class__ is bytes:  # one client, usually the last one's
                    if watchers != last_client:
                        last_client = watchers
                        last_list = outcomes.get(watchers)
                        if last_list is None:
                            last_list = outcomes[watchers] = []
                    last_list.append(outcome)
                else:
                    for client in watchers:
                        lst = outcomes.get(client)
                        if lst is None:
                            outcomes[client] = [outcome]
                        else:
                            lst.append(outcome)
                task.watchers = None
            if self.dependents:
                self._settle_dependents(task, now)
        counts[0] += in_shortest
        if succeeded:
            self.finished_total[SUCCEEDED] = self.finished_total.get(SUCCEEDED, 0) + succeeded
        self.duration_sum_s += duration_sum
        if worker is not None and not worker.leased:
            self.outbox.handoff = True

    def _succeeded_ignored(self, task: Task, now: float) -> None:
        """ignore_result: waiters learn it succeeded, dependents go on, nothing is kept."""
        watchers = task.watchers
        if watchers:
            outcome = p.Outcome(task.id, SUCCEEDED)
            for client in ((watchers,) if watchers.__class__ is bytes else watchers):
                self.outbox.outcomes.setdefault(client, []).append(outcome)
            task.watchers = None
        if self.dependents:
            self._settle_dependents(task, now)
        self._forget(task)

    def _forget(self, task: Task) -> None:
        """Drop a task and everything kept about it."""
        tid = task.id
        self.tasks.pop(tid, None)
        self.dead.pop(tid, None)
        if self.journal is not None:
            self.journal.changed.pop(tid, None)
            self.journal.deleted.add(tid)
        if self.progress:
            self.progress.pop(tid, None)
        if self.retry_base:
            self.retry_base.pop(tid, None)
        if self.piped:
            self.piped.pop(tid, None)
        opts = task.opts
        if opts is not None and opts.key is not None and self.keys.get(opts.key) == tid:
            del self.keys[opts.key]

    def _progress(self, items: list[p.Progress]) -> None:
        for pr in items:
            task = self.tasks.get(pr.id)
            if task is not None and task.token == pr.token and task.state is RUNNING:
                self.progress[pr.id] = (pr.fraction, pr.info)

    def _kill(self, worker: Worker, reason: str) -> None:
        """A worker running a plain function it cannot stop: its supervisor replaces it.
        It takes no new work meanwhile; its other leases are requeued when it exits."""
        worker.draining = True
        self.ready.pop(worker.ident, None)
        kill = p.Kill(worker=worker.name, reason=reason, grace=self.kill_grace_s)
        for sup in self.supervisors.values():
            if sup.pool == worker.pool and sup.host == worker.host and not sup.failed:
                self.outbox.to_workers.append((sup.ident, kill))

    # ---- the scheduler and cron ----------------------------------------------------

    def _scheduler_hello(self, peer: bytes, now: float) -> None:
        """A (re)started scheduler gets everything it must hold: it keeps nothing we lack."""
        self.scheduler = peer
        self.scheduler_seen = now
        out = self.outbox.to_workers
        out.append((peer, self.welcome()))
        timers = [p.Timer(tid, due) for tid, due in self.scheduled.items()]
        out.append((peer, p.Schedule(timers[:SCHEDULE_CHUNK], reset=True)))
        for i in range(SCHEDULE_CHUNK, len(timers), SCHEDULE_CHUNK):
            out.append((peer, p.Schedule(timers[i:i + SCHEDULE_CHUNK])))
        self._to_schedule = []
        out.append((peer, p.Crons(list(self.crons.values()))))

    def _due(self, peer: bytes, ids: list[str], now: float) -> None:
        wall = now + self.wall_offset
        for tid in ids:
            due = self.scheduled.get(tid)
            if due is None or due > wall + EARLY_TOLERANCE_S:
                continue  # cancelled, or rescheduled since (a stale timer)
            task = self.tasks.get(tid)
            del self.scheduled[tid]
            if task is not None and task.state is SCHEDULED:
                self._queue(task)

    def _crons_changed(self) -> None:
        if self.journal is not None:
            self.journal.crons = self.crons

    def _send_crons(self) -> None:
        if self.scheduler is not None:
            self.outbox.to_workers.append((self.scheduler, p.Crons(list(self.crons.values()))))

    def _add_cron(self, peer: bytes, req: int, entry: p.CronEntry, now: float) -> None:
        problem = crons.check_entry(entry.name, entry.schedule, entry.task, entry.queue,
                                    entry.priority)
        if problem is None and len(entry.payload) > self.max_payload_bytes:
            problem = f"cron arguments of {len(entry.payload)} bytes are over the limit"
        if problem is not None:
            self.outbox.to_clients.append((peer, p.Error("bad_option", problem, req)))
            return
        # Due times from now on: a replaced entry does not fire for its past.
        self.crons[entry.name] = msgspec.structs.replace(entry, last_fired=0.0,
                                                         since=now + self.wall_offset)
        self._send_crons()
        self._crons_changed()
        self.outbox.to_clients.append((peer, p.Done(req=req, ok=[True])))

    def _fire(self, peer: bytes, items: list[p.Firing], now: float) -> None:
        """Cron due times: each creates one task, once, whoever says it and how often."""
        wall = now + self.wall_offset
        for f in items:
            entry = self.crons.get(f.name)
            if entry is None or f.at <= entry.last_fired or f.at <= entry.since:
                continue
            self.crons[f.name] = msgspec.structs.replace(entry, last_fired=f.at)
            self._crons_changed()
            if self.draining:
                continue
            tid = f"{int(f.at * 1000):011x}-cron-{f.name}"
            if tid in self.tasks:
                continue
            name = self._strings.setdefault(entry.task, entry.task)
            task = Task(tid, name, entry.payload, entry.queue, entry.priority, QUEUED, wall)
            self.tasks[tid] = task
            self._touch(task)
            self._queue(task)
            self.submitted_total += 1
            self.cron_fired_total += 1
            log.info("cron %s fired for %.0f: task %s", f.name, f.at, tid)

    def _expire(self, now: float) -> None:
        heap = self.expiries
        while heap and heap[0][0] <= now:
            _, tid = heapq.heappop(heap)
            task = self.tasks.get(tid)
            if task is not None and task.state in NOT_STARTED:
                self._leave_waiting(task)
                self._finish(task, EXPIRED, now, error="Expired: not started before its "
                             "deadline")

    def _drop_worker(self, worker: Worker, now: float) -> None:
        """Forget a worker and requeue every lease it held, at the front of its priority."""
        self.workers.pop(worker.ident, None)
        self.ready.pop(worker.ident, None)
        for task in worker.leased.values():
            if task.state is not RUNNING or task.worker != worker.ident:
                continue
            if task.attempts >= self.max_deliveries:
                # A task that takes its worker down every time would otherwise crash-loop
                # the pool until the supervisor gives up on it.
                self._finish(task, DEAD, now, error=(
                    f"WorkerLost: the worker running this task was lost {task.attempts} "
                    f"time(s) (last: {worker.name}); giving up"))
            else:
                self._requeue(task)
        worker.leased.clear()

    def peer_unreachable(self, peer: bytes, now: float) -> None:
        """A send to this worker failed (ROUTER_MANDATORY): treat it as dead."""
        worker = self.workers.get(peer)
        if worker is not None:
            level = logging.INFO if worker.draining and not worker.leased else logging.WARNING
            log.log(level, "worker %s is unreachable; requeueing %d task(s)",
                    worker.name, len(worker.leased))
            self._drop_worker(worker, now)
        sup = self.supervisors.get(peer)
        if sup is not None and not sup.failed:
            del self.supervisors[peer]  # a failed pool stays listed: operators need to see it
        if peer == self.scheduler:
            self.scheduler = None

    # ---- dispatch and time ---------------------------------------------------------

    def dispatch(self, now: float) -> None:
        """Hand queued tasks to workers with credit, round-robin, highest priority first."""
        if not self.queued or not self.ready:
            return
        wall = now + self.wall_offset
        workers = self.workers
        ready = self.ready
        out = self.outbox.dispatch
        limits = self.limits
        journal = self.journal
        if self.held:
            self._release_held(now)
        piped = self.piped
        new_leases = self._new_leases
        Lease = p.Lease
        token = self._next_token
        while True:
            # Each ready worker takes at most its share of what is queued, so a few tasks
            # spread over idle workers instead of filling the first one's prefetch; a
            # second pass hands out what a worker short of credit or queues left.
            share = -(-self.queued // len(ready))
            progressed = False
            for ident in list(ready):
                w = workers[ident]
                leases = None
                leased = w.leased
                was_idle = not leased
                want = min(w.credit, share)
                while want > 0:
                    batch = self._pop_for(w, want)
                    if not batch:
                        break
                    taken = 0
                    for task in batch:
                        if limits and task.name in limits:
                            lim = limits[task.name]
                            if not lim.allows(now):
                                self._hold(task)
                                continue
                            lim.take(now)
                        token += 1
                        if journal is not None:
                            new_leases.append(task)  # journaled late: see journal_leases
                        task.state = RUNNING
                        run = task.run
                        if run is None:
                            task.run = run = Attempt(token, ident, wall, 1)
                        else:
                            run.token, run.worker, run.started_at = token, ident, wall
                            run.attempts += 1
                        tid = task.id
                        leased[tid] = task
                        taken += 1
                        if leases is None:
                            leases = out.get(ident)
                            if leases is None:
                                leases = out[ident] = []
                        opts = task.opts
                        if opts is None:
                            leases.append(Lease(tid, task.name, task.payload, token,
                                                run.attempts))
                        else:
                            leases.append(Lease(tid, task.name, task.payload, token,
                                                run.attempts, opts.timeout or None,
                                                opts.retry_on,
                                                piped.get(tid) if opts.pipe else None))
                    w.credit -= taken
                    want -= taken
                    progressed = progressed or taken > 0
                    self._next_token = token
                if was_idle and leases:
                    self.outbox.handoff = True
                del ready[ident]
                if w.credit > 0:
                    ready[ident] = None  # to the back of the round
                if not self.queued:
                    return
            if not progressed or not ready:
                return

    def _hold(self, task: Task) -> None:
        """Set aside a task whose name is over its rate limit; it stays queued (and
        counted) and goes back to the front of its queue when the limit allows."""
        held = self.held.get(task.name)
        if held is None:
            held = self.held[task.name] = deque()
        held.append(task)
        self.depth[task.queue] += 1
        self.queued += 1

    def _release_held(self, now: float) -> None:
        for name, held in list(self.held.items()):
            lim = self.limits[name]
            if lim.allows(now) and lim.released_for != lim.next_at:
                while held:
                    task = held.popleft()
                    if task.state is QUEUED:  # else cancelled or expired meanwhile
                        lim.released_for = lim.next_at
                        self.queues[task.queue].push_front(task)
                        break
            if not held:
                del self.held[name]

    def _pop_for(self, w: Worker, n: int) -> list[Task]:
        """Up to `n` tasks for `w`: from its one queue, or the best head among its
        queues (a task at a time, so priorities across queues are honoured)."""
        queues = self.queues
        if len(w.queues) == 1:
            q = queues.get(w.queues[0])
            if q is None:
                return []
            tasks = q.pop_many(n)
            if tasks:
                self.depth[tasks[0].queue] -= len(tasks)
                self.queued -= len(tasks)
            return tasks
        best = None
        best_prio = -1
        for name in w.queues:
            q = queues.get(name)
            if q is None:
                continue
            prio = q.peek_priority()
            if prio is not None and prio > best_prio:
                best, best_prio = q, prio
        task = best.pop() if best is not None else None
        if task is None:
            return []
        self.depth[task.queue] -= 1
        self.queued -= 1
        return [task]

    def tick(self, now: float) -> None:
        """Deadlines, heartbeats, liveness and purging: cheap enough for every loop turn."""
        if self.expiries and self.expiries[0][0] <= now:
            self._expire(now)
        finished = self._finished
        if finished and finished[0][0] <= now:
            # A bounded batch a turn (next_deadline brings the next turn at once while
            # more are due): a million expiring together never stall the loop, and the
            # purge keeps up with any rate of finishing tasks.
            self._purge(now)
        if now < self._next_beat:
            return
        self._next_beat = now + self.heartbeat_interval_s
        if self.unclaimed and now >= self.unclaimed_until:
            self._release_unclaimed()
        beat = p.Beat(instance=self.instance)
        deadline = now - self.liveness_s
        for worker in list(self.workers.values()):
            if worker.last_seen < deadline:
                log.warning("worker %s missed %.1f s of heartbeats; requeueing %d task(s)",
                            worker.name, now - worker.last_seen, len(worker.leased))
                self._drop_worker(worker, now)
            else:
                self.outbox.to_workers.append((worker.ident, beat))
        if self.scheduler is not None:
            if self.scheduler_seen < deadline:
                log.warning("the scheduler missed %.1f s of heartbeats; waiting for it to "
                            "say hello again", now - self.scheduler_seen)
                self.scheduler = None
            else:
                self.outbox.to_workers.append((self.scheduler, beat))
        forget = now - self.liveness_s * SUPERVISOR_FORGET_LIVENESSES
        for sup in list(self.supervisors.values()):
            if sup.failed:
                continue
            if sup.last_seen < forget:
                del self.supervisors[sup.ident]
            else:
                self.outbox.to_workers.append((sup.ident, beat))

    def _purge(self, now: float) -> None:
        finished = self._finished
        tasks = self.tasks
        for _ in range(PURGE_BATCH):
            if not finished or finished[0][0] > now:
                return
            _, tid = finished.popleft()
            task = tasks.get(tid)
            if task is not None and task.state in p.FINAL_STATES:
                if task.opts is None and not self.progress and self.journal is None:
                    del tasks[tid]
                else:
                    self._forget(task)

    def next_deadline(self) -> float:
        """When the loop must wake even if no message comes."""
        at = self._next_beat
        if self.expiries:
            at = min(at, self.expiries[0][0])
        if self._finished:
            at = min(at, self._finished[0][0])
        for name in self.held:
            at = min(at, self.limits[name].next_at)
        return at

    # ---- recovery ------------------------------------------------------------------

    def journal_leases(self) -> bool:
        """Journal the leases of the generation before last that are still running, and
        start a new generation; call as each commit is about to start. True if leases
        wait for a later call.

        A lease is written one commit late because most tasks end before then, and
        their end is written anyway: writing the lease too was a third row for every
        task. What a crash inside that window costs is the count of an attempt that
        began moments before it (the task itself is kept, and its worker, if alive,
        claims it)."""
        old = self._old_leases
        if old:
            changed = self.journal.changed
            for task in old:
                if task.state is RUNNING:
                    changed[task.id] = task
        self._old_leases, self._new_leases = self._new_leases, []
        return bool(self._old_leases)

    def _release_unclaimed(self) -> None:
        """Recovered running tasks no worker said it holds: they run again."""
        n = 0
        for tid in self.unclaimed:
            task = self.tasks.get(tid)
            if task is not None and task.state is RUNNING and task.worker is None:
                self._queue(task)
                n += 1
        self.unclaimed.clear()
        if n:
            log.info("%d task(s) that were running when the broker stopped were not claimed "
                     "by any worker; queued again", n)

    def recover(self, rows: list[StoredTask], stored_crons: list[p.CronEntry], now: float) -> None:
        """Rebuild from a durable store: queued, scheduled and pending tasks as they were;
        running ones set aside for their workers to claim (see _adopt), queued again
        with their attempt counted if none does; finished ones kept until their TTL.
        Call before any message is handled."""
        wall = now + self.wall_offset
        # Lease tokens continue from the clock, so a late result of a lease the old
        # broker handed out can never match one this broker hands out.
        self._next_token = max(self._next_token, int(wall * 1_000_000))
        strings = self._strings
        finished: list[tuple[float, str]] = []
        pending: list[Task] = []
        for tid, stored_state, r in rows:
            state = _STATE_OF[stored_state]
            name = strings.setdefault(r.name, r.name)
            queue = strings.setdefault(r.queue, r.queue)
            run = None
            if (r.attempts or r.started_at or r.finished_at or r.value is not None
                    or r.error is not None):
                run = Attempt(r.token, None, r.started_at, r.attempts, r.finished_at, r.value,
                              r.error, r.traceback)
            task = Task(tid, name, r.payload, queue, r.priority, state, r.submitted_at, None,
                        r.opts, run)
            self.tasks[tid] = task
            opts = r.opts
            if opts is not None and opts.key is not None:
                self.keys[opts.key] = tid
            if state in p.FINAL_STATES:
                finished.append((r.finished_at, tid))
                if state is DEAD:
                    self.dead[tid] = None
                continue
            if opts is not None and opts.expires_at:
                heapq.heappush(self.expiries, (opts.expires_at - self.wall_offset, tid))
            if state is RUNNING:
                self.unclaimed[tid] = None  # its worker may claim it (see _adopt)
            elif state is QUEUED:
                self._queue(task)
            elif state is SCHEDULED:
                self.scheduled[tid] = r.due if r.due is not None else wall
            else:
                pending.append(task)
        for task in pending:
            waiting = 0
            for d in task.opts.depends_on if task.opts and task.opts.depends_on else ():
                dep = self.tasks.get(d)
                if dep is None or dep.state in p.FINAL_STATES and dep.state is not SUCCEEDED:
                    waiting = -1
                    break
                if dep.state is not SUCCEEDED:
                    waiting += 1
                    self.dependents.setdefault(d, []).append(task.id)
                elif task.opts.pipe and d == task.opts.depends_on[0]:
                    self.piped[task.id] = dep.value
            if waiting < 0:
                self._finish(task, CANCELLED, now, error="DependencyFailed: a dependency "
                             "ended without success or was purged", cascade=False)
            elif waiting:
                self.waiting[task.id] = waiting
            else:
                self._release(task, now)
        for finished_at, tid in sorted(finished):
            self._finished.append((finished_at - self.wall_offset + self.result_ttl_s, tid))
        for entry in stored_crons:
            # Config entries keep their (maybe edited) definition; every entry keeps its
            # last fired time, and counts due times from now: runs missed while the
            # node was down are skipped.
            base = self.crons.get(entry.name, entry)
            self.crons[entry.name] = msgspec.structs.replace(
                base, last_fired=entry.last_fired, since=wall)
        if self.unclaimed:
            # Workers that kept running say hello within a liveness period of reaching
            # this broker, and reach it within their reconnect back-off of it binding
            # (it binds before recovering); their tasks are theirs to claim until then.
            self.unclaimed_until = now + self.claim_window_s
        log.info("recovered %d task(s): %d queued, %d scheduled, %d pending, %d running "
                 "(for their workers to claim), %d finished", len(rows), self.queued,
                 len(self.scheduled), len(self.waiting), len(self.unclaimed), len(finished))

    # ---- observation ---------------------------------------------------------------

    def stats(self, now: float) -> p.Stats:
        alive: dict[str, int] = {}
        running = 0
        for w in self.workers.values():
            alive[w.pool] = alive.get(w.pool, 0) + 1
            running += len(w.leased)
        sups = {}
        for s in self.supervisors.values():
            if s.failed:
                sups[s.pool] = "failed"
            elif now - s.last_seen <= self.liveness_s:
                sups[s.pool] = "up"
            else:
                sups.setdefault(s.pool, "lost")
        return p.Stats(
            instance=self.instance,
            uptime_s=now - self.started,
            submitted_total=self.submitted_total,
            finished_total={str(k): v for k, v in self.finished_total.items()},
            queue_depth=dict(self.depth),
            running=running,
            workers_alive=alive,
            worker_restarts=dict(self.worker_restarts),
            supervisors=sups,
            duration_buckets=list(DURATION_BUCKETS_S),
            duration_counts=list(self.duration_counts),
            duration_sum_s=self.duration_sum_s,
            bad_frames_total=self.bad_frames_total,
            stale_results_total=self.stale_results_total,
            rejected_total=self.rejected_total,
            draining=self.draining,
            scheduled=len(self.scheduled),
            pending=len(self.waiting),
            dead=len(self.dead),
            retries_total=self.retries_total,
            cron_fired_total=self.cron_fired_total,
        )


_UNKNOWN_PEER = p.Error(code="unknown_peer", message="say hello first")
