"""The task table: every task by id, the named queues, and what a commit must write.

Owns `tasks`, the queues with their live depth, the interned strings and small
payloads that keep a million queued tasks small, the journal of changed tasks
(durable stores only), and the finished tasks waiting for their result TTL to be
forgotten.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from actorq.broker.state.queues import TaskQueue
from actorq.broker.state.records import CANCELLED, DEAD, EXPIRED, QUEUED, Task, _is_queued
from actorq.storage.journal import Journal
from actorq.wire import protocol as p

PURGE_BATCH = 1_000  # finished tasks forgotten per loop turn: ~2 ms with storage


class TaskLog:
    """Task ids in the order they were added, for listings newest first with a cursor.

    Ids are never removed one by one: a listing skips those whose task is gone or no
    longer matches, and the front is dropped in bulk once its tasks were purged.
    Positions are absolute (dropped entries keep counting), so a cursor stays valid."""

    __slots__ = ("ids", "base", "head")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.base = 0  # position of ids[0]
        self.head = 0  # ids before this index belong to purged tasks

    @property
    def end(self) -> int:
        return self.base + len(self.ids)

    @property
    def start(self) -> int:
        return self.base + self.head

    def at(self, position: int) -> str:
        return self.ids[position - self.base]

    def trim(self, alive: Callable[[str], bool], looks: int) -> None:
        """Skip ids at the front whose tasks are gone (at most `looks` of them), and drop
        the skipped ones once they are half the list: amortized O(1) per id."""
        ids, head = self.ids, self.head
        stop = min(len(ids), head + looks)
        while head < stop and not alive(ids[head]):
            head += 1
        if head > len(ids) // 2 and head > 1024:
            del ids[:head]
            self.base += head
            head = 0
        self.head = head


class TaskTable:
    """Part of BrokerState (see state.py): the tasks and their queues."""

    def _init_table(self, durable: bool) -> None:
        self.tasks: dict[str, Task] = {}
        self._strings: dict[str, str] = {}
        self._payloads: dict[bytes, bytes] = {}  # see intake.SHARED_PAYLOAD_BYTES
        self.queues: dict[str, TaskQueue[Task]] = {}
        self.depth: dict[str, int] = {}  # live queued tasks per queue
        self.queued = 0
        # Tasks not yet finished (pending, scheduled, queued, running) and the bytes of
        # their arguments: what [broker] max_queued and max_queued_bytes bound.
        self.live = 0
        self.live_bytes = 0
        self._finished: deque[tuple[float, str]] = deque()  # (expires_at, id) in finish order
        self.order = TaskLog()  # every task id as submitted: listings, newest first
        # Tasks as they ended other than by success, for listings of the rare states.
        self.ended: dict[str, TaskLog] = {DEAD: TaskLog(), CANCELLED: TaskLog(),
                                          EXPIRED: TaskLog()}
        # With a durable store: what this turn changed, for the broker to commit before
        # it sends anything. None in memory, so the hot paths skip it with one test.
        self.journal: Journal | None = Journal() if durable else None
        self.durable = durable

    def _count_in(self, task: Task) -> None:
        """A task begins to count against the limits (made, or requeued from dead)."""
        self.live += 1
        self.live_bytes += len(task.payload)

    def _count_out(self, task: Task) -> None:
        """A task finished: it no longer counts (its result has a TTL of its own)."""
        self.live -= 1
        self.live_bytes -= len(task.payload)

    def take_journal(self) -> Journal:
        """The changes since the last call, for a commit; the table starts a new journal."""
        journal, self.journal = self.journal, Journal()
        return journal

    def _touch(self, task: Task) -> None:
        """Note a changed task for the next group commit (durable stores only)."""
        if self.journal is not None:
            self.journal.changed[task.id] = task

    def _new_queue(self, name: str) -> TaskQueue[Task]:
        q = self.queues[name] = TaskQueue(_is_queued)
        self.depth.setdefault(name, 0)
        return q

    def _queue(self, task: Task) -> None:
        self._touch(task)
        task.state = QUEUED
        (self.queues.get(task.queue) or self._new_queue(task.queue)).push(task)
        self.depth[task.queue] += 1
        self.queued += 1

    def _requeue(self, task: Task) -> None:
        """Put a leased task back at the front of its priority: it was there first."""
        q = self.queues.get(task.queue) or self._new_queue(task.queue)
        self._touch(task)
        task.state = QUEUED
        if task.run is not None:
            task.run.worker = None  # the token stays: see _results
        q.push_front(task)
        self.depth[task.queue] += 1
        self.queued += 1

    def _unqueue(self, task: Task) -> None:
        """Account for a queued task leaving the queue other than by pop (lazy removal)."""
        self.depth[task.queue] -= 1
        self.queued -= 1

    def _forget(self, task: Task) -> None:
        """Drop a task and everything kept about it."""
        tid = task.id
        self.tasks.pop(tid, None)
        self.dead.pop(tid, None)
        if self.journal is not None:
            self.journal.changed.pop(tid, None)
            self.journal.fresh.pop(tid, None)
            self.journal.deleted.add(tid)
        if self.progress:
            self.progress.pop(tid, None)
        if self.retry_base:
            self.retry_base.pop(tid, None)
        if self.history:
            self.history.pop(tid, None)
        if self.piped:
            self.piped.pop(tid, None)
        opts = task.opts
        if opts is not None and opts.key is not None:
            slot = (task.owner, opts.key)
            if self.keys.get(slot) == tid:
                del self.keys[slot]

    def _forget_empty_queues(self) -> None:
        """Queues with nothing queued that no worker consumes and nobody paused are
        forgotten (and their metric series with them): a flood of one-task queues must
        not stay in memory and in /metrics forever. One comes back with its next task."""
        depth = self.depth
        for name in [n for n, d in depth.items() if not d]:
            if name not in self.consumers and name not in self.paused:
                del depth[name]
                self.queues.pop(name, None)

    def _purge(self, now: float) -> None:
        finished = self._finished
        tasks = self.tasks
        for _ in range(PURGE_BATCH):
            if not finished or finished[0][0] > now:
                break
            _, tid = finished.popleft()
            task = tasks.get(tid)
            if task is not None and task.state in p.FINAL_STATES:
                if (task.opts is None and not self.progress and self.journal is None
                        and (not self.history or tid not in self.history)):
                    del tasks[tid]
                else:
                    self._forget(task)
        alive = tasks.__contains__
        self.order.trim(alive, PURGE_BATCH)
        for log in self.ended.values():
            log.trim(alive, PURGE_BATCH)
