"""Who is connected: workers, supervisors and the scheduler, and whether they live.

A peer that misses `heartbeat_liveness` beats is presumed dead; a worker's leases
then go back to the front of their queues (the task's attempt is charged, and
after `max_deliveries` such losses the task is dead with WorkerLost).
"""

from __future__ import annotations

import logging

from actorq.broker.state.records import DEAD, RUNNING, Supervisor, Worker
from actorq.tasks.ratelimit import Limiter
from actorq.wire import protocol as p

log = logging.getLogger("actorq.broker.state")

SUPERVISOR_FORGET_LIVENESSES = 10  # a silent supervisor is forgotten after this many windows


class Membership:
    """Part of BrokerState (see state.py): registration, liveness and deaths of peers."""

    def _init_membership(self, now: float) -> None:
        self.workers: dict[bytes, Worker] = {}
        self.supervisors: dict[bytes, Supervisor] = {}
        self.scheduler: bytes | None = None
        self.scheduler_seen = now
        self._next_beat = now

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

    def _kill(self, worker: Worker, reason: str) -> None:
        """A worker running a plain function it cannot stop: its supervisor replaces it.
        It takes no new work meanwhile; its other leases are requeued when it exits."""
        worker.draining = True
        self.ready.pop(worker.ident, None)
        kill = p.Kill(worker=worker.name, reason=reason, grace=self.kill_grace_s)
        for sup in self.supervisors.values():
            if sup.pool == worker.pool and sup.host == worker.host and not sup.failed:
                self.outbox.to_workers.append((sup.ident, kill))

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
                       now: float) -> None:
        """A supervisor saw one of its workers exit: requeue its leases now, without
        waiting for its heartbeats to stop."""
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

    def _pool_failed(self, peer: bytes, reason: str) -> None:
        sup = self.supervisors.get(peer)
        if sup is not None:
            sup.failed = reason
        log.error("pool %s failed: %s", sup.pool if sup else "?", reason)

    def _check_liveness(self, now: float) -> None:
        """Once a heartbeat interval: drop peers that went silent, beat to the rest."""
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


UNKNOWN_PEER = p.Error(code="unknown_peer", message="say hello first")
