"""The supervisor actor: owns one pool of worker processes on this host.

It reports every death to the broker the moment it reaps it, naming the leases the
worker was running (read from the worker's running board, running.py), so that its
leases are requeued at once and only the running ones are charged an attempt. It
restarts the worker. A death while tasks ran is charged to those tasks (the broker
backs them off and gives up on them after max_deliveries); the pool's restart
intensity counts only the deaths no task explains (a worker that cannot start, that
cannot import its modules, that dies idle), so a pool survives any number of poison
tasks. Past its intensity the pool is failed: its workers are stopped, the broker is
told, and the supervisor tries again after a back-off that doubles each time.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

import zmq

from actorq.node import actor
from actorq.node.children import Child, RestartIntensity, wait_all
from actorq.node.specs import SupervisorSpec, WorkerSpec
from actorq.wire.leader import LeaderFinder, addresses
from actorq.wire import protocol as p
from actorq.wire import sockets
from actorq.worker.running import BOARD_FD_ENV, RunningBoard, places
from actorq.worker.scaling import Scaler

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0  # our heartbeat to the broker until its Welcome tells us its interval
POOL_RETRY_FIRST_S = 5.0  # a failed pool tries again after this long ...
POOL_RETRY_MAX_S = 300.0  # ... doubling each time it fails again, up to this


class Supervisor:
    def __init__(self, spec: SupervisorSpec, signals: actor.Signals) -> None:
        self.spec = spec
        self.pool = spec.pool
        self.signals = signals
        self.host = socket.gethostname()
        self.ctx = zmq.Context()
        self.ident = f"sup.{self.pool.name}.{self.host}.{os.getpid()}"
        self.keys = spec.curve.load() if spec.curve else None
        self.brokers = addresses(spec.broker)
        self.broker = self.brokers[0]  # the one it talks to now (wire/leader.py)
        self.sock = sockets.dealer(self.ctx, self.broker, self.ident.encode(), self.keys)
        self.move_to: str | None = None  # the leader the finder found, to move to
        self._moved_r, self._moved_w = sockets.wake_pipe()
        self.decoder = p.decoder(p.BrokerToWorker)
        self.workers: dict[str, Child] = {}
        self.boards: dict[str, RunningBoard] = {}  # worker -> what it runs (running.py)
        self.retry_at = 0.0  # while the pool is failed: when it tries again
        self.retry_s = POOL_RETRY_FIRST_S
        self.intensity = RestartIntensity(self.pool.max_restarts, self.pool.restart_window)
        self.counter = 0
        self.reported_ready = False
        self.restarts = 0
        self.heartbeat_s = HEARTBEAT_S
        self.next_beat = 0.0
        self.kill_at: dict[str, float] = {}  # worker -> when SIGKILL follows a Kill's SIGTERM
        # Workers stopped on the broker's word (a timeout, a cancel): replacing them is
        # routine, so it does not count against the restart intensity.
        self.killed: set[str] = set()
        low, high = self.pool.bounds
        self.scaler = Scaler(self.pool.start_workers, low, high, self.pool.scale_down_after)
        self.retiring: set[str] = set()  # workers drained by a scale-down
        self.load: p.PoolLoad | None = None  # the broker's latest word on the load

    def _send(self, msg: object) -> None:
        sockets.send_to_broker(self.sock, msg)

    def _hello(self) -> None:
        self._send(p.Hello(version=p.PROTOCOL_VERSION, role="supervisor", pool=self.pool.name,
                           queues=list(self.pool.queues), pid=os.getpid(), host=self.host))

    def spawn(self) -> None:
        self.counter += 1
        wid = f"{self.pool.name}.{self.host}.{os.getpid()}.{self.counter}"
        spec = WorkerSpec(pool=self.pool, broker=self.spec.broker, worker_id=wid,
                          supervisor=self.ident, curve=self.spec.curve)
        board = self.boards[wid] = RunningBoard.create(wid, places(self.pool.concurrency))
        self.workers[wid] = Child("worker", wid, spec, self.spec.log_level,
                                  fds={BOARD_FD_ENV: board.fd})

    def reap(self, stopping: bool) -> None:
        """Handle exited workers: tell the broker, then restart them or fail the pool."""
        for wid, child in list(self.workers.items()):
            if child.poll() is None:
                continue
            del self.workers[wid]
            board = self.boards.pop(wid)
            running = board.running()
            board.close()
            ordered = wid in self.killed
            self.killed.discard(wid)
            retired = wid in self.retiring
            self.retiring.discard(wid)
            # A death while tasks ran is theirs to answer for (the broker charges them),
            # not the pool's: only deaths no task explains count against the intensity.
            restart = not stopping and not self.retry_at and not retired and (
                ordered or bool(running) or self.intensity.allow(time.monotonic()))
            # Tell the broker first: its leases are requeued now, not at lease expiry.
            self._send(p.WorkerExited(worker=wid, exit_code=child.exit_code or 0,
                                      restarted=restart, running=running))
            if retired:
                log.info("worker %s drained and stopped (%s)", wid, child.describe_exit())
            if stopping or self.retry_at or retired:
                continue
            if not restart:
                self._fail(f"worker {wid} {child.describe_exit()}: more than "
                           f"{self.pool.max_restarts} restarts in "
                           f"{self.pool.restart_window:g} s")
                continue
            self.restarts += 1
            log.log(logging.INFO if ordered else logging.WARNING,
                    "worker %s %s%s; starting a replacement", wid, child.describe_exit(),
                    f" while running {len(running)} task(s)" if running else "")
            self.spawn()

    def _fail(self, reason: str) -> None:
        """Past the restart intensity: stop the pool, say so, and try again later."""
        log.error("pool %s FAILED: %s; trying again in %g s", self.pool.name, reason,
                  self.retry_s)
        self._send(p.PoolFailed(reason=reason))
        self.retry_at = time.monotonic() + self.retry_s
        self.retry_s = min(self.retry_s * 2, POOL_RETRY_MAX_S)
        for child in self.workers.values():
            child.signal(signal.SIGTERM)  # reaped as they go; not restarted meanwhile

    def _retry(self) -> None:
        log.warning("pool %s: trying again after it failed", self.pool.name)
        self.retry_at = 0.0
        self.intensity = RestartIntensity(self.pool.max_restarts, self.pool.restart_window)
        self._hello()  # registers afresh: the broker no longer lists the pool as failed
        for _ in range(min(max(self.pool.start_workers, self.scaler.min), self.scaler.max)
                       - len(self.workers)):
            self.spawn()

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.signals.fd, zmq.POLLIN)
        poller.register(self._moved_r, zmq.POLLIN)
        finder = None
        if len(self.brokers) > 1:  # brokers sharing a store: follow the leader
            finder = LeaderFinder(self.brokers, self._leader_found, self.keys).start()
        self._hello()
        for _ in range(self.pool.start_workers):
            self.spawn()
        self.next_beat = time.monotonic() + self.heartbeat_s
        while not self.signals.stop:
            pending = {c.ready_fd: c for c in self.workers.values() if c.ready_fd is not None}
            for fd in pending:
                poller.register(fd, zmq.POLLIN)
            wake = min(self.next_beat, *self.kill_at.values(), self.retry_at or self.next_beat)
            timeout_ms = max(0.0, wake - time.monotonic()) * 1000
            events = dict(poller.poll(timeout_ms))
            for fd in pending:
                poller.unregister(fd)
                if fd in events:
                    pending[fd].read_ready()
            if self.signals.fd in events:
                self.signals.clear()
            if self._moved_r in events:
                sockets.drain(self._moved_r)
                self._move()
            if self.sock in events:
                self._read_broker()
            self._kill_overdue()
            self.reap(stopping=False)
            if self.retry_at and time.monotonic() >= self.retry_at:
                self._retry()
            if not self.reported_ready and all(c.ready_info for c in self.workers.values()):
                self.reported_ready = True
                log.info("pool %s up: %d worker(s)", self.pool.name, len(self.workers))
                actor.report_ready({"pool": self.pool.name})
            if time.monotonic() >= self.next_beat:
                self.next_beat = time.monotonic() + self.heartbeat_s
                self._send(p.Heartbeat())
                self._report()
        if finder is not None:
            finder.stop()
        self._stop()
        return 0

    def _leader_found(self, address: str) -> None:
        """From the LeaderFinder's thread: the loop moves on its next turn."""
        self.move_to = address
        sockets.poke(self._moved_w)

    def _move(self) -> None:
        address, self.move_to = self.move_to, None
        if address is None:
            return
        sockets.move(self.sock, self.broker, address)
        self.broker = address
        self._hello()

    def _read_broker(self) -> None:
        for msg in sockets.from_broker(self.sock, self.decoder):
            match msg:
                case p.Error(code="unknown_peer"):
                    self._hello()
                case p.Welcome(heartbeat_interval_s=interval):
                    self.heartbeat_s = interval
                    self.next_beat = min(self.next_beat, time.monotonic() + interval)
                case p.Beat():
                    pass
                case p.PoolLoad() as load:
                    self.load = load
                    self._scale()
                case p.SetBounds(min_workers=low, max_workers=high):
                    log.info("pool %s: bounds set to %d..%d workers (were %d..%d)",
                             self.pool.name, low, high, self.scaler.min, self.scaler.max)
                    self.scaler.set_bounds(low, high)
                    self._scale()
                    self._report()
                case p.Kill(worker=wid, reason=reason, grace=grace):
                    child = self.workers.get(wid)
                    if child is not None and wid not in self.kill_at:
                        log.warning("stopping worker %s (%s): SIGTERM, SIGKILL in %g s",
                                    wid, reason, grace)
                        child.signal(signal.SIGTERM)
                        self.kill_at[wid] = time.monotonic() + grace
                        self.killed.add(wid)
                case p.Error(code=code, message=message):
                    log.error("broker says %s: %s", code, message)

    def _scale(self) -> None:
        """Carry out what the scaler decides from the broker's latest load."""
        if self.retry_at or self.signals.stop:
            return
        running = {wid for wid, c in self.workers.items()
                   if c.ready_info is not None and wid not in self.retiring}
        changing = len(self.workers) - len(running)
        load = self.load
        loads = [w for w in load.workers if w.name in running] if load else []
        decision = self.scaler.decide(len(running), changing, load.backlog if load else 0,
                                      loads)
        if decision is None:
            return
        if decision.direction == "up":
            log.info("pool %s: scaling up %d -> %d workers: %s", self.pool.name, len(running),
                     len(running) + decision.count, decision.reason)
            for _ in range(decision.count):
                self.spawn()
        else:
            log.info("pool %s: scaling down %d -> %d workers, draining %s: %s",
                     self.pool.name, len(running), len(running) - decision.count,
                     ", ".join(decision.workers), decision.reason)
            for wid in decision.workers:
                self.retiring.add(wid)
                self.workers[wid].signal(signal.SIGTERM)  # it drains: nothing is lost
        self._report()

    def _report(self) -> None:
        s = self.scaler
        self._send(p.PoolReport(workers=len(self.workers) - len(self.retiring), target=s.target,
                                min_workers=s.min, max_workers=s.max, scale_ups=s.ups,
                                scale_downs=s.downs))

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for wid, at in list(self.kill_at.items()):
            child = self.workers.get(wid)
            if child is None or child.poll() is not None:
                del self.kill_at[wid]
            elif now >= at:
                del self.kill_at[wid]
                child.signal(signal.SIGKILL)

    def _stop(self) -> None:
        """Drain: SIGTERM every worker, give running tasks the grace period, then SIGKILL."""
        children = list(self.workers.values())
        for child in children:
            child.signal(signal.SIGTERM)
        left = wait_all(children, self.spec.shutdown_grace)
        for child in left:
            log.warning("worker %s still running after %.1f s grace; killing it",
                        child.name, self.spec.shutdown_grace)
            child.signal(signal.SIGKILL)
        wait_all(left, 5.0)
        self.reap(stopping=True)
        log.info("supervisor of pool %s stopping: %d worker restart(s)", self.pool.name,
                 self.restarts)
        self.sock.close()
        self.ctx.term()


def main(spec: SupervisorSpec) -> int:
    actor.die_with_parent()
    signals = actor.Signals()
    signals.watch_children()
    return Supervisor(spec, signals).run()
