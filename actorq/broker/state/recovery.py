"""Recovery: the broker's state rebuilt from its durable store, and the claims of
workers that kept running while it was down."""

from __future__ import annotations

import heapq
import logging

import msgspec

from actorq.broker.state.records import (
    CANCELLED,
    DEAD,
    QUEUED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    Attempt,
    Task,
    Worker,
)
from actorq.storage.journal import StoredTask
from actorq.wire import protocol as p
from actorq.wire.protocol import TaskState

log = logging.getLogger("actorq.broker.state")

_STATE_OF = {s.value: s for s in TaskState}  # 20x faster than TaskState(value): recovery


class Recovery:
    """Part of BrokerState (see state.py): loading from a store, and claimed leases."""

    def _init_recovery(self) -> None:
        # Tasks recovered as running: their workers may still have them and say so when
        # they register again (Hello.holding); what nobody claims by `unclaimed_until`
        # is queued again.
        self.unclaimed: dict[str, None] = {}
        self.unclaimed_until = 0.0

    def recover(self, rows: list[StoredTask], stored_crons: list[p.CronEntry], now: float) -> None:
        """Rebuild from a durable store: queued, scheduled and pending tasks as they were;
        running ones set aside for their workers to claim (see _adopt), queued again
        with their attempt counted if none does; finished ones kept until their TTL.
        Call before any message is handled."""
        # What was loaded is stored already: rebuilding it journals nothing.
        journal, self.journal = self.journal, None
        finished = self._load_tasks(rows, now)
        self._load_crons(stored_crons, now + self.wall_offset)
        self.journal = journal
        if self.unclaimed:
            # Workers that kept running say hello within a liveness period of reaching
            # this broker, and reach it within their reconnect back-off of it binding
            # (it binds before recovering); their tasks are theirs to claim until then.
            self.unclaimed_until = now + self.claim_window_s
        log.info("recovered %d task(s): %d queued, %d scheduled, %d pending, %d running "
                 "(for their workers to claim), %d finished", len(rows), self.queued,
                 len(self.scheduled), len(self.waiting), len(self.unclaimed), finished)

    def _load_tasks(self, rows: list[StoredTask], now: float) -> int:
        """Every stored task back in the table and its structures; the count finished."""
        wall = now + self.wall_offset
        # Lease tokens continue from the clock, so a late result of a lease the old
        # broker handed out can never match one this broker hands out.
        self._next_token = max(self._next_token, int(wall * 1_000_000))
        strings = self._strings
        finished: list[tuple[float, str]] = []
        pending: list[Task] = []
        for tid, stored_state, r in rows:
            state = _STATE_OF[stored_state]
            name = strings.setdefault(r.name, r.name)
            queue = strings.setdefault(r.queue, r.queue)
            owner = r.owner
            if owner is not None:
                owner = strings.setdefault(owner, owner)
            run = None
            if (r.attempts or r.started_at or r.finished_at or r.value is not None
                    or r.error is not None):
                run = Attempt(r.token, None, r.started_at, r.attempts, r.finished_at, r.value,
                              r.error, r.traceback)
            task = Task(tid, name, r.payload, queue, r.priority, state, r.submitted_at, None,
                        r.opts, run, owner)
            self.tasks[tid] = task
            self.order.ids.append(tid)
            opts = r.opts
            if opts is not None and opts.key is not None:
                self.keys[owner, opts.key] = tid
            if state in p.FINAL_STATES:
                finished.append((r.finished_at, tid))
                if state is DEAD:
                    self.dead[tid] = None
                continue
            self._count_in(task)
            if opts is not None and opts.expires_at:
                heapq.heappush(self.expiries, (opts.expires_at - self.wall_offset, tid))
            if state is RUNNING:
                self.unclaimed[tid] = None  # its worker may claim it (see _adopt)
            elif state is QUEUED:
                self._queue(task)
            elif state is SCHEDULED:
                self.scheduled[tid] = r.due if r.due is not None else wall
            else:
                pending.append(task)
        for task in pending:
            waiting = 0
            for d in task.opts.depends_on if task.opts and task.opts.depends_on else ():
                dep = self.tasks.get(d)
                if dep is None or dep.state in p.FINAL_STATES and dep.state is not SUCCEEDED:
                    waiting = -1
                    break
                if dep.state is not SUCCEEDED:
                    waiting += 1
                    self.dependents.setdefault(d, []).append(task.id)
                elif task.opts.pipe and d == task.opts.depends_on[0]:
                    self.piped[task.id] = dep.value
            if waiting < 0:
                self._finish(task, CANCELLED, now, error="DependencyFailed: a dependency "
                             "ended without success or was purged", cascade=False)
            elif waiting:
                self.waiting[task.id] = waiting
            else:
                self._release(task, now)
        for finished_at, tid in sorted(finished):
            self._finished.append((finished_at - self.wall_offset + self.result_ttl_s, tid))
        return len(finished)

    def _load_crons(self, stored_crons: list[p.CronEntry], wall: float) -> None:
        for entry in stored_crons:
            # Config entries keep their (maybe edited) definition; every entry keeps its
            # last fired time, and counts due times from now: runs missed while the
            # node was down are skipped.
            base = self.crons.get(entry.name, entry)
            self.crons[entry.name] = msgspec.structs.replace(
                base, last_fired=entry.last_fired, since=wall)

    def _adopt(self, worker: Worker, holding: list[p.Holding], now: float) -> None:
        """A worker registers holding leases, as after a restart of this broker from its
        database: a task recovered as running, or as queued (its lease was sent before
        the commit that would have recorded it), stays with the worker that has it
        instead of running a second time. A lease of a task that has since finished
        or runs elsewhere is left alone: its result will be stale."""
        adopted = 0
        wall = now + self.wall_offset
        for h in holding:
            task = self.tasks.get(h.id)
            if task is None:
                continue
            if task.state is RUNNING and h.id in self.unclaimed:
                del self.unclaimed[h.id]
                run = task.attempt()
            elif task.state is QUEUED:
                self._unqueue(task)  # its queue entry is skipped lazily
                task.state = RUNNING
                run = task.attempt()
                run.attempts += 1
                run.started_at = wall
            else:
                continue
            self._touch(task)
            run.token = h.token
            run.worker = worker.ident
            worker.leased[h.id] = task
            adopted += 1
        if adopted:
            log.info("worker %s registered holding %d task(s); they stay with it",
                     worker.name, adopted)

    def _release_unclaimed(self) -> None:
        """Recovered running tasks no worker said it holds: they run again."""
        n = 0
        for tid in self.unclaimed:
            task = self.tasks.get(tid)
            if task is not None and task.state is RUNNING and task.worker is None:
                self._queue(task)
                n += 1
        self.unclaimed.clear()
        if n:
            log.info("%d task(s) that were running when the broker stopped were not claimed "
                     "by any worker; queued again", n)
