"""What interrupts a running task: its timeout, a cancellation, and its progress reports.

An async task is cancelled in place. A plain function cannot be stopped from
outside its thread: the worker reports it (timed out or cancelled) at once and
asks its supervisor to replace the process (Stuck), which kills it after a grace.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from actorq.tasks.retry import is_retryable
from actorq.wire import protocol as p
from actorq.worker.execution import TaskTimeout

log = logging.getLogger("actorq.worker.worker")


class Interruptions:
    """Part of Worker (worker.py): timeouts, cancellation and progress."""

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
                          ran_s, is_retryable(TaskTimeout(message), lease.retry_on))
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
