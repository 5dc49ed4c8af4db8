"""What operators ask and order: task listings, a task in full, workers, pools and
queues, pausing, resuming and purging queues, requeueing dead letters, firing a cron.

Listings come from indices (the order log of every submission, the logs of tasks
that ended dead, cancelled or expired), never from a scan of the task table: a page
looks at no more than LIST_SCAN_PER_TASK entries per task it returns, and says where
to go on (its cursor) when it stopped early.
"""

from __future__ import annotations

import msgspec

from actorq.broker.state.records import CANCELLED, QUEUED, RUNNING, SUCCEEDED, Task
from actorq.wire import protocol as p
from actorq.wire.protocol import TaskState

MAX_PAGE = 500  # tasks a listing returns at most
LIST_SCAN_PER_TASK = 20  # index entries a listing may look at per task it returns ...
LIST_SCAN_MIN = 2_000  # ... and at least this many
STATES = {s.value for s in TaskState}


class BadRequest(Exception):
    """A query or command that makes no sense: answered with an Error naming it."""


class Queries:
    """Part of BrokerState (see state.py): answers for operators."""

    def _init_queries(self) -> None:
        self.paused: set[str] = set()

    def _list_tasks(self, q: p.ListTasks) -> p.TaskPage:
        if q.state is not None and q.state not in STATES:
            raise BadRequest(f"state: {q.state!r} is not one of {', '.join(sorted(STATES))}")
        if not 1 <= q.limit <= MAX_PAGE:
            raise BadRequest(f"limit: must be 1..{MAX_PAGE}, got {q.limit}")
        index = q.state if q.state in self.ended else "all"
        log = self.ended[q.state] if index != "all" else self.order
        position = log.end
        if q.cursor is not None:
            where, _, at = q.cursor.partition(":")
            if where != index or not at.isdigit():
                raise BadRequest(f"cursor: {q.cursor!r} is not a cursor of this listing")
            position = min(int(at), log.end)
        tasks, items = self.tasks, []
        state, queue, name = q.state, q.queue, q.name
        looks = max(LIST_SCAN_MIN, q.limit * LIST_SCAN_PER_TASK)
        start = log.start
        while position > start and len(items) < q.limit and looks:
            position -= 1
            looks -= 1
            task = tasks.get(log.at(position))
            if (task is None or (state is not None and task.state != state)
                    or (queue is not None and task.queue != queue)
                    or (name is not None and task.name != name)):
                continue
            items.append(self._info(task))
        return p.TaskPage(items, f"{index}:{position}" if position > start else None)

    def _detail(self, task: Task | None) -> p.TaskInfo | None:
        """A task in full: its arguments, result, traceback and every attempt."""
        info = self._info(task)
        if info is None:
            return None
        history = list(self.history.get(task.id, ()))
        if task.attempts > len(history) and task.started_at:
            if task.state is RUNNING:
                outcome = "running"
            elif task.state is SUCCEEDED:
                outcome = "succeeded"
            else:
                outcome = task.error or task.state
            history.append(p.AttemptInfo(info.worker, task.started_at, task.finished_at,
                                         outcome))
        return msgspec.structs.replace(info, payload=task.payload or None, value=task.value,
                                       traceback=task.traceback, history=history)

    def _requeue_matching(self, queue: str | None, name: str | None, now: float) -> int:
        ids = [tid for tid in self.dead
               if (t := self.tasks.get(tid)) is not None and (queue is None or t.queue == queue)
               and (name is None or t.name == name)]
        return sum(self._requeue_dead(tid, now) for tid in ids)

    def _workers_info(self, now: float) -> list[p.WorkerInfo]:
        out = []
        for w in self.workers.values():
            if w.lost_at is not None:
                state = "lost"
            elif w.draining:
                state = "draining"
            else:
                state = "busy" if len(w.leased) >= max(1, w.slots) else "idle"
            out.append(p.WorkerInfo(w.name, w.pool, w.host, w.pid or 0, state, list(w.leased),
                                    w.slots, w.credit, w.done, now - w.last_seen))
        return out

    def _pools_info(self, now: float) -> list[p.PoolInfo]:
        stats = self.stats(now)
        connected: dict[str, list] = {}
        for w in self.workers.values():
            connected.setdefault(w.pool, []).append(w)
        names = set(connected) | {s.pool for s in self.supervisors.values()}
        out = []
        for name in sorted(names):
            workers = connected.get(name, [])
            size = stats.pools.get(name)
            sups = [s for s in self.supervisors.values() if s.pool == name]
            queues = sorted({q for w in workers for q in w.queues} | {q for s in sups
                                                                      for q in s.queues})
            out.append(p.PoolInfo(
                name, stats.supervisors.get(name, "unsupervised"), max(1, len(sups)),
                len(workers), sum(len(w.leased) >= max(1, w.slots) for w in workers),
                size.target if size else len(workers), size.min_workers if size else 0,
                size.max_workers if size else 0, self.worker_restarts.get(name, 0), queues,
                next((s.failed for s in sups if s.failed), "")))
        return out

    def _queues_info(self, now: float) -> list[p.QueueInfo]:
        wall = now + self.wall_offset
        out = []
        for name in sorted(set(self.depth) | set(self.consumers) | self.paused):
            q = self.queues.get(name)
            heads = q.heads() if q is not None else []
            oldest = min((t.submitted_at for t in heads), default=wall)
            out.append(p.QueueInfo(name, self.depth.get(name, 0),
                                   q.by_priority() if q is not None else {},
                                   name in self.paused, self.consumers.get(name, 0),
                                   max(0.0, wall - oldest)))
        return out

    def _queue_command(self, queue: str, action: str, now: float) -> int:
        if not queue:
            raise BadRequest("queue: must be a non-empty string")
        if action == "pause":
            changed = queue not in self.paused
            self.paused.add(queue)
            return int(changed)
        if action == "resume":
            changed = queue in self.paused
            self.paused.discard(queue)
            return int(changed)
        if action == "purge":
            return self._purge_queue(queue, now)
        raise BadRequest(f"action: {action!r} is not pause, resume or purge")

    def _purge_queue(self, queue: str, now: float) -> int:
        """Cancel every task queued in `queue`; running ones are not touched."""
        q = self.queues.get(queue)
        if q is None:
            return 0
        doomed = [t for t in q.drain() if t.state is QUEUED]
        for task in doomed:
            self._unqueue(task)
            self._finish(task, CANCELLED, now, error="Cancelled: its queue was purged")
        return len(doomed)

    def _run_cron(self, name: str, now: float) -> bool:
        entry = self.crons.get(name)
        if entry is None:
            return False
        wall = now + self.wall_offset
        tid = f"{int(wall * 1000):011x}-cron-{name}-now"
        if tid not in self.tasks:
            task = Task(tid, entry.task, entry.payload, entry.queue, entry.priority, QUEUED,
                        wall)
            self.tasks[tid] = task
            self.order.ids.append(tid)
            self._touch(task)
            self._count_in(task)
            self._queue(task)
            self.submitted_total += 1
        return True

