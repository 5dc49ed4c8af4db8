"""Running leased tasks: where each lease runs, and the Result it becomes.

- `async def` tasks run on the worker's event loop, up to `concurrency` at once.
- Plain functions run on `concurrency` runner threads, which take leases straight
  from a shared deque (an atomic popleft) and are woken once per batch.
- A worker with one slot runs a plain function on the loop thread itself when
  nothing else is running (no hand-off to a thread and back, about 0.1 ms a task
  here); the stand-in thread (standin.py) covers for the loop while it does.
- Leases held ahead of time wait in a buffer; if the call they wait for runs past
  RELEASE_AFTER_S, they go back to the broker (Release) for another worker.
"""

from __future__ import annotations

import asyncio
import functools
import time
import traceback
from typing import Any

from actorq.tasks.registry import TaskDef
from actorq.tasks.retry import is_retryable
from actorq.wire import protocol as p
from actorq.wire.payload import decode_args, decode_result, encode_result
from actorq.worker.context import current as current_task
from actorq.worker.standin import TAKEOVER_S

# Plain functions run on the loop thread back to back for at most this long, and
# at most a quarter of the worker's credit, before the loop sends their results and
# reads the socket again: results held longer hold back the credit that brings
# the next leases, and the worker would sit idle for a round trip.
INLINE_BATCH_S = 0.001
# A lease that has waited this long at the worker behind busy slots goes back to the
# broker for another worker (Release). This is what makes a lease held ahead of time
# safe by default: the next task waits here only while the running one is short.
RELEASE_AFTER_S = TAKEOVER_S


def _failure(lease: p.Lease, exc: BaseException, t0: float) -> p.Result:
    return p.Result(lease.id, lease.token, False, None, f"{type(exc).__name__}: {exc}",
                    traceback.format_exc(), time.perf_counter() - t0,
                    is_retryable(exc, lease.retry_on))


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


class Execution:
    """Part of Worker (worker.py): starting leases and turning calls into Results."""

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
                t.add_done_callback(functools.partial(self._async_ended, lease))
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

    def _release_waiting(self, limit: int | None = None) -> None:
        """Hand leases waiting in the buffer back to the broker, the last ones first (all
        of them, or `limit` when the broker asked for some back for an idle worker):
        from the loop thread, or the stand-in while it covers for a long call. Their
        credit returns only with the next results, when a slot is free, so the broker
        gives them to a worker that can start them. Leases waited: the window shrinks."""
        buffer = self.buffer
        if not buffer or not self.takes_release or self.stopping:
            return
        n = len(buffer) if limit is None else min(limit, len(buffer))
        leases = [buffer.pop() for _ in range(n)]
        leases.reverse()
        for lease in leases:
            self.holding.pop(lease.token, None)
        self.held -= len(leases)
        self.credit.stalled()
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
        board = self.board.tokens
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
                board[slot] = token
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
                board[slot] = 0
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
        back (at most INLINE_BATCH_S and a quarter of the credit); the stand-in covers
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
        board = self.board.tokens
        batch = max(1, self.credit.size // 4)
        ran = 0
        until = clock() + INLINE_BATCH_S
        # A function may start an event loop of its own (asyncio.run), as it could on
        # a runner thread; ours is not running while it does.
        asyncio._set_running_loop(None)
        try:
            while buffer and ran < batch:
                lease = buffer[0]
                tdef = allowed.get(lease.name)
                if tdef is None or tdef.is_async or not _coverable(lease):
                    break
                buffer.popleft()
                ran += 1
                t0 = clock()
                token = lease.token
                begin(lease, t0)
                board[0] = token  # the loop thread runs in runner place 0 (one slot)
                ctx = set_current((lease.id, token, report))
                try:
                    args, kwargs = decode_args(lease.payload)
                    if lease.prev is not None:  # a chain step: the previous result first
                        args = [decode_result(lease.prev), *args]
                    result = encode(lease, tdef.fn(*args, **kwargs), t0)
                except (Exception, SystemExit) as exc:  # a task's sys.exit() must not end the worker
                    result = _failure(lease, exc, t0)
                reset_current(ctx)
                board[0] = 0
                end()
                if not abandoned or token not in abandoned:  # else already reported
                    out.append(result)
                if clock() > until:
                    break
        finally:
            asyncio._set_running_loop(self._loop)

    def _async_ended(self, lease: p.Lease, t: asyncio.Task[None]) -> None:
        """An async task is over. One cancelled before its first step (a Stop read in
        the same turn as its Dispatch) never entered _run_async, which accounts for
        every other ending: its slot and its result are accounted here."""
        self._tasks.discard(t)
        if t.cancelled() and self._async_running.pop(lease.token, None) is not None:
            self.running_async -= 1
            self._complete(p.Result(lease.id, lease.token, False, None, "Cancelled: "
                                    "cancelled before it started", None, 0.0, False))

    async def _run_async(self, lease: p.Lease, tdef: TaskDef) -> None:
        t0 = time.perf_counter()
        token = lease.token
        current_task.set((lease.id, token, self._report_progress))
        deadline = None
        place = self._async_places.pop()
        self.board.tokens[place] = token
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
            self.board.tokens[place] = 0
            self._async_places.append(place)
        self.running_async -= 1
        self._complete(result)
