"""BrokerState: the broker's whole logic as a pure object, composed of one part per concern.

The broker loop (broker/loop.py) feeds it decoded messages with the current
monotonic time and flushes what it collects in `outbox`. Nothing here touches a
socket, a clock or the filesystem, so every rule (credit, leases, stale results,
liveness) is a millisecond unit test.

The parts, one module each in this package:

    table.py       TaskTable    the tasks, named queues and depth, journal, purging
    intake.py      Intake       submissions, watchers, task info
    dispatch.py    Dispatch     credit, leases, results, rate-limit holding
    lifecycle.py   Lifecycle    delays, dependencies, retries, cancel, expiry, dead letters
    membership.py  Membership   workers, supervisors, the scheduler, liveness
    crons.py       Crons        cron entries and the scheduler's timers
    recovery.py    Recovery     loading from a store, workers' claims
    stats.py       Statistics   counters and the Stats snapshot
    queries.py     Queries      operators' listings and commands
    access.py      Access       task owners and client roles

Each part is a mixin that owns the attributes its `_init_*` sets and reads the
others' through `self`. They are composed by inheritance rather than held as
separate objects on purpose: a task on the hot path (submit, dispatch, result)
then reaches the task table, the outbox and the counters with the same one
attribute lookup as before the split, and calls no more functions.

Time: `now` is time.monotonic() of the broker process; user-facing timestamps
are unix time, derived from `now` with an offset fixed at start-up.
"""

from __future__ import annotations

import os
import random

from actorq.broker.state.access import Access
from actorq.broker.state.crons import Crons
from actorq.broker.state.dispatch import Dispatch
from actorq.broker.state.intake import Intake
from actorq.broker.state.lifecycle import Lifecycle
from actorq.broker.state.membership import UNKNOWN_PEER, Membership
from actorq.broker.state.outbox import Outbox
from actorq.broker.state.queries import BadRequest, Queries
from actorq.broker.state.recovery import Recovery
from actorq.broker.state.stats import Statistics
from actorq.broker.state.table import TaskTable
from actorq.wire import protocol as p


class BrokerState(Intake, Dispatch, Lifecycle, Membership, Crons, Recovery, Statistics,
                  Queries, Access, TaskTable):
    def __init__(
        self,
        *,
        now: float,
        wall_offset: float = 0.0,
        max_payload_bytes: int = 10 * 1024 * 1024,
        max_queued: int = 1_000_000,
        max_queued_bytes: int = 1 << 30,
        heartbeat_interval_s: float = 1.0,
        heartbeat_liveness: int = 3,
        result_ttl_s: float = 86400.0,
        max_deliveries: int = 5,
        kill_grace_s: float = 1.0,
        crons: list[p.CronEntry] | None = None,
        instance: str | None = None,
        seed: int | None = None,
        durable: bool = False,
        scheduler_secret: str = "",
        epoch: int = 0,
        leader: str = "",
    ) -> None:
        self.instance = instance or os.urandom(6).hex()  # not secrets: it loads OpenSSL (~4 MB)
        # Leadership of a shared store (storage/leadership.py): the epoch this broker
        # leads under and the name it holds the lease by; 0 and "" without one.
        self.epoch = epoch
        self.leader = leader
        self.started = now
        self.wall_offset = wall_offset
        self.max_payload_bytes = max_payload_bytes
        self.max_queued = max_queued  # unfinished tasks held at most (table.py: live)
        self.max_queued_bytes = max_queued_bytes  # ... and their arguments' bytes
        self.heartbeat_interval_s = heartbeat_interval_s
        self.liveness_s = heartbeat_interval_s * heartbeat_liveness
        # How long recovered running tasks wait for their workers to claim them (recover)
        self.claim_window_s = self.liveness_s + p.RECONNECT_MAX_MS / 1000
        self.result_ttl_s = result_ttl_s
        self.max_deliveries = max_deliveries
        self.kill_grace_s = kill_grace_s
        self.draining = False
        self.storage_full = False  # the disk was full at the last commit: refuse new work
        self.rand = random.Random(seed)
        self.outbox = Outbox()
        self._init_table(durable)
        self._init_dispatch()
        self._init_lifecycle()
        self._init_membership(now, scheduler_secret)
        self._init_crons(crons or [], now + wall_offset)
        self._init_recovery()
        self._init_stats(now)
        self._init_queries()
        self._init_access()

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
            epoch=self.epoch,
        )

    def bad_frame(self, peer: bytes, from_worker: bool, reason: str) -> None:
        """An undecodable or oversized frame: answer it, count it, carry on."""
        self.bad_frames_total += 1
        reply = p.Error(code="bad_frame", message=reason)
        (self.outbox.to_workers if from_worker else self.outbox.to_clients).append((peer, reply))

    def _version_ok(self, peer: bytes, hello: p.Hello, from_worker: bool, now: float) -> bool:
        if hello.version == p.PROTOCOL_VERSION:
            return True
        self.bad_frames_total += 1
        reply = p.Error(
            code="protocol_version",
            message=f"protocol version {hello.version} is not supported; "
            f"this broker speaks version {p.PROTOCOL_VERSION}",
        )
        self._complain(peer, now, f"a {hello.role[:20]!r} hello of {reply.message}", "version")
        (self.outbox.to_workers if from_worker else self.outbox.to_clients).append((peer, reply))
        return False

    def on_client(self, peer: bytes, msg: object, now: float) -> None:
        if self.submitters and not self._allowed(peer, msg):
            return
        match msg:
            case p.Submit(tasks=specs, ack_later=later):
                if not later:
                    self.outbox.ack_now.add(peer)
                self._submit(peer, specs, now)
            case p.Watch(ids=ids):
                self._watch(peer, ids)
            case p.Query(req=req, ids=ids, full=full):
                info = self._detail if full else self._info
                tasks = self.tasks
                items = [info(t) if t is not None and self._mine(peer, t) else None
                         for t in map(tasks.get, ids)]
                self.outbox.to_clients.append((peer, p.Infos(req=req, items=items)))
            case (p.ListTasks() | p.RequeueDead() | p.Inspect() | p.QueueCommand()
                  | p.RunCron()):
                self._operate(peer, msg, now)
            case p.Cancel(req=req, ids=ids):
                tasks = self.tasks
                done = [i in tasks and self._mine(peer, tasks[i]) and self._cancel(i, now)
                        for i in ids]
                self.outbox.to_clients.append((peer, p.CancelReply(req=req, cancelled=done)))
            case p.DeadLetters(req=req, queue=queue, limit=limit):
                items = self._dead_letters(queue, limit)
                self.outbox.to_clients.append((peer, p.Infos(req=req, items=items)))
            case p.Requeue(req=req, ids=ids):
                ok = [self._requeue_dead(i, now) for i in ids]
                self.outbox.to_clients.append((peer, p.Done(req=req, ok=ok)))
            case p.AddCron(req=req, entry=entry):
                self._add_cron(peer, req, entry, now)
            case p.RemoveCron(req=req, name=name):
                self._remove_cron(peer, req, name)
            case p.ListCrons(req=req):
                self.outbox.to_clients.append(
                    (peer, p.CronsReply(req=req, entries=list(self.crons.values()))))
            case p.GetStats(req=req):
                self.outbox.to_clients.append((peer, p.StatsReply(req=req, stats=self.stats(now))))
            case p.Scale(req=req, pool=pool, min_workers=low, max_workers=high):
                self._scale(peer, req, pool, low, high)
            case p.Ping():
                self.outbox.ack_now.add(peer)
                self.outbox.to_clients.append((peer, p.Pong(self.instance, self.epoch)))
            case p.Probe():
                self.outbox.to_clients.append((peer, p.Leader(self.instance, self.epoch)))
            case p.Hello() as hello:
                if self._version_ok(peer, hello, False, now):
                    self.outbox.to_clients.append((peer, self.welcome()))

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
                    worker.done += len(results)
                    self._add_credit(worker, len(results) + extra)
                else:
                    self.outbox.to_workers.append((peer, UNKNOWN_PEER))
            case p.Heartbeat():
                if worker is None:
                    self._heartbeat(peer, now)
            case p.Due(ids=ids):
                if peer == self.scheduler:
                    self._due(peer, ids, now)
            case p.Fire(items=items):
                if peer == self.scheduler:
                    self._fire(peer, items, now)
            case p.Stuck(reason=reason):
                if worker is not None:
                    self._kill(worker, reason)
            case p.Hello() as hello:
                if self._version_ok(peer, hello, True, now):
                    self._hello(peer, hello, now)
            case p.Release(ids=ids):
                if worker is not None:
                    self._hand_back(worker, ids)
            case p.Goodbye(released=released):
                if worker is not None:
                    worker.draining = True
                    self.ready.pop(peer, None)
                    self._hand_back(worker, released)
            case p.WorkerExited(worker=name, exit_code=code, restarted=restarted,
                                running=running):
                self._worker_exited(peer, name, code, restarted, running, now)
            case p.PoolReport() as report:
                self._pool_report(peer, report, now)
            case p.PoolFailed(reason=reason):
                self._pool_failed(peer, reason, now)
            case p.Probe():
                self.outbox.to_workers.append((peer, p.Leader(self.instance, self.epoch)))

    def _operate(self, peer: bytes, msg: object, now: float) -> None:
        """An operator's query or command (queries.py); a bad one gets an Error."""
        try:
            match msg:
                case p.ListTasks(req=req):
                    reply: object = p.Page(req, self._list_tasks(msg))
                case p.RequeueDead(req=req, queue=queue, name=name):
                    reply = p.Count(req, self._requeue_matching(queue, name, now))
                case p.Inspect(req=req, what="workers"):
                    reply = p.Listing(req, workers=self._workers_info(now))
                case p.Inspect(req=req, what="pools"):
                    reply = p.Listing(req, pools=self._pools_info(now))
                case p.Inspect(req=req, what="queues"):
                    reply = p.Listing(req, queues=self._queues_info(now))
                case p.QueueCommand(req=req, queue=queue, action=action):
                    reply = p.Count(req, self._queue_command(queue, action, now))
                case p.RunCron(req=req, name=name):
                    reply = p.Done(req, [self._run_cron(name, now)])
                case _:
                    raise BadRequest(f"what: {getattr(msg, 'what', '?')!r} is not workers, "
                                     "pools or queues")
        except BadRequest as exc:
            reply = p.Error("bad_option", str(exc), msg.req)
        self.outbox.to_clients.append((peer, reply))

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
        if self.supervisors and now >= self._next_load:
            self._send_loads(now)
        if now < self._next_beat:
            return
        late = now - self._next_beat  # the loop wakes for every beat: lateness is its own
        self._next_beat = now + self.heartbeat_interval_s
        if late > self.heartbeat_interval_s:
            self._forgive(late)
        self._sample(now)
        self._forget_empty_queues()
        if self.unclaimed and now >= self.unclaimed_until:
            self._release_unclaimed()
        self._check_liveness(now)

    def next_deadline(self) -> float:
        """When the loop must wake even if no message comes."""
        at = self._next_beat
        if self.supervisors:
            at = min(at, self._next_load)
        if self.expiries:
            at = min(at, self.expiries[0][0])
        if self._finished:
            at = min(at, self._finished[0][0])
        for name in self.held:
            at = min(at, self.limits[name].next_at)
        return at
