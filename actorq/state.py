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
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field

import msgspec

from . import protocol as p
from .protocol import TaskState

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
MAX_PRIORITY = 255
SUPERVISOR_FORGET_LIVENESSES = 10  # a silent supervisor is forgotten after this many windows
PURGE_BATCH = 10_000
MAX_INTERNED = 10_000  # distinct task names and queue names kept as shared strings  # finished tasks purged per tick at most, so a purge never stalls the loop
DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0]

QUEUED = TaskState.QUEUED
RUNNING = TaskState.RUNNING
SUCCEEDED = TaskState.SUCCEEDED


class Task(msgspec.Struct, gc=False):
    """The broker's record of one task. Mutable; referred to by id everywhere else."""

    id: str
    name: str
    payload: bytes
    queue: str
    priority: int
    state: TaskState
    submitted_at: float
    attempts: int = 0
    token: int = 0  # lease token of the latest attempt
    worker: bytes | None = None  # routing id of the worker holding the lease
    started_at: float = 0.0
    finished_at: float = 0.0
    value: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    # Client routing ids to push the outcome to: one bare id (the usual case, and 72
    # bytes a task cheaper than a one-element list) or a list when several watch.
    watchers: bytes | list[bytes] | None = None


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


@dataclass
class Outbox:
    """What one loop turn decided to send, grouped so each peer gets one message per kind."""

    accepted: dict[bytes, list[str]] = field(default_factory=dict)
    rejected: dict[bytes, list[p.Rejection]] = field(default_factory=dict)
    outcomes: dict[bytes, list[p.Outcome]] = field(default_factory=dict)
    dispatch: dict[bytes, list[p.Lease]] = field(default_factory=dict)
    to_clients: list[tuple[bytes, object]] = field(default_factory=list)
    to_workers: list[tuple[bytes, object]] = field(default_factory=list)

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
        instance: str | None = None,
    ) -> None:
        self.instance = instance or secrets.token_hex(6)
        self.started = now
        self.wall_offset = wall_offset
        self.max_payload_bytes = max_payload_bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.liveness_s = heartbeat_interval_s * heartbeat_liveness
        self.result_ttl_s = result_ttl_s
        self.max_deliveries = max_deliveries
        self.draining = False

        self.tasks: dict[str, Task] = {}
        self._strings: dict[str, str] = {}
        self.queues: dict[str, TaskQueue[Task]] = {}
        self.depth: dict[str, int] = {}  # live queued tasks per queue
        self.queued = 0
        self.workers: dict[bytes, Worker] = {}
        self.ready: dict[bytes, None] = {}  # workers with credit, in round-robin order
        self.supervisors: dict[bytes, Supervisor] = {}
        self._finished: deque[tuple[float, str]] = deque()  # (expires_at, id) in finish order
        self._next_token = 0
        self._next_beat = now

        self.submitted_total = 0
        self.finished_total: dict[str, int] = {}
        self.rejected_total = 0
        self.bad_frames_total = 0
        self.stale_results_total = 0
        self.worker_restarts: dict[str, int] = {}
        self.duration_counts = [0] * (len(DURATION_BUCKETS_S) + 1)
        self.duration_sum_s = 0.0

        self.outbox = Outbox()

    # ---- plumbing ------------------------------------------------------------------

    def take_outbox(self) -> Outbox:
        out, self.outbox = self.outbox, Outbox()
        return out

    def welcome(self) -> p.Welcome:
        return p.Welcome(
            version=p.PROTOCOL_VERSION,
            instance=self.instance,
            max_payload_bytes=self.max_payload_bytes,
            heartbeat_interval_s=self.heartbeat_interval_s,
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
            case p.Submit(tasks=specs):
                self._submit(peer, specs, now)
            case p.Watch(ids=ids):
                self._watch(peer, ids)
            case p.Query(req=req, ids=ids):
                items = [self._info(self.tasks.get(i)) for i in ids]
                self.outbox.to_clients.append((peer, p.Infos(req=req, items=items)))
            case p.Cancel(req=req, ids=ids):
                done = [self._cancel(i, now) for i in ids]
                self.outbox.to_clients.append((peer, p.CancelReply(req=req, cancelled=done)))
            case p.GetStats(req=req):
                self.outbox.to_clients.append((peer, p.StatsReply(req=req, stats=self.stats(now))))
            case p.Ping():
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
        if len(strings) > MAX_INTERNED:
            strings.clear()  # a flood of distinct names must not grow this forever
        added = 0
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
            # One cheap test on the hot path; the detailed one only when it fails.
            if (self.draining or len(spec.payload) > max_payload or ":" not in name or not queue
                    or not 0 <= priority <= MAX_PRIORITY or not 0 < len(tid) <= MAX_ID_LENGTH):
                self._reject(peer, tid, *self._validate(spec))
                continue
            # Every task of a batch decodes its own copy of the same name and queue
            # strings; keeping one copy of each saves ~120 bytes per queued task.
            name = strings.setdefault(name, name)
            queue = strings.setdefault(queue, queue)
            task = Task(tid, name, spec.payload, queue, priority, QUEUED, wall, watchers=peer)
            tasks[tid] = task
            (queues.get(queue) or self._new_queue(queue)).push(task)
            depth[queue] += 1
            accepted.append(tid)
            added += 1
        self.queued += added
        self.submitted_total += added

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

    def _new_queue(self, name: str) -> TaskQueue[Task]:
        q = self.queues[name] = TaskQueue(_is_queued)
        self.depth.setdefault(name, 0)
        return q

    def _requeue(self, task: Task) -> None:
        """Put a leased task back at the front of its priority: it was there first."""
        q = self.queues.get(task.queue) or self._new_queue(task.queue)
        task.state = QUEUED
        task.worker = None
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
        if task is None or task.state is not QUEUED:
            return False
        self._unqueue(task)
        self._finish(task, TaskState.CANCELLED, now, error="cancelled by a client")
        return True

    @staticmethod
    def _outcome(task: Task) -> p.Outcome:
        return p.Outcome(task.id, task.state, task.value, task.error, task.traceback)

    def _info(self, task: Task | None) -> p.TaskInfo | None:
        if task is None:
            return None
        w = self.workers.get(task.worker) if task.worker else None
        return p.TaskInfo(
            id=task.id, name=task.name, queue=task.queue, priority=task.priority,
            state=task.state, attempts=task.attempts,
            worker=w.name if w else (task.worker.decode(errors="replace") if task.worker else None),
            submitted_at=task.submitted_at, started_at=task.started_at,
            finished_at=task.finished_at, error=task.error,
        )

    def _finish(self, task: Task, state: TaskState, now: float, *, value: bytes | None = None,
                error: str | None = None, traceback: str | None = None) -> None:
        task.state = state
        task.finished_at = now + self.wall_offset
        task.value = value
        task.error = error
        task.traceback = traceback
        # (success never comes here: _results handles it inline, the hot path)
        self.finished_total[state] = self.finished_total.get(state, 0) + 1
        self._finished.append((now + self.result_ttl_s, task.id))
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

    # ---- workers and supervisors ---------------------------------------------------

    def on_worker(self, peer: bytes, msg: object, now: float) -> None:
        worker = self.workers.get(peer)
        if worker is not None:
            worker.last_seen = now
        match msg:
            case p.Report(results=results, credit=extra):
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
                    else:
                        self.outbox.to_workers.append((peer, _UNKNOWN_PEER))
            case p.Hello() as hello:
                if self._version_ok(peer, hello, True):
                    self._hello(peer, hello, now)
            case p.Goodbye(released=released):
                if worker is not None:
                    worker.draining = True
                    self.ready.pop(peer, None)
                    for tid in released:
                        task = worker.leased.pop(tid, None)
                        if task is not None and task.state is RUNNING and task.worker == peer:
                            task.attempts -= 1  # never started: not an attempt
                            self._requeue(task)
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

    def _hello(self, peer: bytes, hello: p.Hello, now: float) -> None:
        if hello.role == "supervisor":
            self.supervisors[peer] = Supervisor(peer, hello.pool, now)
        elif hello.role == "worker":
            known = self.workers.get(peer)
            if known is not None:
                # It lost touch with us but kept its leases; trust its fresh credit count.
                known.credit = max(0, hello.credit)
                known.draining = False
                if known.credit:
                    self.ready[peer] = None
            else:
                worker = self.workers[peer] = Worker(peer, hello, now)
                if worker.credit:
                    self.ready[peer] = None
        else:
            self.outbox.to_workers.append(
                (peer, p.Error(code="bad_role", message=f"role {hello.role!r} does not "
                               "belong on the worker endpoint"))
            )
            return
        self.outbox.to_workers.append((peer, self.welcome()))

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
        succeeded = 0
        duration_sum = 0.0
        for r in results:
            task = tasks.get(r.id)
            # Lease tokens, not timestamps or worker ids, decide whether a result is
            # current: a result from an attempt that was already requeued is stale,
            # unless nobody has leased the task again since (then the work is done).
            if task is None or task.token != r.token:
                self.stale_results_total += 1
                continue
            state = task.state
            if state is QUEUED:
                self._unqueue(task)
            elif state is not RUNNING:
                self.stale_results_total += 1
                continue
            wid = task.worker
            if wid is not None:
                holder = worker if worker is not None and worker.ident == wid else workers.get(wid)
                if holder is not None:
                    holder.leased.pop(task.id, None)
            counts[bisect.bisect_left(buckets, r.duration_s)] += 1
            duration_sum += r.duration_s
            if not r.ok:
                self._finish(task, TaskState.FAILED, now, error=r.error, traceback=r.traceback)
                continue
            task.state = SUCCEEDED
            task.finished_at = wall
            task.value = r.value
            task.payload = b""  # no retry can need it now; keeps finished tasks small
            succeeded += 1
            finished.append((expires, task.id))
            watchers = task.watchers
            if watchers:
                outcome = p.Outcome(task.id, SUCCEEDED, r.value)
                for client in ((watchers,) if watchers.__class__ is bytes else watchers):
                    lst = outcomes.get(client)
                    if lst is None:
                        outcomes[client] = [outcome]
                    else:
                        lst.append(outcome)
                task.watchers = None
        if succeeded:
            self.finished_total[SUCCEEDED] = self.finished_total.get(SUCCEEDED, 0) + succeeded
        self.duration_sum_s += duration_sum

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
                self._finish(task, TaskState.FAILED, now, error=(
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

    # ---- dispatch and time ---------------------------------------------------------

    def dispatch(self, now: float) -> None:
        """Hand queued tasks to workers with credit, round-robin, highest priority first."""
        if not self.queued or not self.ready:
            return
        wall = now + self.wall_offset
        workers = self.workers
        ready = self.ready
        out = self.outbox.dispatch
        for ident in list(ready):
            w = workers[ident]
            leases = None
            while w.credit > 0:
                task = self._pop_for(w)
                if task is None:
                    break
                self._next_token += 1
                token = self._next_token
                task.state = RUNNING
                task.token = token
                task.attempts += 1
                task.worker = ident
                task.started_at = wall
                w.leased[task.id] = task
                w.credit -= 1
                if leases is None:
                    leases = out.get(ident)
                    if leases is None:
                        leases = out[ident] = []
                leases.append(p.Lease(task.id, task.name, task.payload, token, task.attempts))
            del ready[ident]
            if w.credit > 0:
                ready[ident] = None  # to the back of the round
            if not self.queued:
                break

    def _pop_for(self, w: Worker) -> Task | None:
        queues = self.queues
        if len(w.queues) == 1:
            q = queues.get(w.queues[0])
            if q is None:
                return None
            task = q.pop()
        else:
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
        if task is not None:
            self.depth[task.queue] -= 1
            self.queued -= 1
        return task

    def tick(self, now: float) -> None:
        """Heartbeats, liveness and purging: cheap enough to call every loop turn."""
        if now < self._next_beat:
            return
        self._next_beat = now + self.heartbeat_interval_s
        beat = p.Beat(instance=self.instance)
        deadline = now - self.liveness_s
        for worker in list(self.workers.values()):
            if worker.last_seen < deadline:
                log.warning("worker %s missed %.1f s of heartbeats; requeueing %d task(s)",
                            worker.name, now - worker.last_seen, len(worker.leased))
                self._drop_worker(worker, now)
            else:
                self.outbox.to_workers.append((worker.ident, beat))
        forget = now - self.liveness_s * SUPERVISOR_FORGET_LIVENESSES
        for sup in list(self.supervisors.values()):
            if sup.failed:
                continue
            if sup.last_seen < forget:
                del self.supervisors[sup.ident]
            else:
                self.outbox.to_workers.append((sup.ident, beat))
        self._purge(now)

    def _purge(self, now: float) -> None:
        finished = self._finished
        tasks = self.tasks
        for _ in range(PURGE_BATCH):
            if not finished or finished[0][0] > now:
                return
            _, tid = finished.popleft()
            task = tasks.get(tid)
            if task is not None and task.state in p.FINAL_STATES:
                del tasks[tid]

    def next_deadline(self) -> float:
        return self._next_beat

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
        )


_UNKNOWN_PEER = p.Error(code="unknown_peer", message="say hello first")
