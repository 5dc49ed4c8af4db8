"""Retry back-off and rate limits: how long to wait, in pure functions and objects."""

from __future__ import annotations

import random


def retry_delay(backoff: float, max_backoff: float, run: int,
                rand: random.Random | None = None) -> float:
    """Seconds before the retry that follows failed run number `run` (1-based).

    Exponential (backoff, 2*backoff, 4*backoff, ...) capped at max_backoff, with
    "equal jitter": half the delay is fixed and half is random, so retries of many
    tasks that failed together spread out instead of hitting a dependency at once,
    while no retry comes sooner than half its nominal delay.
    """
    nominal = min(max_backoff, backoff * 2.0 ** min(run - 1, 64))
    return nominal / 2 + (rand or random).uniform(0, nominal / 2)


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
