"""When a pool grows and when it shrinks: the supervisor's scaling decisions. Pure.

A pool keeps between `min_workers` and `max_workers` worker processes (a pool
without them keeps `workers`: both bounds equal). Within its bounds:

- it grows while its queues have a backlog and every slot of its workers is busy
  (each holds at least as many leases as it has slots): one decision starts as many
  workers as run now (the pool doubles, up to `max_workers`), and the next decision
  waits until they are up, so one burst does not start a worker per queued task;
- it shrinks by draining the workers that have held no lease for `scale_down_after`
  seconds while nothing is queued, down to `min_workers`, and decides again once
  they are gone. A drained worker hands back the leases it has not started and
  finishes the ones it runs: no lease is lost and no task runs twice.

When the bounds change (`client.scale`, `actorq scale`), a pool below its new
minimum grows and one above its new maximum drains its idlest workers, one
decision at a time. The broker sends the load (PoolLoad) a few times a second; the
supervisor carries out what `decide` says.
"""

from __future__ import annotations

from dataclasses import dataclass

from actorq.wire.values import WorkerLoad


@dataclass(frozen=True)
class Decision:
    direction: str  # "up" or "down"
    count: int  # workers to start or to drain
    workers: list[str]  # the workers to drain (down), longest idle first
    reason: str


class Scaler:
    def __init__(self, workers: int, min_workers: int, max_workers: int,
                 scale_down_after_s: float) -> None:
        self.min = min_workers
        self.max = max_workers
        self.after_s = scale_down_after_s
        self.target = workers
        self.ups = 0
        self.downs = 0

    def set_bounds(self, min_workers: int, max_workers: int) -> None:
        self.min, self.max = min_workers, max_workers

    def decide(self, running: int, changing: int, backlog: int,
               loads: list[WorkerLoad]) -> Decision | None:
        """`running`: workers up; `changing`: workers starting or draining (a decision
        still under way); `backlog`: tasks queued in the pool's queues; `loads`: what
        the broker says of each running worker."""
        if changing:
            return None
        if running < self.min:
            return self._up(self.min - running, running, f"below min_workers {self.min}")
        if running > self.max:
            idlest = sorted(loads, key=lambda w: (w.held == 0, w.idle_s, -w.held), reverse=True)
            return self._down(running, [w.name for w in idlest[:running - self.max]],
                              f"above max_workers {self.max}")
        if backlog > 0 and running < self.max and loads and len(loads) >= running and all(
                w.held >= max(1, w.slots) for w in loads):
            return self._up(min(self.max - running, max(1, running)), running,
                            f"{backlog} task(s) queued and every slot busy")
        if backlog == 0 and running > self.min:
            idle = sorted((w for w in loads if w.held == 0 and w.idle_s >= self.after_s),
                          key=lambda w: w.idle_s, reverse=True)[:running - self.min]
            if idle:
                return self._down(running, [w.name for w in idle],
                                  f"idle for {self.after_s:g} s or more")
        return None

    def _up(self, count: int, running: int, reason: str) -> Decision:
        self.target = running + count
        self.ups += 1
        return Decision("up", count, [], reason)

    def _down(self, running: int, workers: list[str], reason: str) -> Decision | None:
        if not workers:
            return None
        self.target = running - len(workers)
        self.downs += 1
        return Decision("down", len(workers), workers, reason)
