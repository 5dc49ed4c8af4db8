"""What one loop turn of the broker decided to send."""

from __future__ import annotations

from dataclasses import dataclass, field

from actorq.wire import protocol as p


@dataclass
class Outbox:
    """What one loop turn decided to send, grouped so each peer gets one message per kind."""

    accepted: dict[bytes, list[str]] = field(default_factory=dict)
    rejected: dict[bytes, list[p.Rejection]] = field(default_factory=dict)
    outcomes: dict[bytes, list[p.Outcome]] = field(default_factory=dict)
    dispatch: dict[bytes, list[p.Lease]] = field(default_factory=dict)
    more: set[bytes] = field(default_factory=set)  # see Dispatch.more
    aliases: dict[bytes, dict[str, str]] = field(default_factory=dict)
    unserved: dict[bytes, set[str]] = field(default_factory=dict)  # see Accepted.unserved
    to_clients: list[tuple[bytes, object]] = field(default_factory=list)
    to_workers: list[tuple[bytes, object]] = field(default_factory=list)
    # Clients whose acknowledgements go out now, not held to ride with their outcomes.
    ack_now: set[bytes] = field(default_factory=set)
    # The turn gave work to a worker that held none, or a worker's last result left
    # it holding none: an answer (its Report, the client's next submission) is likely
    # near, and the broker spins for it (spinpoll.py). A worker that holds other
    # leases is a stream, where spinning would only take CPU from it.
    handoff: bool = False

    def __bool__(self) -> bool:
        return bool(self.accepted or self.rejected or self.outcomes or self.dispatch
                    or self.to_clients or self.to_workers)
