"""Rate limits: at most N dispatches a second of one task name, across all workers.

Set with `@task(rate_limit="100/s")` (parsed by options.parse_rate); workers announce
their tasks' limits when they register, and the broker's dispatch holds back a task
whose name is over its limit (broker/state/dispatch.py).
"""

from __future__ import annotations


class Limiter:
    """At most `rate` dispatches a second for one task name, evenly spaced.

    A dispatch at `now` is allowed when now >= next_at; it then moves next_at one
    interval on. No burst allowance: "100/s" means one every 10 ms, so any window
    of a second holds at most 100 (plus the one at its very start).
    """

    __slots__ = ("interval", "next_at", "released_for")

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.released_for = -1.0  # next_at for which a held task was put back

    def allows(self, now: float) -> bool:
        return now >= self.next_at

    def take(self, now: float) -> None:
        self.next_at = max(self.next_at, now) + self.interval
