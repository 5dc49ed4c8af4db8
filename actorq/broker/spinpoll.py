"""A poll that stays awake for a moment when an answer is near, before it sleeps.

On a virtual machine a CPU with nothing to run halts, and waking a thread on it
goes through the host: about 25 us here against 4 us for a switch on a CPU that
is awake (a pipe ping-pong between two processes, 2026-11-23). One round trip
crosses about twelve such wake-ups (each hop wakes the sender's ZeroMQ I/O thread,
the receiver's I/O thread and the receiving thread). When the broker hands a task
to an idle worker, its Report is usually a few hundred microseconds away; when a
worker's last result goes out, so is often the client's next submission. Polling
for it without sleeping keeps the broker's CPU awake, and yielding while it polls
lets the threads of that answer run there instead of waking a halted CPU.

Spinning costs CPU, so it is bounded: only when the turn says an answer is near
(Outbox.handoff in state/outbox.py: never for a worker with a stream of leases, where it
would only take CPU from the stream), for at most `spin_s`, and the spins that
find nothing are paid from a budget (MISS_SHARE of a core, after a burst of
MISS_BURST_S): with sparse traffic, where every spin misses, spinning stops until
the budget has refilled enough for one more. A spin that finds its answer costs
nothing from it: that CPU is the round trip's, not waste. A miss now and then in a
stream of hits, as when the machine slows for a moment, does not turn spinning
off; a fixed rest after each miss did, for 10 ms, in the slow spells where a round
trip needs the spin most. An idle broker hands nothing over and never spins. How
many spins found their answer is in the broker's stopping log line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

MISS_SHARE = 0.03  # spins that find nothing: at most this share of a core, over time
MISS_BURST_S = 0.01  # and this much of them at once (or one whole spin, if longer)


class SpinPoll:
    def __init__(self, poller: Any, spin_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.poller = poller  # anything with zmq.Poller's poll(timeout_ms)
        self.spin_s = spin_s
        self.clock = clock
        self.burst_s = max(MISS_BURST_S, spin_s)
        self.budget_s = self.burst_s  # spinning that may still find nothing
        self.budget_at = clock()  # when budget_s was last brought up to date
        self.spins = 0  # spins started
        self.hits = 0  # spins that found something

    def poll(self, timeout_ms: float, answer_near: bool) -> dict:
        """poller.poll(timeout_ms) as a dict, after a spin of up to spin_s (never past
        timeout_ms) if an answer is near and the budget can pay for a whole miss."""
        poll = self.poller.poll
        if self.spin_s > 0 and answer_near and timeout_ms > 0:
            clock = self.clock
            start = clock()
            budget = min(self.burst_s, self.budget_s + (start - self.budget_at) * MISS_SHARE)
            self.budget_at = start
            self.budget_s = budget
            if budget >= self.spin_s:
                self.spins += 1
                end = start + min(self.spin_s, timeout_ms / 1000)
                while True:
                    events = poll(0)
                    if events:
                        self.hits += 1
                        return dict(events)
                    now = clock()
                    if now >= end:
                        break
                    os.sched_yield()  # let what was woken here run here
                self.budget_s = budget - (now - start)
                timeout_ms = max(0.0, timeout_ms - (now - start) * 1000)
        return dict(poll(timeout_ms))
