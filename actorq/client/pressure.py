"""Back-pressure: how a client slows down when the broker is full or far behind.

Two signals, both kept by the Session (on the thread that holds the socket):

- The broker refused tasks with `queue_full` ([broker] max_queued or
  max_queued_bytes) or `disk_full` (its storage could not commit): they are not
  failed but sent again, after 50 ms, 100 ms, ... at most 1 s apart, until the
  broker accepts something or `full_timeout` passes, when they fail with
  SubmitRejected and the broker's code and reason.
- The bytes of arguments submitted and not yet acknowledged are over
  `max_unacked_bytes`: a fast producer cannot hold, or pour into the broker's
  socket, more than that, whatever the broker's limits.

While either holds, `submit()` blocks (up to `full_timeout`), then raises
SubmitRejected("queue_full").
"""

from __future__ import annotations

from actorq.wire import protocol as p

# Refusals that say "later", not "never": the broker is full, or its disk is.
RETRIED = ("queue_full", "disk_full")
FIRST_RETRY_S = 0.05
LAST_RETRY_S = 1.0
DEFAULT_FULL_TIMEOUT_S = 30.0
# A task counts its arguments and the 128 bytes a batch allows it for the rest
# (session.SUBMIT_OVERHEAD_BYTES): 8 MiB is ~65,000 no-op tasks in flight, hundreds
# of round trips' worth at full speed, and bounds what one client holds in the
# broker's socket.
DEFAULT_MAX_UNACKED_BYTES = 8 * 1024 * 1024


class Pressure:
    def __init__(self, full_timeout: float = DEFAULT_FULL_TIMEOUT_S,
                 max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES) -> None:
        self.full_timeout = full_timeout
        self.max_unacked_bytes = max_unacked_bytes
        self.unacked_bytes = 0  # arguments submitted, not yet acknowledged
        self.full_since: float | None = None  # refused queue_full, nothing accepted since
        self.code = "queue_full"  # the broker's last refusal of RETRIED, and its reason
        self.reason = ""
        self.refused: list[p.TaskSpec] = []  # to be sent again at retry_at
        self.retry_at = 0.0
        self._wait = FIRST_RETRY_S

    def congested(self) -> bool:
        return self.full_since is not None or self.unacked_bytes > self.max_unacked_bytes

    def why_code(self) -> str:
        return self.code if self.full_since is not None else "queue_full"

    def why(self) -> str:
        if self.full_since is not None:
            return self.reason
        return (f"{self.unacked_bytes} bytes of arguments were submitted and not yet "
                f"acknowledged, over this client's max_unacked_bytes "
                f"({self.max_unacked_bytes}): the broker is not keeping up")

    def refuse(self, spec: p.TaskSpec, code: str, reason: str, now: float) -> None:
        """The broker refused `spec` with one of RETRIED: it goes again later."""
        if self.full_since is None:
            self.full_since = now
            self.retry_at = now + self._wait
        self.code, self.reason = code, reason
        self.refused.append(spec)

    def accepted(self) -> None:
        """The broker accepted tasks: it has room again."""
        self.full_since = None
        self._wait = FIRST_RETRY_S

    def due(self, now: float) -> tuple[list[p.TaskSpec], list[p.TaskSpec]]:
        """(refused tasks to send again now, refused tasks that waited too long)."""
        if not self.refused or now < self.retry_at:
            return [], []
        specs, self.refused = self.refused, []
        if self.full_since is not None and now - self.full_since > self.full_timeout:
            self.full_since = None
            return [], specs
        self._wait = min(self._wait * 2, LAST_RETRY_S)
        self.retry_at = now + self._wait
        return specs, []
