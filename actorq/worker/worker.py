"""The worker actor: runs leased tasks and reports results in batches.

- asyncio on uvloop. The DEALER socket's FD is watched with add_reader; ZeroMQ's FD
  is edge-triggered, so every wake-up drains the socket and every send re-checks
  it (a send can consume the edge that announced an incoming message).
- `async def` tasks run on the loop, up to `concurrency` at once. Plain functions
  run on `concurrency` runner threads; runner threads take leases straight from a
  shared deque (an atomic popleft) and are woken once per batch, not handed one
  task at a time. A worker with one slot runs a plain function on the loop thread
  itself when nothing else is running (no hand-off to a thread and back, about
  0.1 ms a task here), and a stand-in thread (standin.py) keeps up the heartbeat,
  timeouts, cancellation and progress if the call runs long.
- Completions are batched: whatever finished while the loop was busy goes out in
  one Report. Each result returns one unit of credit to the broker.
- Leases held ahead of time (prefetch) wait in a buffer. If the call they wait for
  runs past RELEASE_AFTER_S, they go back to the broker (Release) with their credit
  withheld until a slot frees, so a slow task strands nothing behind it for longer.
- SIGTERM drains: leases not yet started are handed back, running ones finish,
  then the process exits 0 (the supervisor enforces the grace period).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import threading
import time
from collections import deque

import msgspec
import uvloop
import zmq

from actorq.node import actor
from actorq.node.config import DEFAULT_MAX_PAYLOAD_BYTES
from actorq.node.specs import CANNOT_START, WorkerSpec
from actorq.tasks.registry import TaskDef, registered
from actorq.wire.leader import LeaderFinder, addresses
from actorq.wire import protocol as p
from actorq.wire import sockets
from actorq.wire.sockets import EVENTS, NOBLOCK, POLLIN
from actorq.worker.credit import CreditWindow
from actorq.worker.execution import Execution
from actorq.worker.interruptions import Interruptions
from actorq.worker.running import RunningBoard, places
from actorq.worker.standin import StandIn

log = logging.getLogger(__name__)
MAX_HEARTBEAT_S = 3600.0  # a broker asking for beats further apart than this is wrong

DRAIN_MAX = 1000  # frames per wake-up before yielding to the loop






class Worker(Execution, Interruptions):
    """One worker process: its socket, its leases and credit, and its lifecycle. Running
    tasks is Execution's (execution.py); timeouts, cancellation and progress are
    Interruptions' (interruptions.py)."""

    def __init__(self, spec: WorkerSpec, allowed: dict[str, TaskDef]) -> None:
        self.spec = spec
        self.pool = spec.pool
        self.allowed = allowed
        self.slots = self.pool.concurrency
        self.credit = CreditWindow(self.slots, self.pool.prefetch)
        self.ctx = zmq.Context()
        self.keys = spec.curve.load() if spec.curve else None
        self.brokers = addresses(spec.broker)
        self.broker = self.brokers[0]  # the one it talks to now (wire/leader.py)
        self.sock = sockets.dealer(self.ctx, self.broker, spec.worker_id.encode(), self.keys)
        self.decoder = p.decoder(p.BrokerToWorker)
        self.max_result_bytes = DEFAULT_MAX_PAYLOAD_BYTES
        self.heartbeat_s = 1.0
        self._beat: asyncio.Task | None = None  # the _heartbeat task, once running
        self.liveness = 3
        self.instance: str | None = None
        self.last_heard = time.monotonic()
        self.held = 0  # leases held: buffered, waiting for a runner, or running
        # The same leases, token -> task id, kept on the loop thread: a Hello names them
        # so that a broker restarted from its database adopts them (no second run).
        # Kept only while the broker is durable: an in-memory one restarts knowing no
        # task, and the bookkeeping would be two dict operations a task for nothing.
        self.holding: dict[int, str] = {}
        self.durable = False
        self.takes_release = False  # the broker understands Release
        self._stall_check: asyncio.TimerHandle | None = None
        self.running_async = 0
        self.buffer: deque[p.Lease] = deque()
        self.stopping = False
        self.done = asyncio.Event()
        self.completed = 0
        self.failed = 0
        # Completions from runner threads, collected on the loop in batches. A deque
        # that is never replaced: a list swapped for a new one could be appended to by
        # a runner holding the old one after the loop had read it, losing a result.
        self._threaded: deque[p.Result] = deque()
        self._threaded_scheduled = False
        self._loop_results: list[p.Result] = []
        self._loop_scheduled = False
        self._inline_next_turn = False  # the next inline batch waits for a loop turn
        self._sync: deque[tuple[p.Lease, TaskDef]] = deque()  # plain-function leases to run
        self._sync_ready = threading.Condition()
        self._handed = 0  # plain-function leases given to runner threads, not yet back
        self._standin = StandIn(self)
        self._covered: list[p.Result] = []  # results the stand-in reports
        self._runners_stop = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._async_running: dict[int, asyncio.Task[None]] = {}  # lease token -> task
        # The lease each runner thread is running (None when idle): a list slot per
        # thread is the cheapest record there is, and the loop reads it only to stop
        # or time out a task. Start times are kept only for leases with a timeout.
        self._running: list[p.Lease | None] = [None] * self.slots
        # What runs now, for the supervisor to read if this process dies (running.py):
        # runner places 0..slots-1, then a place per concurrent async task.
        self.board = RunningBoard.attach(places(self.slots))
        self._async_places = list(range(places(self.slots) - 1, self.slots - 1, -1))
        self._started: dict[int, float] = {}
        self._stopped: set[int] = set()  # tokens cancelled before or while running
        self._abandoned: set[int] = set()  # tokens already reported (timed out, stopped)
        self._stuck = False
        self._progress: deque[p.Progress] = deque()
        self._progress_scheduled = False

    # ---- socket ----------------------------------------------------------------------

    def _send(self, msg: object) -> None:
        sockets.send_to_broker(self.sock, msg)
        if not self._standin.taken:  # the stand-in polls the socket itself
            self._recheck()

    def _recheck(self) -> None:
        if self.sock.getsockopt(EVENTS) & POLLIN:
            self._loop.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        if not self._read_messages():
            self._loop.call_soon(self._on_readable)

    def _read_messages(self) -> bool:
        """Handle up to DRAIN_MAX waiting messages; True if the socket is now empty."""
        recv, get = self.sock.recv, self.sock.getsockopt
        for _ in range(DRAIN_MAX):
            # Asking first: cheaper than the Again exception that would end the loop.
            if not get(EVENTS) & POLLIN:
                return True
            data = recv(NOBLOCK)
            self.last_heard = time.monotonic()
            try:
                msg = self.decoder.decode(data)
            except msgspec.DecodeError as exc:
                log.error("undecodable message from the broker: %s", exc)
                continue
            self._handle(msg)
        return False

    def _hello(self) -> None:
        self._send(p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool=self.pool.name,
                           queues=list(self.pool.queues),
                           credit=0 if self.stopping else self.credit.hello_credit(self.held),
                           pid=os.getpid(), host=socket.gethostname(),
                           rate_limits={n: d.rate_limit for n, d in self.allowed.items()
                                        if d.rate_limit},
                           holding=[p.Holding(tid, token) for token, tid in self.holding.items()],
                           slots=self.slots, tasks=list(self.allowed),
                           supervisor=self.spec.supervisor))

    def _handle(self, msg: object) -> None:
        match msg:
            case p.Dispatch(leases=leases, more=more):
                idle_slots = self.slots - self.held
                self.held += len(leases)
                credit = self.credit
                credit.dispatched(len(leases))
                if more and credit.starved(idle_slots, more):
                    # Slots sat idle while the broker had work for us: ask for more now.
                    self._send(p.Report([], credit=credit.update(self.held, 0)))
                if self.durable:
                    holding = self.holding
                    for lease in leases:
                        holding[lease.token] = lease.id
                self.buffer.extend(leases)
                self._start_ready()
            case p.Reclaim(n=n):
                self._release_waiting(n)
            case p.Stop(ids=ids):
                self._stop_tasks(set(ids))
            case p.Beat(instance=instance):
                if instance != self.instance:
                    log.warning("broker instance changed (%s -> %s); registering again",
                                self.instance, instance)
                    self._hello()
            case p.Welcome() as w if not 0 < w.heartbeat_interval_s < MAX_HEARTBEAT_S or (
                    w.max_payload_bytes <= 0):
                log.error("ignored a welcome with nonsense limits (heartbeat %r s, payload "
                          "limit %r bytes)", w.heartbeat_interval_s, w.max_payload_bytes)
            case p.Welcome() as w:
                first = self.instance is None
                self.instance = w.instance
                self.max_result_bytes = w.max_payload_bytes
                if w.heartbeat_interval_s != self.heartbeat_s:
                    self.heartbeat_s = w.heartbeat_interval_s
                    # Thread-safe: the stand-in may be the one handling this.
                    self._loop.call_soon_threadsafe(self._restart_heartbeat)
                self.durable = w.durable
                self.takes_release = w.takes_release
                if first:
                    log.info("worker %s ready: pool %s, queues %s, %d slot(s), %d task(s)",
                             self.spec.worker_id, self.pool.name, self.pool.queues, self.slots,
                             len(self.allowed))
                    actor.report_ready({"worker": self.spec.worker_id})
            case p.Error(code="unknown_peer"):
                self._hello()
            case p.Error(code=code, message=message):
                log.error("broker says %s: %s", code, message)
                if code == "protocol_version":
                    self.stopping = True
                    self._loop.call_soon_threadsafe(self.done.set)

    # ---- reporting results ----------------------------------------------------------

    def _complete(self, result: p.Result) -> None:
        if self._standin.taken:
            self._covered.append(result)
            return
        self._loop_results.append(result)
        if not self._loop_scheduled:
            self._loop_scheduled = True
            self._loop.call_soon(self._collect_loop)

    def _collect_loop(self) -> None:
        self._loop_scheduled = False
        results, self._loop_results = self._loop_results, []  # loop thread only
        self._finished(results)

    def _next_inline_batch(self) -> None:
        self._inline_next_turn = False
        self._start_ready()

    def _finished(self, results: list[p.Result]) -> None:
        if results:
            self._report(results)
            self._start_ready()

    def _report(self, results: list[p.Result]) -> None:
        """Send results from the loop thread, with the credit that brings the broker's
        to the window: a slot is free, so the credit of leases handed back since the
        last report returns now, not while they would have waited behind a long call."""
        if not results:
            return
        self._account(results)
        self._send(p.Report(results, credit=self.credit.update(self.held, len(results))))
        if self.stopping and self.held == 0:
            self.done.set()

    def _account(self, results: list[p.Result]) -> None:
        n = len(results)
        self.held -= n
        self.completed += n
        if self.holding:
            holding = self.holding
            for r in results:
                holding.pop(r.token, None)
        for r in results:
            if not r.ok:
                self.failed += 1
                log.info("task %s (lease %d) failed on %s: %s", r.id, r.token,
                         self.spec.worker_id, r.error)

    # ---- what the stand-in calls while it covers for the loop thread -----------------

    def _flush_covered(self) -> None:
        results, self._covered = self._covered, []
        if results:
            self._account(results)
            self._send(p.Report(results, credit=self.credit.update(self.held, len(results))))
        if self._progress:
            self._flush_progress()

    def _resume(self) -> None:
        """On the loop thread, with the socket back from the stand-in."""
        self._recheck()  # the stand-in's reads may have taken the FD's edge
        if self._progress:
            self._flush_progress()

    # ---- lifecycle -------------------------------------------------------------------

    def _drain(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        leases = list(self.buffer)
        self.buffer.clear()
        while True:  # plain-function leases no runner has taken yet
            try:
                leases.append(self._sync.popleft()[0])
                self._handed -= 1
            except IndexError:
                break
        released = [lease.id for lease in leases]
        for lease in leases:
            self.holding.pop(lease.token, None)
        self.held -= len(released)
        log.info("worker %s draining: handing back %d lease(s), waiting for %d running",
                 self.spec.worker_id, len(released), self.held)
        self._send(p.Goodbye(released=released))
        if self.held == 0:
            self.done.set()

    async def _heartbeat(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(self.heartbeat_s)
            self._beat_once()

    def _beat_once(self) -> None:
        if time.monotonic() - self.last_heard > self.heartbeat_s * self.liveness:
            # The broker went quiet: it may be a new one that does not know us.
            self._hello()
        else:
            self._send(p.Heartbeat())

    def _move(self, address: str) -> None:
        """Another broker leads: register there, holding what this worker holds (it
        adopts those leases, as a broker restarted from its store does)."""
        if self.done.is_set():
            return
        sockets.move(self.sock, self.broker, address)
        self.broker = address
        self._hello()

    def _restart_heartbeat(self) -> None:
        """The interval changed: the beat task sleeps the old one first, and a broker
        restarted in that sleep would wait that long to hear from us again."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = self._loop.create_task(self._heartbeat())

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._drain)
        loop.add_signal_handler(signal.SIGINT, self._drain)
        for i in range(self.slots):
            threading.Thread(target=self._runner, args=(i,), name=f"runner-{i}",
                             daemon=True).start()
        if self.slots == 1:
            self._standin.start()
        loop.add_reader(self.sock.getsockopt(zmq.FD), self._on_readable)
        self._hello()
        self._beat = loop.create_task(self._heartbeat())
        finder = None
        if len(self.brokers) > 1:  # brokers sharing a store: follow the leader
            finder = LeaderFinder(self.brokers,
                                  lambda a: loop.call_soon_threadsafe(self._move, a),
                                  self.keys).start()
        await self.done.wait()
        if finder is not None:
            finder.stop()
        self._beat.cancel()
        with self._sync_ready:
            self._runners_stop = True
            self._sync_ready.notify_all()
        loop.remove_reader(self.sock.getsockopt(zmq.FD))
        if self.slots == 1:
            self._standin.stop()
        credit = self.credit
        log.info("worker %s stopping: completed=%d failed=%d credit=%d (grew %d, shrank %d "
                 "times)", self.spec.worker_id, self.completed, self.failed, credit.size,
                 credit.grown, credit.shrunk)
        self.sock.close()  # LINGER lets the last Report out
        self.ctx.term()
        return 0


def main(spec: WorkerSpec) -> int:
    actor.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop installs its handlers
    for module in spec.pool.tasks:
        try:
            importlib.import_module(module)
        except Exception:
            log.exception("worker %s cannot import task module %r", spec.worker_id, module)
            return CANNOT_START
    allowed = registered(spec.pool.tasks)
    if not allowed:
        log.warning("modules %s register no @task functions", spec.pool.tasks)
    return uvloop.run(Worker(spec, allowed).run())
