"""The lifecycle beyond queued -> running -> done: delays, dependencies, retries,
cancellation, deadlines, dead letters and progress.

Each structure holds only the tasks that use the feature, so plain tasks pay
nothing for it. The retry rule itself is tasks/retry.py; this part carries it out.
"""

from __future__ import annotations

import heapq
from typing import Any

from actorq.broker.state.records import (
    CANCELLED,
    DEAD,
    EXPIRED,
    NOT_STARTED,
    PENDING,
    QUEUED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    Task,
)
from actorq.tasks.retry import next_retry
from actorq.wire import protocol as p
from actorq.wire.protocol import TaskState

EARLY_TOLERANCE_S = 0.5  # a Due this much before the task's due time is a stale one


class Lifecycle:
    """Part of BrokerState (see state.py): every state change but queueing and leasing."""

    def _init_lifecycle(self) -> None:
        self.scheduled: dict[str, float] = {}  # id -> due (unix s): delayed, backing off
        self._to_schedule: list[p.Timer] = []  # for the scheduler, this turn
        self.waiting: dict[str, int] = {}  # pending id -> dependencies not yet succeeded
        self.dependents: dict[str, list[str]] = {}  # id -> pending ids waiting on it
        self.piped: dict[str, bytes] = {}  # chain step id -> previous step's result
        self.progress: dict[str, tuple[float, Any]] = {}
        self.keys: dict[tuple, str] = {}  # (owner, idempotency key) -> task id
        self.dead: dict[str, None] = {}  # dead letters, oldest first
        self.retry_base: dict[str, int] = {}  # attempts before a requeue of a dead task
        self.expiries: list[tuple[float, str]] = []  # heap of (monotonic deadline, id)
        self.history: dict[str, list[p.AttemptInfo]] = {}  # earlier attempts of a task

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
        self._count_in(task)
        self.retry_base[tid] = task.attempts  # a fresh retry budget
        if task.run is not None:
            run = task.run
            run.value = run.error = run.traceback = None
            run.finished_at = 0.0
        self._queue(task)
        return True

    def _finish(self, task: Task, state: TaskState, now: float, *, value: bytes | None = None,
                error: str | None = None, traceback: str | None = None,
                cascade: bool = True) -> None:
        self._touch(task)
        task.state = state
        self._count_out(task)
        run = task.attempt()
        run.finished_at = now + self.wall_offset
        run.value = value
        run.error = error
        run.traceback = traceback
        # (success never comes here: _results handles it inline, the hot path)
        self.finished_total[state] = self.finished_total.get(state, 0) + 1
        self._finished.append((now + self.result_ttl_s, task.id))
        ended = self.ended.get(state)
        if ended is not None:
            ended.ids.append(task.id)
        if state is DEAD:
            self.dead[task.id] = None
        if task.watchers:
            self._notify(task.watchers, self._outcome(task))
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
        runs = task.attempts - self.retry_base.get(task.id, 0)
        run = task.attempt()
        delay = next_retry(task.opts, runs, retryable, self.rand)
        self._end_attempt(task, error or "failed", now, keep=delay is not None)
        if delay is not None:
            run.error, run.traceback = error, traceback
            self.retries_total += 1
            self._schedule(task, now + self.wall_offset + delay)
            return
        self._finish(task, DEAD, now, error=error, traceback=traceback)

    def _end_attempt(self, task: Task, outcome: str, now: float, keep: bool) -> None:
        """An attempt ended without success: its worker leaves the lease (remembered by
        name), and when another attempt follows (`keep`) it joins the task's history."""
        run = task.run
        ident = run.worker
        if ident is not None:
            w = self.workers.get(ident)
            run.ran_on = w.name if w is not None else ident.decode(errors="replace")
            run.worker = None
        if keep:
            self.history.setdefault(task.id, []).append(p.AttemptInfo(
                run.ran_on, run.started_at, now + self.wall_offset, outcome))

    def _succeeded_ignored(self, task: Task, now: float) -> None:
        """ignore_result: waiters learn it succeeded, dependents go on, nothing is kept."""
        if task.watchers:
            self._notify(task.watchers, p.Outcome(task.id, SUCCEEDED))
            task.watchers = None
        if self.dependents:
            self._settle_dependents(task, now)
        self._forget(task)

    def _progress(self, items: list[p.Progress]) -> None:
        for pr in items:
            task = self.tasks.get(pr.id)
            if task is not None and task.token == pr.token and task.state is RUNNING:
                self.progress[pr.id] = (pr.fraction, pr.info)

    def _expire(self, now: float) -> None:
        heap = self.expiries
        while heap and heap[0][0] <= now:
            _, tid = heapq.heappop(heap)
            task = self.tasks.get(tid)
            if task is not None and task.state in NOT_STARTED:
                self._leave_waiting(task)
                self._finish(task, EXPIRED, now, error="Expired: not started before its "
                             "deadline")

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

    def _dead_letters(self, queue: str | None, limit: int) -> list[p.TaskInfo | None]:
        items: list[p.TaskInfo | None] = []
        for tid in self.dead:
            if len(items) >= max(0, limit):
                break
            task = self.tasks.get(tid)
            if task is not None and (queue is None or task.queue == queue):
                items.append(self._info(task))
        return items
