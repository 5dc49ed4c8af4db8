"""Dispatch: queued tasks to workers with credit, leases, and the results that end them.

Round-robin over ready workers, highest priority first, FIFO within a priority; a
worker is sent at most as many leases as its credit. A lease's token, not its
time or worker, decides whether a result is current. Rate-limited names are held
aside here (tasks/ratelimit.py says when they may go).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

from actorq.broker.state.records import QUEUED, RUNNING, SUCCEEDED, Attempt, Task, Worker
from actorq.tasks.ratelimit import Limiter
from actorq.wire import protocol as p

STEAL_EVERY_S = 0.02  # a holder is asked for leases back at most this often
DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0]


class Dispatch:
    """Part of BrokerState (see state.py): credit, leases and results."""

    def _init_dispatch(self) -> None:
        self.ready: dict[bytes, None] = {}  # workers with credit, in round-robin order
        self._next_token = 0
        # Leases not yet journaled, in two generations (see journal_leases).
        self._new_leases: list[Task] = []
        self._old_leases: list[Task] = []
        self.limits: dict[str, Limiter] = {}  # task name -> rate limit
        self.held: dict[str, deque[Task]] = {}  # rate-limited tasks set aside, by name
        # Workers that may hold leases they have not started (more than their slots):
        # where an idle worker can steal from (_steal).
        self.holders: dict[bytes, None] = {}
        self.steals_total = 0

    def dispatch(self, now: float) -> None:
        """Hand queued tasks to workers with credit, round-robin, highest priority first."""
        if not self.queued or not self.ready:
            if self.holders and self.ready:
                self._steal(now)
            return
        if self.held:
            self._release_held(now)
        workers = self.workers
        ready = self.ready
        depth = self.depth
        while True:
            # Each ready worker takes at most its share of what is queued, so a few tasks
            # spread over idle workers instead of filling the first one's prefetch; a
            # second pass hands out what a worker short of credit or queues left.
            share = -(-self.queued // len(ready))
            progressed = False
            for ident in list(ready):
                w = workers[ident]
                was_idle = not w.leased
                given = self._lease_to(w, min(w.credit, share), now)
                if given:
                    progressed = True
                    if was_idle:
                        self.outbox.handoff = True
                    if len(w.leased) > w.slots:
                        self.holders[ident] = None
                del ready[ident]
                if w.credit > 0:
                    ready[ident] = None  # to the back of the round
                elif given and self.queued and any(depth.get(q) for q in w.queues):
                    # Its credit, not the work, ran out: see Dispatch.more.
                    self.outbox.more.add(ident)
                if not self.queued:
                    return
            if not progressed or not ready:
                return

    def _lease_to(self, w: Worker, want: int, now: float) -> int:
        """Lease up to `want` queued tasks to `w` (fewer if its queues run dry or rate
        limits hold some back); returns how many it got."""
        wall = now + self.wall_offset
        ident = w.ident
        out = self.outbox.dispatch
        limits = self.limits
        journal = self.journal
        piped = self.piped
        new_leases = self._new_leases
        Lease = p.Lease
        token = self._next_token
        leased = w.leased
        leases = None
        given = 0
        while want > 0:
            batch = self._pop_for(w, want)
            if not batch:
                break
            taken = 0
            for task in batch:
                if limits and task.name in limits:
                    lim = limits[task.name]
                    if not lim.allows(now):
                        self._hold(task)
                        continue
                    lim.take(now)
                token += 1
                if journal is not None:
                    new_leases.append(task)  # journaled late: see journal_leases
                task.state = RUNNING
                run = task.run
                if run is None:
                    task.run = run = Attempt(token, ident, wall, 1)
                else:
                    run.token, run.worker, run.started_at = token, ident, wall
                    run.attempts += 1
                tid = task.id
                leased[tid] = task
                taken += 1
                if leases is None:
                    leases = out.get(ident)
                    if leases is None:
                        leases = out[ident] = []
                opts = task.opts
                if opts is None:
                    leases.append(Lease(tid, task.name, task.payload, token, run.attempts))
                else:
                    leases.append(Lease(tid, task.name, task.payload, token, run.attempts,
                                        opts.timeout or None, opts.retry_on,
                                        piped.get(tid) if opts.pipe else None))
            w.credit -= taken
            want -= taken
            given += taken
        self._next_token = token
        return given

    def _steal(self, now: float) -> None:
        """Nothing is queued, yet a worker is idle while others hold leases they have not
        started (more than their slots): ask each such holder to hand back half of what
        waits there, once per STEAL_EVERY_S, so the idle worker can run it now instead
        of after the holder's long call."""
        idle = [w for ident in self.ready if not (w := self.workers[ident]).leased
                and not w.draining]
        if not idle:
            return
        for ident in list(self.holders):
            victim = self.workers.get(ident)
            waiting = len(victim.leased) - victim.slots if victim is not None else 0
            if waiting <= 0 or not victim.slots:
                del self.holders[ident]
                continue
            if now - victim.reclaimed_at < STEAL_EVERY_S:
                continue
            if any(q in victim.queues for w in idle for q in w.queues):
                victim.reclaimed_at = now
                self.steals_total += 1
                self.outbox.to_workers.append((ident, p.Reclaim(max(1, waiting // 2))))

    def _pop_for(self, w: Worker, n: int) -> list[Task]:
        """Up to `n` tasks for `w`: from its one queue, or the best head among its
        queues (a task at a time, so priorities across queues are honoured)."""
        queues = self.queues
        paused = self.paused
        if len(w.queues) == 1:
            q = queues.get(w.queues[0])
            if q is None or (paused and w.queues[0] in paused):
                return []
            tasks = q.pop_many(n)
            if tasks:
                self.depth[tasks[0].queue] -= len(tasks)
                self.queued -= len(tasks)
            return tasks
        best = None
        best_prio = -1
        for name in w.queues:
            q = queues.get(name)
            if q is None or name in paused:
                continue
            prio = q.peek_priority()
            if prio is not None and prio > best_prio:
                best, best_prio = q, prio
        task = best.pop() if best is not None else None
        if task is None:
            return []
        self.depth[task.queue] -= 1
        self.queued -= 1
        return [task]

    def _hold(self, task: Task) -> None:
        """Set aside a task whose name is over its rate limit; it stays queued (and
        counted) and goes back to the front of its queue when the limit allows."""
        held = self.held.get(task.name)
        if held is None:
            held = self.held[task.name] = deque()
        held.append(task)
        self.depth[task.queue] += 1
        self.queued += 1

    def _release_held(self, now: float) -> None:
        for name, held in list(self.held.items()):
            lim = self.limits[name]
            if lim.allows(now) and lim.released_for != lim.next_at:
                while held:
                    task = held.popleft()
                    if task.state is QUEUED:  # else cancelled or expired meanwhile
                        lim.released_for = lim.next_at
                        self.queues[task.queue].push_front(task)
                        break
            if not held:
                del self.held[name]

    def _add_credit(self, worker: Worker, n: int) -> None:
        """A worker returns credit with its results, or takes some back (n < 0) when its
        window shrank (worker/credit.py)."""
        if not n:
            return
        worker.credit = max(0, worker.credit + n)
        if not worker.credit:
            self.ready.pop(worker.ident, None)
        elif not worker.draining and worker.ident not in self.ready:
            self.ready[worker.ident] = None

    def _hand_back(self, worker: Worker, ids: list[str]) -> None:
        """Leases a worker never started go back to the front of their queues, in the
        order they were (each goes in front of the one after it)."""
        peer = worker.ident
        for tid in reversed(ids):
            task = worker.leased.pop(tid, None)
            if task is not None and task.state is RUNNING and task.worker == peer:
                task.run.attempts -= 1  # never started: not an attempt
                self.leases_returned_total += 1
                self._requeue(task)

    def _results(self, peer: bytes, worker: Worker | None, results: list[p.Result],
                 now: float) -> None:
        # The hot path of every task: success is handled inline (the general _finish
        # costs a call and a dict update per task), counters are added once per batch.
        tasks, workers, outcomes = self.tasks, self.workers, self.outbox.outcomes
        finished, journal = self._finished, self.journal
        expires, wall = now + self.result_ttl_s, now + self.wall_offset
        runs, waits, by_name = self.duration_counts, self.wait_counts, self.by_name
        buckets, shortest = DURATION_BUCKETS_S, DURATION_BUCKETS_S[0]
        succeeded, let_go_bytes, stale_before = 0, 0, self.stale_results_total
        duration_sum = wait_sum = 0.0
        # The reporting worker's own leases first: a small dict that stays in cache,
        # where the table of every task kept costs cache misses at a million entries.
        own = worker.leased.get if worker is not None else tasks.get
        last_client, last_list, Outcome = None, [], p.Outcome
        for r in results:
            task = own(r.id) or tasks.get(r.id)
            # The lease token, not a time or a worker id, says if a result is current: one
            # from a requeued attempt is stale unless nobody leased the task since.
            run = None if task is None else task.run
            if run is None or run.token != r.token:
                self.stale_results_total += 1
                continue
            wid = run.worker  # (None for a lease a dead worker held: no holder to update)
            holder = worker if worker is not None and worker.ident == wid else workers.get(wid)
            if holder is not None:
                holder.leased.pop(task.id, None)
            state = task.state
            if state is QUEUED:
                self._unqueue(task)
            elif state is not RUNNING:
                self.stale_results_total += 1  # e.g. cancelled while it ran
                continue
            # Run time and queue wait; the first buckets are filled once a batch (stats.py).
            duration, wait = r.duration_s, run.started_at - task.submitted_at
            if duration > shortest:
                runs[bisect_left(buckets, duration)] += 1
            if wait > shortest:
                waits[bisect_left(buckets, wait)] += 1
            duration_sum += duration
            wait_sum += wait
            if (named := by_name.get(task.name)) is not None:  # registered names only
                named[0 if r.ok else 1] += 1
                named[2] += duration
            if not r.ok:
                self._attempt_failed(task, r.error, r.traceback, r.retry, now)
                continue
            if journal is not None:
                journal.changed[task.id] = task
            task.state = SUCCEEDED
            run.finished_at = wall
            run.value = r.value
            let_go_bytes += len(task.payload)
            task.payload = b""  # no retry can need it now; keeps finished tasks small
            succeeded += 1
            if task.opts is not None and task.opts.ignore_result:
                self._succeeded_ignored(task, now)
                continue
            finished.append((expires, task.id))
            watchers = task.watchers
            if watchers:
                outcome = Outcome(task.id, SUCCEEDED, r.value)
                if watchers.__class__ is bytes:  # one client, usually the last one's
                    if watchers != last_client:
                        last_client = watchers
                        last_list = outcomes.get(watchers)
                        if last_list is None:
                            last_list = outcomes[watchers] = []
                    last_list.append(outcome)
                else:
                    self._notify(watchers, outcome)
                task.watchers = None
            if self.dependents:
                self._settle_dependents(task, now)
        self.live, self.live_bytes = self.live - succeeded, self.live_bytes - let_go_bytes
        seen = len(results) - (self.stale_results_total - stale_before)
        self._count_results(seen, succeeded, duration_sum, wait_sum)
        if worker is not None and not worker.leased:
            worker.idle_since = now
            self.outbox.handoff = True

    def journal_leases(self) -> bool:
        """Journal the leases of the generation before last that are still running, and
        start a new generation; call as each commit is about to start. True if leases
        wait for a later call.

        A lease is written one commit late because most tasks end before then, and
        their end is written anyway: writing the lease too was a third row for every
        task. What a crash inside that window costs is the count of an attempt that
        began moments before it (the task itself is kept, and its worker, if alive,
        claims it)."""
        old = self._old_leases
        if old:
            changed = self.journal.changed
            for task in old:
                if task.state is RUNNING:
                    changed[task.id] = task
        self._old_leases, self._new_leases = self._new_leases, []
        return bool(self._old_leases)
