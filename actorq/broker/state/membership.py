"""Who is connected: workers, supervisors and the scheduler, and whether they live.

A peer that misses `heartbeat_liveness` beats is presumed dead; a worker's leases
then go back to the front of their queues (the task's attempt is charged, and
after `max_deliveries` such losses the task is dead with WorkerLost).
"""

from __future__ import annotations

import logging

from actorq.broker.state.records import DEAD, RUNNING, Supervisor, Task, Worker
from actorq.node.config import MAX_POOL_WORKERS
from actorq.node.ratelog import Throttle, swallowed_note
from actorq.tasks.ratelimit import Limiter
from actorq.tasks.retry import retry_delay
from actorq.wire import protocol as p

log = logging.getLogger("actorq.broker.state")

SUPERVISOR_FORGET_LIVENESSES = 10  # a silent supervisor is forgotten after this many windows
# How long a worker gone from the socket waits for its supervisor to say what it was
# running (it says so within milliseconds of reaping it) before it is dropped anyway.
EXIT_REPORT_WAIT_S = 1.0
# Back-off before delivering again a task whose worker died under it more than once:
# 1 s, 2 s, 4 s ... (half of it random), at most a minute.
CRASH_BACKOFF_S = 1.0
# How often supervisors hear their pool's load (PoolLoad): scale-up starts within this
# of a backlog appearing.
LOAD_INTERVAL_S = 0.25
WORKER_LOST = "WorkerLost: the worker running it died"
CRASH_BACKOFF_MAX_S = 60.0


class Membership:
    """Part of BrokerState (see state.py): registration, liveness and deaths of peers."""

    def _init_membership(self, now: float, scheduler_secret: str) -> None:
        # Only the scheduler this broker's node started knows it ("" takes any: tests).
        self.scheduler_secret = scheduler_secret
        self.complaints = Throttle()  # forged claims: one log line a kind and peer a minute
        self.workers: dict[bytes, Worker] = {}
        self.consumers: dict[str, int] = {}  # queue -> live workers consuming it
        self.supervisors: dict[bytes, Supervisor] = {}
        self.scheduler: bytes | None = None
        self.scheduler_seen = now
        self._next_beat = now
        self._next_load = now

    def _hello(self, peer: bytes, hello: p.Hello, now: float) -> None:
        if hello.role == "supervisor":
            self.supervisors[peer] = Supervisor(peer, hello.pool, now, host=hello.host,
                                                queues=tuple(hello.queues))
        elif hello.role == "scheduler":
            if self.scheduler_secret and hello.secret != self.scheduler_secret:
                self._refuse(peer, now, "bad_role", "this broker's scheduler is the one its "
                             "node started; a peer that cannot say so is not it", answer=True)
                return
            self._scheduler_hello(peer, now)
            return
        elif hello.role == "worker":
            worker = self.workers.get(peer)
            if worker is not None:
                # It lost touch with us but kept its leases; trust its fresh credit count.
                worker.credit = max(0, hello.credit)
                worker.draining = False
                worker.lost_at = None
                if worker.credit:
                    self.ready[peer] = None
            else:
                worker = self.workers[peer] = Worker(peer, hello, now)
                for queue in worker.queues:
                    self.consumers[queue] = self.consumers.get(queue, 0) + 1
                if worker.credit:
                    self.ready[peer] = None
            if hello.holding:
                self._adopt(worker, hello.holding, now)
            self._name_tasks(hello.tasks)
            # A limit belongs to a task this worker registers: a peer cannot limit
            # somebody else's task.
            registered = set(hello.tasks)
            for name, rate in hello.rate_limits.items():
                lim = self.limits.get(name)
                if name not in registered:
                    self._refuse(peer, now, "rate_limit", f"a rate limit for {name[:200]!r}, "
                                 "a task it does not register, was ignored")
                elif rate > 0 and (lim is None or lim.interval != 1.0 / rate):
                    self.limits[name] = Limiter(rate)
        else:
            self.outbox.to_workers.append(
                (peer, p.Error(code="bad_role", message=f"role {hello.role!r} does not "
                               "belong on the worker endpoint"))
            )
            return
        self.outbox.to_workers.append((peer, self.welcome()))

    def _refuse(self, peer: bytes, now: float, kind: str, what: str, *,
                answer: bool = False) -> None:
        """A peer on the worker endpoint claimed what it may not: log it (once a minute
        per peer and kind) and, with `answer`, tell it (an Error with `kind` as code)."""
        self.bad_frames_total += 1
        self._complain(peer, now, what, kind)
        if answer:
            self.outbox.to_workers.append((peer, p.Error(code=kind, message=what)))

    def _complain(self, peer: bytes, now: float, what: str, kind: str) -> None:
        """Log what a peer did wrong, once a minute per peer and `kind` (what itself
        may carry the peer's words, which must not make every line a new one)."""
        swallowed = self.complaints.admit((peer, kind), now)
        if swallowed is not None:
            log.warning("refused from %s: %s%s", peer.decode(errors="replace")[:64],
                        what[:300], swallowed_note(swallowed, self.complaints))

    def _kill(self, worker: Worker, reason: str) -> None:
        """A worker running a plain function it cannot stop: its supervisor replaces it.
        It takes no new work meanwhile; its other leases are requeued when it exits."""
        worker.draining = True
        self.ready.pop(worker.ident, None)
        kill = p.Kill(worker=worker.name, reason=reason, grace=self.kill_grace_s)
        for sup in self.supervisors.values():
            if sup.pool == worker.pool and sup.host == worker.host and not sup.failed:
                self.outbox.to_workers.append((sup.ident, kill))

    def _drop_worker(self, worker: Worker, now: float, started: set[int] | None = None) -> None:
        """Forget a worker and requeue every lease it held, at the front of its priority.

        Only the leases it had started are charged an attempt: those its supervisor
        names (`started`, read from the worker's running board), or, without that word
        (a worker that stopped answering), the first ones in lease order, as many as
        could have been running. The rest go back as if never leased."""
        if self.workers.pop(worker.ident, None) is not None:
            for queue in worker.queues:
                left = self.consumers[queue] - 1
                if left:
                    self.consumers[queue] = left
                else:
                    del self.consumers[queue]
        self.ready.pop(worker.ident, None)
        ident = worker.ident
        # A worker runs at most `slots` plain calls and `slots` async tasks at once.
        maybe_running = 2 * worker.slots if worker.slots else len(worker.leased)
        leased = list(worker.leased.values())
        for i in range(len(leased) - 1, -1, -1):  # each goes in front of the one after it
            task = leased[i]
            if task.state is not RUNNING or task.worker != ident:
                continue
            if task.token in started if started is not None else i < maybe_running:
                self._lost_while_running(task, worker, now)
            else:
                task.run.attempts -= 1  # never started: not an attempt
                self.leases_returned_total += 1
                self._requeue(task)
        worker.leased.clear()

    def _lost_while_running(self, task: Task, worker: Worker, now: float) -> None:
        """A task whose worker died under it: it may be what killed it."""
        if task.attempts >= self.max_deliveries:
            # A task that takes its worker down every time would otherwise crash-loop
            # the pool forever.
            self._finish(task, DEAD, now, error=(
                f"WorkerLost: the worker running this task was lost {task.attempts} "
                f"time(s) (last: {worker.name}); giving up"))
        elif task.attempts > 1:
            # Lost before: back off before the next delivery, so that a task that
            # crashes its workers cannot crash-loop them. A first loss (a worker killed
            # from outside, the OOM killer) is requeued at once.
            self._end_attempt(task, WORKER_LOST, now, keep=True)
            delay = retry_delay(CRASH_BACKOFF_S, CRASH_BACKOFF_MAX_S, task.attempts - 1,
                                self.rand)
            self._schedule(task, now + self.wall_offset + delay)
        else:
            self._end_attempt(task, WORKER_LOST, now, keep=True)
            self._requeue(task)

    def peer_unreachable(self, peer: bytes, now: float) -> None:
        """A send to this peer failed (ROUTER_MANDATORY): it is gone."""
        worker = self.workers.get(peer)
        if worker is not None and worker.lost_at is None:
            # Its supervisor says within moments what it was running (WorkerExited);
            # until then it takes no work. Without that word by EXIT_REPORT_WAIT_S,
            # it is dropped with what may have been running charged (_check_liveness).
            worker.lost_at = now
            worker.draining = True
            self.ready.pop(peer, None)
            level = logging.INFO if not worker.leased else logging.WARNING
            log.log(level, "worker %s is unreachable (holding %d task(s)); waiting for its "
                    "supervisor's word", worker.name, len(worker.leased))
        sup = self.supervisors.get(peer)
        if sup is not None and not sup.failed:
            del self.supervisors[peer]  # a failed pool stays listed: operators need to see it
        if peer == self.scheduler:
            self.scheduler = None

    def _heartbeat(self, peer: bytes, now: float) -> None:
        """A beat from a peer that is not a worker (a worker's is noted by any message)."""
        sup = self.supervisors.get(peer)
        if sup is not None:
            sup.last_seen = now
        elif peer == self.scheduler:
            self.scheduler_seen = now
        else:
            self.outbox.to_workers.append((peer, UNKNOWN_PEER))

    def _worker_exited(self, peer: bytes, name: str, code: int, restarted: bool,
                       running: list[int] | None, now: float) -> None:
        """A supervisor saw one of its workers exit: requeue its leases now, without
        waiting for its heartbeats to stop."""
        sup = self.supervisors.get(peer)
        pool = sup.pool if sup else "?"
        if restarted and sup is not None:
            self.worker_restarts[pool] = self.worker_restarts.get(pool, 0) + 1
        gone = self.workers.get(name.encode())
        if gone is not None and gone.supervisor != peer:
            self._refuse(peer, now, "worker_exited", f"it reported the exit of worker "
                         f"{name[:200]}, which it did not start; ignored")
        elif gone is not None:
            level = logging.INFO if code == 0 and not gone.leased else logging.WARNING
            log.log(level, "worker %s exited with code %s; requeueing %d task(s)",
                    name, code, len(gone.leased))
            self._drop_worker(gone, now, set(running) if running is not None else None)

    def _pool_report(self, peer: bytes, report: p.PoolReport, now: float) -> None:
        sup = self.supervisors.get(peer)
        if sup is not None:
            sup.report = report
            sup.last_seen = now

    def _send_loads(self, now: float) -> None:
        """Tell each supervisor its pool's backlog and its workers' load (PoolLoad), for
        its scaling decisions; every LOAD_INTERVAL_S."""
        self._next_load = now + LOAD_INTERVAL_S
        by_place: dict[tuple[str, str], list[p.WorkerLoad]] = {}
        for w in self.workers.values():
            idle_s = 0.0 if w.leased else now - w.idle_since
            by_place.setdefault((w.pool, w.host), []).append(
                p.WorkerLoad(w.name, len(w.leased), w.slots, idle_s))
        depth = self.depth
        for sup in self.supervisors.values():
            if not sup.failed:
                backlog = sum(depth.get(q, 0) for q in sup.queues)
                self.outbox.to_workers.append(
                    (sup.ident, p.PoolLoad(backlog, by_place.get((sup.pool, sup.host), []))))

    def _scale(self, peer: bytes, req: int, pool: str, low: int, high: int) -> None:
        """A client changes a pool's bounds (0 keeps one): checked, then passed on to
        every supervisor of the pool."""
        sups = [s for s in self.supervisors.values() if s.pool == pool and not s.failed]
        problem = None
        if not sups:
            problem = f"no pool {pool!r} is connected to this broker"
        elif low < 0 or high < 0:
            problem = f"min_workers and max_workers must be >= 1, got {low} and {high}"
        else:
            now_at = next((s.report for s in sups if s.report is not None), None)
            low = low or (now_at.min_workers if now_at else 0)
            high = high or (now_at.max_workers if now_at else 0)
            if low < 1 or high < 1:
                problem = "say both min_workers and max_workers: the pool's bounds are not known yet"
            elif low > high:
                problem = f"min_workers {low} is over max_workers {high}"
            elif high > MAX_POOL_WORKERS:
                problem = f"max_workers {high} is over the limit of {MAX_POOL_WORKERS}"
        if problem is not None:
            self.outbox.to_clients.append((peer, p.Error("bad_option", problem, req)))
            return
        for sup in sups:
            self.outbox.to_workers.append((sup.ident, p.SetBounds(low, high)))
        log.info("pool %s: bounds set to %d..%d workers on %d host(s)", pool, low, high,
                 len(sups))
        self.outbox.to_clients.append((peer, p.Done(req=req, ok=[True])))

    def _pool_failed(self, peer: bytes, reason: str, now: float) -> None:
        sup = self.supervisors.get(peer)
        if sup is None:
            self._complain(peer, now, "a pool failure from a peer that is no supervisor",
                           "pool_failed")
            return
        sup.failed = reason
        log.error("pool %s failed: %s", sup.pool, reason[:1000])

    def _forgive(self, gap: float) -> None:
        """This broker did not run for `gap` seconds (stopped, starved of CPU): its
        peers' heartbeats waited in its sockets meanwhile, so the gap is not theirs."""
        log.warning("the broker's own loop did not run for %.1f s; not counting that "
                    "against its workers' heartbeats", gap)
        for w in self.workers.values():
            w.last_seen += gap
        for sup in self.supervisors.values():
            sup.last_seen += gap
        self.scheduler_seen += gap

    def _check_liveness(self, now: float) -> None:
        """Once a heartbeat interval: drop peers that went silent, beat to the rest."""
        beat = p.Beat(instance=self.instance)
        deadline = now - self.liveness_s
        for worker in list(self.workers.values()):
            if worker.lost_at is not None:
                if now - worker.lost_at >= EXIT_REPORT_WAIT_S:
                    log.warning("worker %s: no word from its supervisor; requeueing %d "
                                "task(s)", worker.name, len(worker.leased))
                    self._drop_worker(worker, now)
            elif worker.last_seen < deadline:
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


UNKNOWN_PEER = p.Error(code="unknown_peer", message="say hello first")
