"""Submissions: checking them, accepting them into the table, and who hears the outcome.

The hot path of every task starts here (`_submit`): a plain task costs one check,
one Task and one deque append, a batch's queue lane found once.
"""

from __future__ import annotations

import heapq
from collections import deque

from actorq.broker.state.records import CANCELLED, EXPIRED, PENDING, QUEUED, SUCCEEDED, Task
from actorq.tasks.options import broker_check
from actorq.wire import protocol as p

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 200  # characters in a task or queue name
MAX_PRIORITY = 255
MAX_INTERNED = 10_000  # distinct task names and queue names kept as shared strings
# Payloads this short are kept as one shared copy per distinct value (up to
# MAX_INTERNED of them): a task without arguments, or with the same few small ones
# (a cron job, "refresh the cache"), is common, and each decoded copy of its 3-16
# byte payload is a 48-64 byte object per queued task. Longer payloads are rarely
# equal and are not worth the lookup.
SHARED_PAYLOAD_BYTES = 16


class Intake:
    """Part of BrokerState (see state.py): clients' submissions, watches and queries."""

    def _reject(self, peer: bytes, task_id: str, code: str, message: str) -> None:
        self.rejected_total += 1
        self.outbox.rejected.setdefault(peer, []).append(p.Rejection(task_id, code, message))

    def _submit(self, peer: bytes, specs: list[p.TaskSpec], now: float) -> None:
        wall = now + self.wall_offset
        accepted = self.outbox.accepted.get(peer)
        if accepted is None:
            accepted = self.outbox.accepted[peer] = []
        tasks, queues, depth = self.tasks, self.queues, self.depth
        max_payload = self.max_payload_bytes
        strings = self._strings
        payloads = self._payloads
        journal = self.journal
        listed = self.order.ids.append
        owner = self.principals.get(peer, peer)
        self._bound_interned()
        added = added_bytes = 0
        # What [broker] max_queued and max_queued_bytes leave for this batch.
        room, room_bytes = self.max_queued - self.live, self.max_queued_bytes - self.live_bytes
        full: tuple[str, str] | None = None  # the batch's queue_full answer, made once
        refusing = self.draining or self.storage_full
        lane_queue: str | None = None  # the queue and priority the last task went to
        lane_priority = lane_added = 0
        lane: deque[Task] = deque()
        for spec in specs:
            tid = spec.id
            existing = tasks.get(tid)
            if existing is not None:
                self._resubmitted(peer, owner, existing, accepted)
                continue
            name, queue, priority = spec.name, spec.queue, spec.priority
            opts = spec.opts
            size = len(spec.payload)
            # One cheap test on the hot path; the detailed one only when it fails.
            if (refusing or size > max_payload or ":" not in name or not queue
                    or not 0 <= priority <= MAX_PRIORITY or not 0 < len(tid) <= MAX_ID_LENGTH
                    or added >= room or size > room_bytes - added_bytes):
                full = self._refuse_spec(peer, spec, full if added >= room else None,
                                         added, added_bytes)
                continue
            # Every task of a batch decodes its own copy of the same name and queue
            # strings; keeping one copy of each saves ~120 bytes per queued task. A
            # string is measured once, when first seen (_intern).
            name = strings.get(name) or self._intern(name)
            queue = strings.get(queue) or self._intern(queue)
            if name is None or queue is None:
                self._reject(peer, tid, "bad_option", "task and queue names are at most "
                             f"{MAX_NAME_LENGTH} characters")
                continue
            if opts is not None:
                self._submit_with_options(peer, owner, spec, name, queue, opts, now, accepted)
                room = self.max_queued - self.live  # it counted itself, if accepted
                room_bytes = self.max_queued_bytes - self.live_bytes
                continue
            payload = spec.payload
            if len(payload) <= SHARED_PAYLOAD_BYTES:
                payload = payloads.setdefault(payload, payload)
            task = Task(tid, name, payload, queue, priority, QUEUED, wall, watchers=peer,
                        owner=owner)
            tasks[tid] = task
            if journal is not None:
                journal.fresh[tid] = task
            # A batch is usually one queue and one priority: find its lane once.
            if queue is not lane_queue or priority != lane_priority:
                if lane_queue is not None:
                    depth[lane_queue] += lane_added
                lane_queue, lane_priority, lane_added = queue, priority, 0
                lane = (queues.get(queue) or self._new_queue(queue)).lane(priority)
                if queue not in self.consumers:
                    self.outbox.unserved.setdefault(peer, set()).add(queue)
            lane.append(task)
            lane_added += 1
            accepted.append(tid)
            listed(tid)
            added += 1
            added_bytes += size
        if lane_queue is not None:
            depth[lane_queue] += lane_added
        self.queued += added
        self.live += added
        self.live_bytes += added_bytes
        self.submitted_total += added

    def _bound_interned(self) -> None:
        if len(self._strings) > MAX_INTERNED:
            self._strings.clear()  # a flood of distinct names must not grow this forever
        if len(self._payloads) > MAX_INTERNED:
            self._payloads.clear()  # nor one of distinct small arguments

    def _resubmitted(self, peer: bytes, owner: bytes, existing: Task,
                     accepted: list[str]) -> None:
        """A submission of an id we hold: the owner's retry is a no-op that answers as
        the first submission did (and this peer hears the outcome); anyone else's is
        refused."""
        if existing.owner is not None and existing.owner != owner:
            self._reject(peer, existing.id, "id_taken", "another client holds a task with "
                         "this id; let the client make ids")
            return
        accepted.append(existing.id)
        self._add_watcher(existing, peer)

    def _refuse_spec(self, peer: bytes, spec: p.TaskSpec, full: tuple[str, str] | None,
                     added: int, added_bytes: int) -> tuple[str, str] | None:
        """Refuse a submission, saying why; returns the batch's queue_full answer. A
        flood meets a full broker a million times: `full`, when given, is reused."""
        why = full or self._validate(spec, added, added_bytes)
        self._reject(peer, spec.id, *why)
        return why if why[0] == "queue_full" else full

    def _submit_with_options(self, peer: bytes, owner: bytes, spec: p.TaskSpec,
                             name: str, queue: str, opts: p.Options, now: float,
                             accepted: list[str]) -> None:
        """The submit path of a task with lifecycle options (its own accounting)."""
        tid = spec.id
        problem = broker_check(opts)
        if problem:
            self._reject(peer, tid, "bad_option", problem)
            return
        tasks = self.tasks
        if opts.key is not None:
            first = tasks.get(self.keys.get((owner, opts.key), ""))
            if first is not None:
                # Idempotent resubmission: answer with the first task and watch it.
                accepted.append(tid)
                self.outbox.aliases.setdefault(peer, {})[tid] = first.id
                self._add_watcher(first, peer)
                return
        deps = opts.depends_on
        if deps:
            for d in deps:
                if d not in tasks:
                    self._reject(peer, tid, "bad_option", f"depends_on: no task {d!r} on this "
                                 "broker (never submitted, not yet acknowledged, or purged)")
                    return
        wall = now + self.wall_offset
        task = Task(tid, name, spec.payload, queue, spec.priority, PENDING, wall, watchers=peer,
                    opts=opts, owner=owner)
        tasks[tid] = task
        self._touch(task)
        self._count_in(task)
        accepted.append(tid)
        self.order.ids.append(tid)
        self.submitted_total += 1
        if queue not in self.consumers:
            self.outbox.unserved.setdefault(peer, set()).add(queue)
        if opts.key is not None:
            self.keys[owner, opts.key] = tid
        if opts.expires_at:
            if opts.expires_at <= wall:
                self._finish(task, EXPIRED, now, error="Expired: its deadline had passed "
                             "when it was submitted")
                return
            heapq.heappush(self.expiries, (opts.expires_at - self.wall_offset, tid))
        if deps:
            waiting = 0
            for i, d in enumerate(deps):
                dep = tasks[d]
                if dep.state is SUCCEEDED:
                    if i == 0 and opts.pipe:
                        self.piped[tid] = dep.value
                elif dep.state in p.FINAL_STATES:
                    self._finish(task, CANCELLED, now, error=self._dependency_error(dep))
                    return
                else:
                    waiting += 1
                    self.dependents.setdefault(d, []).append(tid)
            if waiting:
                self.waiting[tid] = waiting
                return
        self._release(task, now)
        return

    def _intern(self, text: str) -> str | None:
        """A task or queue name first seen: kept as the shared copy, or None when it is
        too long (a name is a metric label and a dict key for as long as it is used)."""
        if len(text) > MAX_NAME_LENGTH:
            return None
        self._strings[text] = text
        return text

    def _validate(self, spec: p.TaskSpec, added: int = 0, added_bytes: int = 0
                  ) -> tuple[str, str]:
        """Why a submission is refused: (code, message). `added`: tasks of this batch
        accepted before it, not yet counted in `live`."""
        if self.draining:
            return "draining", "the broker is shutting down and takes no new work"
        if self.storage_full:
            return ("disk_full", "the broker's storage is full (database or disk is full): "
                    "it takes no new work until there is room; retry later")
        if not spec.id or len(spec.id) > MAX_ID_LENGTH:
            return "bad_option", f"task id must be 1..{MAX_ID_LENGTH} characters"
        if len(spec.payload) > self.max_payload_bytes:
            return ("too_large", f"payload of {len(spec.payload)} bytes is over the "
                    f"{self.max_payload_bytes}-byte limit")
        if self.live + added >= self.max_queued:
            return ("queue_full", f"the broker holds {self.live + added} unfinished tasks, its "
                    f"limit ([broker] max_queued = {self.max_queued}); retry when workers "
                    "have caught up")
        held = self.live_bytes + added_bytes
        if held + len(spec.payload) > self.max_queued_bytes:
            return ("queue_full", f"the broker holds {held} bytes of unfinished tasks' "
                    f"arguments; {len(spec.payload)} more would pass its limit ([broker] "
                    f"max_queued_bytes = {self.max_queued_bytes}); retry when workers have "
                    "caught up")
        if ":" not in spec.name:
            return "bad_option", f"task name {spec.name!r} is not of the form 'module:function'"
        if not spec.queue:
            return "bad_option", "queue must be a non-empty string"
        return "bad_option", f"priority {spec.priority} is outside 0..{MAX_PRIORITY}"

    def _add_watcher(self, task: Task, peer: bytes) -> None:
        if task.state in p.FINAL_STATES:
            self.outbox.outcomes.setdefault(peer, []).append(self._outcome(task))
        elif task.watchers is None:
            task.watchers = peer
        elif isinstance(task.watchers, bytes):
            if task.watchers != peer:
                task.watchers = [task.watchers, peer]
        elif peer not in task.watchers:
            task.watchers.append(peer)

    def _notify(self, watchers: bytes | list[bytes], outcome: p.Outcome) -> None:
        """Queue a task's outcome for every client watching it."""
        outcomes = self.outbox.outcomes
        for peer in ((watchers,) if watchers.__class__ is bytes else watchers):
            lst = outcomes.get(peer)
            if lst is None:
                outcomes[peer] = [outcome]
            else:
                lst.append(outcome)

    def _watch(self, peer: bytes, ids: list[str]) -> None:
        for tid in ids:
            task = self.tasks.get(tid)
            if task is None or not self._mine(peer, task):
                out = p.Outcome(tid, "unknown", error=f"no task {tid!r} on this broker")
                self.outbox.outcomes.setdefault(peer, []).append(out)
            else:
                self._add_watcher(task, peer)

    @staticmethod
    def _outcome(task: Task) -> p.Outcome:
        return p.Outcome(task.id, task.state, task.value, task.error, task.traceback)

    def _info(self, task: Task | None) -> p.TaskInfo | None:
        if task is None:
            return None
        w = self.workers.get(task.worker) if task.worker else None
        prog = self.progress.get(task.id) if self.progress else None
        return p.TaskInfo(
            id=task.id, name=task.name, queue=task.queue, priority=task.priority,
            state=task.state, attempts=task.attempts,
            worker=w.name if w else (task.worker.decode(errors="replace") if task.worker
                                     else task.ran_on),
            submitted_at=task.submitted_at, started_at=task.started_at,
            finished_at=task.finished_at, error=task.error,
            scheduled_for=self.scheduled.get(task.id, 0.0),
            progress=prog[0] if prog else None, progress_info=prog[1] if prog else None,
            retries=task.opts.retries if task.opts else 0,
            depends_on=task.opts.depends_on if task.opts else None,
        )
