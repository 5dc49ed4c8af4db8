"""Which leases a worker is running right now, kept where its supervisor can read them
after the worker dies, however it dies (SIGKILL, a segfault, the OOM killer).

A worker holds more leases than it runs (prefetch, adaptive credit). When it dies,
only the leases it had started may have caused the death: those are charged an
attempt (a task that kills its worker every time is dead after `max_deliveries`),
the rest go back to their queues uncharged. Nothing the worker could send as it dies
would arrive, so it writes the lease token of each call it starts into a small
shared memory board (a memfd the supervisor created and passed down), one int64 per
place, and zero when the call returns; the supervisor reads the board when it reaps
the worker and names the tokens in WorkerExited.

Places: one per runner slot (`index` 0..slots-1: a runner thread, or the loop thread
running a plain function inline) and one per concurrent async task (slots..2*slots-1).
Writing a token is one store into a memoryview: no syscall on the hot path.
"""

from __future__ import annotations

import mmap
import os

BOARD_FD_ENV = "ACTORQ_RUNNING_FD"
TOKEN_BYTES = 8


def places(slots: int) -> int:
    """Board places for a worker with `slots` slots: runners, then async tasks."""
    return 2 * slots


class RunningBoard:
    """The board itself: `tokens[i]` is the lease token running in place i, or 0."""

    def __init__(self, size: int, fd: int | None = None) -> None:
        self.size = size
        self.fd = fd
        if fd is None:  # nobody will read it (a worker started without a supervisor)
            self._map = None
            self.tokens = memoryview(bytearray(size * TOKEN_BYTES)).cast("q")
        else:
            self._map = mmap.mmap(fd, size * TOKEN_BYTES)
            self.tokens = memoryview(self._map).cast("q")

    @classmethod
    def create(cls, name: str, size: int) -> RunningBoard:
        """Supervisor side: a new zeroed board, its fd to pass to the worker."""
        fd = os.memfd_create(f"actorq-running-{name}", 0)
        os.ftruncate(fd, size * TOKEN_BYTES)
        return cls(size, fd)

    @classmethod
    def attach(cls, size: int) -> RunningBoard:
        """Worker side: the board its supervisor passed down, or a private one."""
        fd = os.environ.pop(BOARD_FD_ENV, None)
        return cls(size, int(fd) if fd is not None else None)

    def running(self) -> list[int]:
        """The tokens of the calls running now (or when the worker died)."""
        return [t for t in self.tokens if t]

    def close(self) -> None:
        self.tokens.release()
        if self._map is not None:
            self._map.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
