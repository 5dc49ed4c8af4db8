"""The process-actor skeleton: what every actor process does the same way.

- It dies with its parent (PR_SET_PDEATHSIG), so a SIGKILLed node or supervisor
  never leaves orphans holding ports.
- SIGTERM/SIGINT set flags and wake the actor's poll loop through a self-pipe
  (signal.set_wakeup_fd), so a loop sleeping until its next timer reacts at once.
- It reports readiness (and resolved endpoints) to its parent through an
  inherited pipe, so nobody waits on a sleep or a guessed port.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from typing import Any

from actorq.wire.sockets import drain, wake_pipe

log = logging.getLogger(__name__)

READY_FD_ENV = "ACTORQ_READY_FD"
PARENT_PID_ENV = "ACTORQ_PARENT_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent dies; exit now if it already has."""
    parent = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:
        os._exit(1)  # the parent died before prctl took effect


class HeapTrimmer:
    """Gives memory freed after a burst of traffic back to the OS once the actor idles.

    glibc keeps freed heap memory for reuse and returns only what lies at the top of
    the heap. After a burst (a million submissions arriving as ~45 KB frames, freed
    between long-lived queue blocks) about 18 MB stays resident though free;
    malloc_trim(0) releases free pages anywhere in the heap. It walks the heap, so
    it runs only once the loop found nothing to do after some traffic: 1.8 ms on a
    heap of a million tasks with frames to release, microseconds without. The
    threshold is low because a burst may pause for longer than IDLE_MS, and a trim
    in such a pause left the rest of the burst untrimmed when it came to less than
    the threshold: with a million tasks queued, 291-303 MB resting at 8 MB, 278-282
    MB at 1 MB. Without glibc (musl, macOS) it does nothing.
    """

    IDLE_MS = 200  # a poll this long with nothing to read means the burst is over
    BURST_BYTES = 1 << 20  # received since the last trim; less is not worth a walk

    def __init__(self) -> None:
        try:
            self._trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            self._trim = None
        self.received = 0  # bytes since the last trim

    def poll_timeout(self, timeout_ms: float) -> float:
        """The loop's poll timeout, shortened while a trim is owed."""
        if self.received >= self.BURST_BYTES and self._trim is not None:
            return min(timeout_ms, self.IDLE_MS)
        return timeout_ms

    def idle(self) -> None:
        """Call when a poll returned nothing."""
        if self.received >= self.BURST_BYTES:
            self.received = 0
            if self._trim is not None:
                self._trim(0)


class Signals:
    """SIGTERM/SIGINT (stop) and SIGUSR1 (drain) as flags plus a pollable fd."""

    def __init__(self, *, drain_signal: bool = False) -> None:
        self.stop = False
        self.drain = False
        self.child_exited = False
        r, w = wake_pipe()
        self.fd = r
        self._w = w
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if drain_signal:
            signal.signal(signal.SIGUSR1, self._on_drain)

    def watch_children(self) -> None:
        signal.signal(signal.SIGCHLD, self._on_child)

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stop = True

    def _on_drain(self, signum: int, frame: Any) -> None:
        self.drain = True

    def _on_child(self, signum: int, frame: Any) -> None:
        self.child_exited = True

    def clear(self) -> None:
        """Empty the wakeup pipe after the poller reported it readable."""
        drain(self.fd)


def report_ready(info: dict[str, Any] | None = None, *, final: bool = True) -> None:
    """Tell the parent we are up (one JSON line on the inherited pipe), once. A line
    with `final=False` comes before it: a standby broker says it waits its turn."""
    fd = os.environ.get(READY_FD_ENV) if not final else os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), (json.dumps(info or {}) + "\n").encode())
        if final:
            os.close(int(fd))
    except OSError:
        pass  # the parent is gone or stopped listening; nothing to tell


def process_usage() -> tuple[float, int]:
    """This process's CPU seconds (user + system) and resident memory in bytes."""
    times = os.times()
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
        rss = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = 0
    return times.user + times.system, rss

