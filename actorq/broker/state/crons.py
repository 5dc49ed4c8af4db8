"""Cron entries as the broker keeps them, and what the scheduler is told.

The scheduler computes due times (tasks/cron.py) and says Fire; the broker creates
each firing's task once, however often and by whomever it is said, and keeps the
entries (with their last fired time) in the durable store.
"""

from __future__ import annotations

import logging

import msgspec

from actorq.broker.state.records import QUEUED, Task
from actorq.tasks import cron
from actorq.wire import protocol as p

log = logging.getLogger("actorq.broker.state")

SCHEDULE_CHUNK = 50_000  # timers per message when the whole schedule is sent
LAST_DUE_TIME = 1e11  # unix seconds (year 5138): a due time past it is not a time


class Crons:
    """Part of BrokerState (see state.py): cron entries and the scheduler's timers."""

    def _init_crons(self, entries: list[p.CronEntry], wall: float) -> None:
        self.crons: dict[str, p.CronEntry] = {}
        for entry in entries:
            self.crons[entry.name] = msgspec.structs.replace(entry, since=wall)
        self.cron_fired_total = 0

    def _scheduler_hello(self, peer: bytes, now: float) -> None:
        """A (re)started scheduler gets everything it must hold: it keeps nothing we lack."""
        self.scheduler = peer
        self.scheduler_seen = now
        out = self.outbox.to_workers
        out.append((peer, self.welcome()))
        timers = [p.Timer(tid, due) for tid, due in self.scheduled.items()]
        out.append((peer, p.Schedule(timers[:SCHEDULE_CHUNK], reset=True)))
        for i in range(SCHEDULE_CHUNK, len(timers), SCHEDULE_CHUNK):
            out.append((peer, p.Schedule(timers[i:i + SCHEDULE_CHUNK])))
        self._to_schedule = []
        out.append((peer, p.Crons(list(self.crons.values()))))

    def _crons_changed(self) -> None:
        if self.journal is not None:
            self.journal.crons = self.crons

    def _send_crons(self) -> None:
        if self.scheduler is not None:
            self.outbox.to_workers.append((self.scheduler, p.Crons(list(self.crons.values()))))

    def _add_cron(self, peer: bytes, req: int, entry: p.CronEntry, now: float) -> None:
        problem = cron.check_entry(entry.name, entry.schedule, entry.task, entry.queue,
                                   entry.priority)
        if problem is None and len(entry.payload) > self.max_payload_bytes:
            problem = f"cron arguments of {len(entry.payload)} bytes are over the limit"
        if problem is not None:
            self.outbox.to_clients.append((peer, p.Error("bad_option", problem, req)))
            return
        # Due times from now on: a replaced entry does not fire for its past.
        self.crons[entry.name] = msgspec.structs.replace(entry, last_fired=0.0,
                                                         since=now + self.wall_offset)
        self._send_crons()
        self._crons_changed()
        self.outbox.to_clients.append((peer, p.Done(req=req, ok=[True])))

    def _fire(self, peer: bytes, items: list[p.Firing], now: float) -> None:
        """Cron due times: each creates one task, once, whoever says it and how often."""
        wall = now + self.wall_offset
        for f in items:
            entry = self.crons.get(f.name)
            if (entry is None or not f.at > entry.last_fired or f.at <= entry.since
                    or not f.at < LAST_DUE_TIME):  # NaN, inf, or past any real clock
                continue
            self.crons[f.name] = msgspec.structs.replace(entry, last_fired=f.at)
            self._crons_changed()
            if self.draining:
                continue
            tid = f"{int(f.at * 1000):011x}-cron-{f.name}"
            if tid in self.tasks:
                continue
            name = self._strings.setdefault(entry.task, entry.task)
            task = Task(tid, name, entry.payload, entry.queue, entry.priority, QUEUED, wall)
            self.tasks[tid] = task
            self.order.ids.append(tid)
            self._touch(task)
            self._count_in(task)  # counted, never refused: crons are few and the operator's
            self._queue(task)
            self.submitted_total += 1
            self.cron_fired_total += 1
            log.info("cron %s fired for %.0f: task %s", f.name, f.at, tid)

    def _remove_cron(self, peer: bytes, req: int, name: str) -> None:
        existed = self.crons.pop(name, None) is not None
        if existed:
            self._send_crons()
            self._crons_changed()
        self.outbox.to_clients.append((peer, p.Done(req=req, ok=[existed])))
