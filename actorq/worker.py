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
import traceback
from collections import deque
from typing import Any

import msgspec
import uvloop
import zmq

from . import actor
from . import protocol as p
from .config import DEFAULT_MAX_PAYLOAD_BYTES, PoolConfig
from .actor import EVENTS, NOBLOCK, POLLIN
from .context import current as current_task
from .standin import TAKEOVER_S, StandIn
from .tasks import TaskDef, decode_args, decode_result, encode_result, registered

log = logging.getLogger(__name__)

DRAIN_MAX = 1000  # frames per wake-up before yielding to the loop
# Plain functions run on the loop thread back to back for at most this long, and
# at most a quarter of the worker's credit, before the loop sends their results and
# reads the socket again: results held longer hold back the credit that brings
# the next leases, and the worker would sit idle for a round trip.
INLINE_BATCH_S = 0.001
# A lease that has waited this long at the worker behind busy slots goes back to the
# broker for another worker (Release). This is what makes a lease held ahead of time
# safe by default: the next task waits here only while the running one is short.
RELEASE_AFTER_S = TAKEOVER_S


class WorkerSpec(msgspec.Struct, kw_only=True):
    pool: PoolConfig
    broker: str  # the broker's worker endpoint
    worker_id: str


def _retryable(exc: BaseException, retry_on: list[str] | None) -> bool:
    """Whether `exc` is one of the lease's retry_on exceptions (by class or base class,
    named bare or as module.QualName)."""
    if retry_on is None:
        return True
    for cls in type(exc).__mro__:
        if cls.__name__ in retry_on or f"{cls.__module__}.{cls.__qualname__}" in retry_on:
            return True
    return False


def _failure(lease: p.Lease, exc: BaseException, t0: float) -> p.Result:
    return p.Result(lease.id, lease.token, False, None, f"{type(exc).__name__}: {exc}",
                    traceback.format_exc(), time.perf_counter() - t0,
                    _retryable(exc, lease.retry_on))


def _args(lease: p.Lease) -> tuple[list, dict]:
    args, kwargs = decode_args(lease.payload)
    if lease.prev is not None:  # a chain step: the previous step's result comes first
        args = [decode_result(lease.prev), *args]
    return args, kwargs


def _coverable(lease: p.Lease) -> bool:
    """Whether the stand-in can keep this lease's timeout when it runs on the loop
    thread (it looks in every TAKEOVER_S); a shorter one needs a runner's timer."""
    return lease.timeout is None or lease.timeout >= TAKEOVER_S


class TaskTimeout(TimeoutError):
    """An attempt ran past its `timeout`."""


class Worker:
    def __init__(self, spec: WorkerSpec, allowed: dict[str, TaskDef]) -> None:
        self.spec = spec
        self.pool = spec.pool
        self.allowed = allowed
        self.credit_max = self.pool.credit
        self.inline_batch = max(1, self.credit_max // 4)
        self.slots = self.pool.concurrency
        self.ctx = zmq.Context()
        self.sock = actor.dealer(self.ctx, spec.broker, spec.worker_id.encode())
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
        self._withheld = 0  # credit of released leases, returned with the next Report
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
        self._started: dict[int, float] = {}
        self._stopped: set[int] = set()  # tokens cancelled before or while running
        self._abandoned: set[int] = set()  # tokens already reported (timed out, stopped)
        self._stuck = False
        self._progress: deque[p.Progress] = deque()
        self._progress_scheduled = False

    # ---- socket ----------------------------------------------------------------------

    def _send(self, msg: object) -> None:
        actor.send_to_broker(self.sock, msg)
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
                           credit=0 if self.stopping else
                           self.credit_max - self.held - self._withheld,
                           pid=os.getpid(), host=socket.gethostname(),
                           rate_limits={n: d.rate_limit for n, d in self.allowed.items()
                                        if d.rate_limit},
                           holding=[p.Holding(tid, token) for token, tid in self.holding.items()]))

    def _handle(self, msg: object) -> None:
        match msg:
            case p.Dispatch(leases=leases):
                self.held += len(leases)
                if self.durable:
                    holding = self.holding
                    for lease in leases:
                        holding[lease.token] = lease.id
                self.buffer.extend(leases)
                self._start_ready()
            case p.Stop(ids=ids):
                self._stop_tasks(set(ids))
            case p.Beat(instance=instance):
                if instance != self.instance:
                    log.warning("broker instance changed (%s -> %s); registering again",
                                self.instance, instance)
                    self._hello()
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

    # ---- running tasks ---------------------------------------------------------------

    def _start_ready(self) -> None:
        """Move buffered leases to where they run: runner threads or the loop."""
        if self.stopping or self._standin.taken:
            return  # (the loop thread resumes here when it has the socket back)
        buffer = self.buffer
        allowed = self.allowed
        handed_to_runners = False
        while buffer:
            lease = buffer[0]
            tdef = allowed.get(lease.name)
            if tdef is None:
                buffer.popleft()
                self._complete(p.Result(
                    lease.id, lease.token, False, None,
                    f"UnknownTask: {lease.name!r} is not a task registered by this pool's "
                    f"modules ({', '.join(self.pool.tasks)})"))
            elif tdef.is_async:
                if self.running_async >= self.slots:
                    break  # async slots full; everything behind waits its turn (FIFO)
                buffer.popleft()
                self.running_async += 1
                t = self._loop.create_task(self._run_async(lease, tdef), name=lease.id)
                self._async_running[lease.token] = t
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            elif (self.slots == 1 and not self._handed and not self.running_async
                  and _coverable(lease)):
                # One batch per loop turn: the turn reads the socket and runs the
                # timers in between. The batch's results go out at once: held, they
                # hold back the credit for the next leases, and a worker whose next
                # lease is already here would hand in a result one task late.
                if self._inline_next_turn:
                    break
                self._run_inline()
                results, self._loop_results = self._loop_results, []
                self._report(results)
                if buffer and not self.stopping:
                    self._inline_next_turn = True
                    self._loop.call_soon(self._next_inline_batch)
                break
            else:
                buffer.popleft()
                self._sync.append((lease, tdef))
                self._handed += 1
                handed_to_runners = True
        if handed_to_runners:
            with self._sync_ready:
                self._sync_ready.notify(self.slots)
        if buffer and self._stall_check is None and self.takes_release:
            self._stall_check = self._loop.call_later(RELEASE_AFTER_S, self._check_stalled,
                                                      buffer[0])

    def _check_stalled(self, head: p.Lease) -> None:
        """RELEASE_AFTER_S after leases were left waiting: if the same one still heads
        the buffer, the slots it waits for are busy with long calls."""
        self._stall_check = None
        buffer = self.buffer
        if not buffer:
            return
        if buffer[0] is head:
            self._release_waiting()
        else:
            self._stall_check = self._loop.call_later(RELEASE_AFTER_S, self._check_stalled,
                                                      buffer[0])

    def _release_waiting(self) -> None:
        """Hand the leases waiting in the buffer back to the broker (the loop thread, or
        the stand-in while it covers for a long call). Their credit is withheld until
        a slot frees, so the broker gives them to a worker that can start them."""
        buffer = self.buffer
        if not buffer or not self.takes_release or self.stopping:
            return
        leases = list(buffer)
        buffer.clear()
        for lease in leases:
            self.holding.pop(lease.token, None)
        self.held -= len(leases)
        self._withheld += len(leases)
        self._send(p.Release([lease.id for lease in leases]))

    def _encode_value(self, lease: p.Lease, value: Any, t0: float) -> p.Result:
        try:
            data = encode_result(value)
        except TypeError as exc:
            return p.Result(lease.id, lease.token, False, None,
                            f"ResultNotEncodable: {exc}", None, time.perf_counter() - t0)
        if len(data) > self.max_result_bytes:
            return p.Result(lease.id, lease.token, False, None,
                            f"ResultTooLarge: result of {len(data)} bytes is over the "
                            f"{self.max_result_bytes}-byte limit", None,
                            time.perf_counter() - t0)
        return p.Result(lease.id, lease.token, True, data, None, None, time.perf_counter() - t0)

    def _runner(self, slot: int) -> None:
        """A runner thread: plain functions, one at a time per thread."""
        work = self._sync
        ready = self._sync_ready
        running = self._running
        stopped = self._stopped
        abandoned = self._abandoned
        report = self._report_progress
        while True:
            try:
                lease, tdef = work.popleft()
            except IndexError:
                with ready:
                    while not work and not self._runners_stop:
                        ready.wait()
                if self._runners_stop:
                    return
                continue
            t0 = time.perf_counter()
            token = lease.token
            if stopped and token in stopped:  # cancelled while it waited for this thread
                result = p.Result(lease.id, token, False, None, "Cancelled: cancelled before "
                                  "it started", None, 0.0, False)
            else:
                running[slot] = lease
                if lease.timeout is not None:
                    self._started[token] = time.monotonic()
                    self._loop.call_soon_threadsafe(self._watch_timeout, lease)
                ctx = current_task.set((lease.id, token, report))
                try:
                    args, kwargs = decode_args(lease.payload)
                    if lease.prev is not None:  # a chain step: the previous result first
                        args = [decode_result(lease.prev), *args]
                    result = self._encode_value(lease, tdef.fn(*args, **kwargs), t0)
                except (Exception, SystemExit) as exc:  # a task's sys.exit() must not end the thread
                    result = _failure(lease, exc, t0)
                current_task.reset(ctx)
                running[slot] = None
                if abandoned and token in abandoned:
                    continue  # already reported as timed out or cancelled
            # Append before reading the flag; the loop clears the flag before draining
            # the deque, so a result is never stranded between the two.
            self._threaded.append(result)
            if not self._threaded_scheduled:
                self._threaded_scheduled = True
                self._loop.call_soon_threadsafe(self._collect_threaded)

    def _collect_threaded(self) -> None:
        self._threaded_scheduled = False
        done = self._threaded
        results = []
        while True:
            try:
                results.append(done.popleft())
            except IndexError:
                break
        self._handed -= len(results)
        self._finished(results)

    def _run_inline(self) -> None:
        """Plain functions from the head of the buffer, on the loop thread, back to
        back (at most INLINE_BATCH_S and `inline_batch` of them); the stand-in covers
        for the loop while each runs. Stops at the first lease that must run
        elsewhere. The loop locals matter: this is the whole per-task cost."""
        buffer = self.buffer  # filtered in place by a Stop, never replaced
        allowed = self.allowed
        begin, end = self._standin.begin, self._standin.end
        abandoned = self._abandoned
        report = self._report_progress
        encode = self._encode_value
        set_current, reset_current = current_task.set, current_task.reset
        clock = time.perf_counter
        out = self._loop_results  # swapped only by our caller or a later callback
        ran = 0
        until = clock() + INLINE_BATCH_S
        # A function may start an event loop of its own (asyncio.run), as it could on
        # a runner thread; ours is not running while it does.
        asyncio._set_running_loop(None)
        try:
            while buffer and ran < self.inline_batch:
                lease = buffer[0]
                tdef = allowed.get(lease.name)
                if tdef is None or tdef.is_async or not _coverable(lease):
                    break
                buffer.popleft()
                ran += 1
                t0 = clock()
                token = lease.token
                begin(lease, t0)
                ctx = set_current((lease.id, token, report))
                try:
                    args, kwargs = decode_args(lease.payload)
                    if lease.prev is not None:  # a chain step: the previous result first
                        args = [decode_result(lease.prev), *args]
                    result = encode(lease, tdef.fn(*args, **kwargs), t0)
                except (Exception, SystemExit) as exc:  # a task's sys.exit() must not end the worker
                    result = _failure(lease, exc, t0)
                reset_current(ctx)
                end()
                if not abandoned or token not in abandoned:  # else already reported
                    out.append(result)
                if clock() > until:
                    break
        finally:
            asyncio._set_running_loop(self._loop)

    async def _run_async(self, lease: p.Lease, tdef: TaskDef) -> None:
        t0 = time.perf_counter()
        token = lease.token
        current_task.set((lease.id, token, self._report_progress))
        deadline = None
        try:
            args, kwargs = _args(lease)
            if lease.timeout is None:
                value = await tdef.fn(*args, **kwargs)
            else:
                deadline = asyncio.timeout(lease.timeout)  # cancels the task in place
                async with deadline:
                    value = await tdef.fn(*args, **kwargs)
            result = self._encode_value(lease, value, t0)
        except TimeoutError as caught:
            err: BaseException = caught
            if deadline is not None and deadline.expired():
                err = TaskTimeout(f"task exceeded its timeout of {lease.timeout:g} s")
            result = _failure(lease, err, t0)
        except asyncio.CancelledError:
            result = p.Result(lease.id, token, False, None, "Cancelled: cancelled while "
                              "running", None, time.perf_counter() - t0, False)
        except (Exception, SystemExit) as exc:
            result = _failure(lease, exc, t0)
        finally:
            self._async_running.pop(token, None)
        self.running_async -= 1
        self._complete(result)

    # ---- timeouts, cancellation, progress --------------------------------------------

    def _watch_timeout(self, lease: p.Lease) -> None:
        """On the loop, when a plain function with a timeout starts: one timer for it."""
        self._loop.call_later(lease.timeout, self._check_overrun, lease)

    def _check_overrun(self, lease: p.Lease) -> None:
        token = lease.token
        started = self._started.pop(token, None)
        if started is None or lease not in self._running or token in self._abandoned:
            return
        self._overran(lease, time.monotonic() - started)

    def _inline_overran(self, lease: p.Lease, started: float) -> None:
        """From the stand-in: the function on the loop thread (started at `started` on
        the perf_counter clock) passed its timeout."""
        if lease.token not in self._abandoned:
            self._overran(lease, time.perf_counter() - started)

    def _overran(self, lease: p.Lease, ran_s: float) -> None:
        token = lease.token
        message = f"task exceeded its timeout of {lease.timeout:g} s"
        result = p.Result(lease.id, token, False, None, f"TaskTimeout: {message}", None,
                          ran_s, _retryable(TaskTimeout(message), lease.retry_on))
        self._give_up_on(lease, result, f"task {lease.id} overran its {lease.timeout:g} s "
                         "timeout")

    def _give_up_on(self, lease: p.Lease, result: p.Result, reason: str) -> None:
        """A plain function we cannot stop: report it now and ask to be replaced."""
        self._abandoned.add(lease.token)
        self._complete(result)
        if not self._stuck:
            self._stuck = True
            log.warning("worker %s: %s; asking the supervisor to replace this process",
                        self.spec.worker_id, reason)
            self._send(p.Stuck(reason=reason))

    def _stop_tasks(self, ids: set[str]) -> None:
        """The broker cancelled these: cancel async ones in place, skip unstarted ones,
        and for a plain function already running, ask to be killed."""
        # Filtered in place: the loop thread may be iterating this very deque in
        # _start_ready while the stand-in handles the Stop.
        kept = []
        for lease in self.buffer:
            if lease.id in ids:
                self._complete(p.Result(lease.id, lease.token, False, None,
                                        "Cancelled: cancelled before it started", None, 0.0,
                                        False))
            else:
                kept.append(lease)
        if len(kept) != len(self.buffer):
            self.buffer.clear()
            self.buffer.extend(kept)
        for token, t in list(self._async_running.items()):
            if t.get_name() in ids:
                t.cancel()
        current = self._standin.current
        inline = [current[0]] if current is not None else []
        for lease in [*self._running, *inline]:
            if lease is not None and lease.id in ids and lease.token not in self._abandoned:
                self._give_up_on(lease, p.Result(lease.id, lease.token, False, None,
                                                 "Cancelled: cancelled while running", None,
                                                 0.0, False),
                                 f"task {lease.id} was cancelled while running")
        for lease, _ in list(self._sync):
            if lease.id in ids:
                self._stopped.add(lease.token)

    def _report_progress(self, task_id: str, token: int, fraction: float, info: Any) -> None:
        """From a task (any thread): queue a progress report for the next flush."""
        self._progress.append(p.Progress(task_id, token, fraction, info))
        if not self._progress_scheduled:
            self._progress_scheduled = True
            if self._standin.taken:
                self._standin.poke()  # the loop thread is the one running the task
            else:
                self._loop.call_soon_threadsafe(self._flush_progress)

    def _flush_progress(self) -> None:
        self._progress_scheduled = False
        latest: dict[int, p.Progress] = {}
        while True:
            try:
                item = self._progress.popleft()
            except IndexError:
                break
            latest[item.token] = item
        if latest:
            self._send(p.Report([], progress=list(latest.values())))

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
        """Send results from the loop thread; a slot is free, so credit withheld for
        released leases goes back with them."""
        withheld = self._withheld
        if not results and not withheld:
            return
        self._withheld = 0
        self._account(results)
        self._send(p.Report(results, credit=withheld))
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
            self._send(p.Report(results))
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
        await self.done.wait()
        self._beat.cancel()
        with self._sync_ready:
            self._runners_stop = True
            self._sync_ready.notify_all()
        loop.remove_reader(self.sock.getsockopt(zmq.FD))
        if self.slots == 1:
            self._standin.stop()
        log.info("worker %s stopping: completed=%d failed=%d", self.spec.worker_id,
                 self.completed, self.failed)
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
            return 3
    allowed = registered(spec.pool.tasks)
    if not allowed:
        log.warning("modules %s register no @task functions", spec.pool.tasks)
    return uvloop.run(Worker(spec, allowed).run())
