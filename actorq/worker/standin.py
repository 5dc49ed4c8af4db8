"""The stand-in: keeps a worker present while its loop thread runs a plain function.

A worker with one slot runs plain functions on its event-loop thread. Handing a
task to a runner thread and its result back costs two thread wake-ups, about
0.1 ms a task on a virtual machine whose idle vCPUs sleep in the host; that was
a fifth of a round trip. The price is that while a function runs, nothing on the
loop thread does: no heartbeat, no reading of Stop or Dispatch, no timeout.

The stand-in thread pays that price back. It looks in on the loop thread every
TAKEOVER_S while plain functions run and, if one call is still going after
TAKEOVER_S, takes the socket over (a lock hand-over, which is the memory barrier
ZeroMQ asks for when a socket changes threads) and does the loop's duties for
that one call: heartbeats, reading and handling messages, its timeout, progress
and results, and handing back the leases that wait behind it (protocol.Release).
When the call returns, the loop thread asks for the socket back and waits until
the stand-in has finished its turn. Calls shorter than TAKEOVER_S,
nearly all of them, cost the loop thread a few attribute writes and one
uncontended lock; after PARK_AFTER_S without one the stand-in sleeps until the next.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Protocol

import zmq

from actorq.wire import protocol as p
from actorq.wire import sockets

log = logging.getLogger(__name__)

# How long a plain function runs on the loop thread before the stand-in takes its
# duties over. Well inside the broker's shortest sensible silence window (3 beats)
# and short enough for a timeout or a Stop to land on time; a task shorter than
# this never involves a second thread.
TAKEOVER_S = 0.05
PARK_AFTER_S = 1.0  # without an inline call this long, stop looking in


class Covered(Protocol):
    """What the stand-in needs from the worker it stands in for."""

    sock: zmq.Socket
    heartbeat_s: float

    def _read_messages(self) -> bool: ...
    def _beat_once(self) -> None: ...
    def _inline_overran(self, lease: p.Lease, started: float) -> None: ...
    def _flush_covered(self) -> None: ...
    def _release_waiting(self) -> None: ...
    def _resume(self) -> None: ...


class StandIn:
    def __init__(self, worker: Covered) -> None:
        self.worker = worker
        # (lease, start on the perf_counter clock) of the call running on the loop
        # thread, or None. One tuple, assigned whole, so the stand-in never reads the
        # start of one call with the lease of another; a new tuple per call.
        self.current: tuple[p.Lease, float] | None = None
        self.calls = 0  # inline calls so far, for the stand-in to see activity
        self.taken = False  # the stand-in holds the socket and does the loop's duties
        self._lock = threading.Lock()  # `with` on a bare Lock is the cheap path
        self._cond = threading.Condition(self._lock)
        self._parked = False
        self._returning = False
        self._stop = False
        self._wake_r, self._wake_w = sockets.wake_pipe()
        self._thread = threading.Thread(target=self._run, name="stand-in", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(2)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- the loop thread -------------------------------------------------------------

    def begin(self, lease: p.Lease, started: float) -> None:
        """A plain function starts on the loop thread (`started`: perf_counter)."""
        self.calls += 1
        self.current = (lease, started)
        # Written after `current`; the stand-in sets _parked before it checks
        # `current`, so one of the two always sees the other (no lost wake-up).
        if self._parked:
            with self._cond:
                self._cond.notify_all()

    def end(self) -> None:
        """The function returned: take the socket back if the stand-in holds it."""
        with self._lock:
            self.current = None
            if not self.taken:
                return
            self._returning = True
        self.poke()
        with self._cond:
            while self.taken:
                self._cond.wait()
            self._returning = False
        self.worker._resume()

    def poke(self) -> None:
        """Wake the stand-in's poll (something for it to send)."""
        sockets.poke(self._wake_w)

    # ---- the stand-in thread ---------------------------------------------------------

    def _run(self) -> None:
        clock = time.perf_counter
        last_calls = self.calls
        quiet_since = clock()
        while True:
            with self._lock:
                if self._stop:
                    return
            now = clock()
            current = self.current
            if current is None:
                if self.calls != last_calls:
                    last_calls, quiet_since = self.calls, now
                elif now - quiet_since >= PARK_AFTER_S:
                    self._park()
                    quiet_since = clock()
                    continue
                self._sleep(TAKEOVER_S)
                continue
            last_calls = self.calls
            due = current[1] + TAKEOVER_S
            if now < due:
                self._sleep(due - now)
                continue
            with self._lock:
                if self.current is not current or self._stop:
                    continue
                self.taken = True
            try:
                self._cover(current)
            except Exception:  # the worker must get its socket back whatever happened
                log.exception("the stand-in failed while covering for the loop thread")
            finally:
                with self._cond:
                    self.taken = False
                    self._cond.notify_all()

    def _park(self) -> None:
        with self._cond:
            self._parked = True
            if self.current is None and not self._stop:
                self._cond.wait()
            self._parked = False

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._stop:
                self._cond.wait(seconds)

    def _cover(self, current: tuple[Any, float]) -> None:
        """Do the loop thread's duties until it asks for the socket back."""
        worker = self.worker
        clock = time.perf_counter
        lease, started = current
        deadline = started + lease.timeout if lease.timeout is not None else None
        poller = zmq.Poller()
        poller.register(worker.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_beat = clock()  # beat at once: the loop's own beat may be overdue
        while True:
            with self._lock:
                if self._returning or self._stop:
                    break
            now = clock()
            if now >= next_beat:
                worker._beat_once()
                next_beat = now + worker.heartbeat_s
            if deadline is not None and now >= deadline:
                worker._inline_overran(lease, started)
                deadline = None
            worker._release_waiting()  # nothing else will start them for a while
            worker._flush_covered()
            wait_s = next_beat - now
            if deadline is not None:
                wait_s = min(wait_s, deadline - now)
            ready = dict(poller.poll(max(wait_s, 0.0) * 1000))
            if self._wake_r in ready:
                sockets.drain(self._wake_r)
            if worker.sock in ready:
                worker._read_messages()
        worker._flush_covered()  # what the last messages produced (cancelled leases)
