"""Adaptive credit: how many leases a worker asks the broker to let it hold.

A worker holds its running tasks and the next ones, so a slot that frees starts
its next task without waiting a round trip to the broker. How many are worth
holding depends on how long tasks run against that round trip, which nobody
configures well: a flood of no-op tasks wants hundreds, 5 ms tasks want one
waiting per slot, long tasks want none waiting (a task held behind a long call
waits for it). So with no `prefetch` in its pool, the window adapts, in the spirit
of a congestion window:

- it grows (doubles) when a Dispatch arrives while slots sat idle waiting for it,
  and the broker says it had more queued than our credit let it send: the window,
  not the work, kept the slots idle, so tasks are short against the round trip;
- it shrinks (halves) when leases wait behind long calls: the worker's stall check
  found a lease waiting RELEASE_AFTER_S behind busy slots, or the broker asked for
  waiting leases back for an idle worker.

It stays between one lease per slot (`slots`) and MAX_CREDIT. A pool's `prefetch`
fixes it. Pure: the worker feeds it what it sees and sends what it returns.
"""

from __future__ import annotations

MAX_CREDIT = 256  # most leases an adaptive worker holds; a fixed prefetch may say more


def default_window(slots: int) -> int:
    """Where a window starts: a one-slot worker holds its next task too, so it does
    not wait a round trip between tasks; with more slots, one lease per slot."""
    return 2 if slots == 1 else slots


class CreditWindow:
    """The worker's window, and the credit the broker holds for it as last told."""

    def __init__(self, slots: int, prefetch: int = 0) -> None:
        self.fixed = prefetch > 0
        self.floor = slots
        self.ceiling = prefetch if self.fixed else max(MAX_CREDIT, 2 * slots)
        self.size = prefetch if self.fixed else default_window(slots)
        # The broker's free credit for us as we last set it, less the leases it has
        # sent since. Leases in flight make it an estimate; each update corrects it.
        self.announced = 0
        self.grown = 0
        self.shrunk = 0

    def starved(self, idle_slots: int, more: bool) -> bool:
        """A Dispatch came while `idle_slots` slots waited for leases; `more`: the broker
        had more queued for us than our credit let it send. True if the window grew."""
        if self.fixed or not more or idle_slots <= 0 or self.size >= self.ceiling:
            return False
        self.size = min(self.ceiling, self.size * 2)
        self.grown += 1
        return True

    def stalled(self) -> bool:
        """Leases waited behind long calls. True if the window shrank."""
        if self.fixed or self.size <= self.floor:
            return False
        self.size = max(self.floor, self.size // 2)
        self.shrunk += 1
        return True

    def dispatched(self, n: int) -> None:
        """The broker spent `n` of our credit on a Dispatch that just arrived."""
        self.announced = max(0, self.announced - n)

    def update(self, held: int, results: int) -> int:
        """The `credit` to send with a Report carrying `results` results, now that the
        worker holds `held` leases: the broker adds results + credit to what it holds
        for us (never going below zero), so that it holds size - held. Negative when
        the window shrank."""
        target = max(0, self.size - held)
        extra = target - (self.announced + results)
        self.announced = target
        return extra

    def hello_credit(self, held: int) -> int:
        """The credit to announce when (re)registering: the broker starts from it."""
        self.announced = max(0, self.size - held)
        return self.announced
