"""The scheduler actor: owns time. It holds delayed tasks and retry back-offs until
they are due and fires cron entries, handing due work back to the broker.

It keeps one heap of due times and sleeps until the earliest: no per-task timer
and no polling. It keeps nothing the broker does not also know: the broker sends
the full list of scheduled tasks and the cron table (with each entry's last fired
time) whenever the scheduler says hello, so a restarted scheduler carries on where
the old one stopped, and a due time is fired once because the broker ignores a
firing at or before the entry's last fired time.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import time

import zmq

from actorq.node import actor
from actorq.node.specs import SchedulerSpec
from actorq.tasks import cron as crons
from actorq.wire import protocol as p
from actorq.wire import sockets

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0  # until the broker's Welcome says otherwise
MAX_IDS_PER_MESSAGE = 5000


class Scheduler:
    def __init__(self, spec: SchedulerSpec, signals: actor.Signals) -> None:
        self.spec = spec
        self.signals = signals
        self.ctx = zmq.Context()
        ident = f"scheduler.{socket.gethostname()}.{os.getpid()}"
        self.sock = sockets.dealer(self.ctx, spec.broker, ident.encode(),
                                   spec.curve.load() if spec.curve else None)
        self.decoder = p.decoder(p.BrokerToWorker)
        # (due, kind, key): kind 0 = a task id, 1 = a cron entry name. Entries are
        # removed lazily: one whose due time no longer matches `due_of` is skipped.
        self.heap: list[tuple[float, int, str]] = []
        self.task_due: dict[str, float] = {}
        self.cron: dict[str, p.CronEntry] = {}
        self.cron_due: dict[str, float] = {}
        self.instance: str | None = None
        self.heartbeat_s = HEARTBEAT_S
        self.next_beat = 0.0
        self.last_heard = time.monotonic()
        self.ready = False

    def _send(self, msg: object) -> None:
        sockets.send_to_broker(self.sock, msg)

    def _hello(self) -> None:
        self._send(p.Hello(version=p.PROTOCOL_VERSION, role="scheduler", pid=os.getpid(),
                           host=socket.gethostname(), secret=self.spec.secret))

    # ---- what the broker says --------------------------------------------------------

    def _schedule(self, items: list[p.Timer], reset: bool) -> None:
        if reset:
            self.task_due.clear()
            self.heap = [e for e in self.heap if e[1] == 1]
            heapq.heapify(self.heap)
        for item in items:
            self.task_due[item.id] = item.due
            heapq.heappush(self.heap, (item.due, 0, item.id))

    def _crons(self, entries: list[p.CronEntry]) -> None:
        """The whole table: fire what came due while we were away, then plan the next."""
        now = time.time()
        self.cron = {e.name: e for e in entries}
        self.cron_due.clear()
        firings = []
        for e in entries:
            missed, nxt = crons.due_between(e.schedule, max(e.last_fired, e.since), now)
            firings += [p.Firing(e.name, at) for at in missed]
            self.cron_due[e.name] = nxt
            heapq.heappush(self.heap, (nxt, 1, e.name))
        if firings:
            self._send(p.Fire(items=firings))

    # ---- time ------------------------------------------------------------------------

    def _fire_due(self) -> None:
        now = time.time()
        heap = self.heap
        due_ids: list[str] = []
        firings: list[p.Firing] = []
        while heap and heap[0][0] <= now:
            due, kind, key = heapq.heappop(heap)
            if kind == 0:
                if self.task_due.get(key) == due:
                    del self.task_due[key]
                    due_ids.append(key)
            elif self.cron_due.get(key) == due and key in self.cron:
                firings.append(p.Firing(key, due))
                nxt = crons.next_after(self.cron[key].schedule, due)
                self.cron_due[key] = nxt
                heapq.heappush(heap, (nxt, 1, key))
        for i in range(0, len(due_ids), MAX_IDS_PER_MESSAGE):
            self._send(p.Due(ids=due_ids[i:i + MAX_IDS_PER_MESSAGE]))
        if firings:
            self._send(p.Fire(items=firings))

    def _next_wake(self) -> float:
        """Seconds until the earliest due time or heartbeat."""
        wake = self.next_beat - time.monotonic()
        if self.heap:
            wake = min(wake, self.heap[0][0] - time.time())
        return max(0.0, wake)

    # ---- loop ------------------------------------------------------------------------

    def _read(self) -> None:
        for msg in sockets.from_broker(self.sock, self.decoder):
            self.last_heard = time.monotonic()
            match msg:
                case p.Schedule(items=items, reset=reset):
                    self._schedule(items, reset)
                case p.Crons(entries=entries):
                    self._crons(entries)
                case p.Welcome(instance=instance, heartbeat_interval_s=interval):
                    self.instance = instance
                    self.heartbeat_s = interval
                    if not self.ready:
                        self.ready = True
                        log.info("scheduler ready (broker %s)", instance)
                        actor.report_ready({"scheduler": "up"})
                case p.Beat(instance=instance):
                    if instance != self.instance:
                        log.warning("broker instance changed (%s -> %s); registering again",
                                    self.instance, instance)
                        self._hello()
                case p.Error(code="unknown_peer"):
                    self._hello()
                case p.Error(code=code, message=message):
                    log.error("broker says %s: %s", code, message)

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.signals.fd, zmq.POLLIN)
        self._hello()
        self.next_beat = time.monotonic() + self.heartbeat_s
        while not self.signals.stop:
            events = dict(poller.poll(self._next_wake() * 1000))
            if self.signals.fd in events:
                self.signals.clear()
            if self.sock in events:
                self._read()
            self._fire_due()
            now = time.monotonic()
            if now >= self.next_beat:
                self.next_beat = now + self.heartbeat_s
                if now - self.last_heard > self.heartbeat_s * 3:
                    self._hello()  # the broker went quiet: it may be a new one
                else:
                    self._send(p.Heartbeat())
        log.info("scheduler stopping: %d task(s) and %d cron entr(ies) held", len(self.task_due),
                 len(self.cron))
        self.sock.close(linger=0)
        self.ctx.term()
        return 0


def main(spec: SchedulerSpec) -> int:
    actor.die_with_parent()
    return Scheduler(spec, actor.Signals()).run()
