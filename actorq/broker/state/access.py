"""Who may do what: the owner of each task, and which clients are operators.

A client is known by its principal. With CurveZMQ that is the public key it proved
it holds (the loop reads it from the ZAP handshake and binds it to the route with
`bind_principal`), and the key carries a role: `admin` (every task and every
operator command) or `submit` (its own tasks only). Without Curve nothing is
authenticated: each connection is its own principal (its routing id) and every
client is an operator, since anyone who can reach an unauthenticated endpoint could
say anything anyway (docs/security.md).

Ownership is what stops one client from taking another's work in either mode: an
id that another principal submitted is refused (`id_taken`) rather than treated
as a resubmission, and idempotency keys are scoped to the principal that used them,
so nobody can submit a key first and have its task answer for another's. Processes
that must share keys share a key pair.
"""

from __future__ import annotations

from actorq.broker.state.records import Task
from actorq.wire import protocol as p

MAX_BOUND_PEERS = 100_000  # routes remembered with their principal; forgotten all at once past it

# Client messages a `submit` key may send: its own tasks (Watch, Query and Cancel
# answer for other keys' tasks as if there were none), and the handshake.
SUBMITTER_MAY = (p.Submit, p.Watch, p.Query, p.Cancel, p.Ping, p.Hello, p.Probe)


class Access:
    """Part of BrokerState (see state.py): task owners and client roles."""

    def _init_access(self) -> None:
        self.principals: dict[bytes, bytes] = {}  # route -> the key that made it (Curve)
        self.submitters: set[bytes] = set()  # routes whose key may only submit

    def bind_principal(self, peer: bytes, principal: bytes, admin: bool) -> None:
        """The loop saw `peer` speak with `principal`'s key, whose role is admin or not."""
        if len(self.principals) >= MAX_BOUND_PEERS:
            # Routes are never announced as gone; a key's next message binds it again.
            self.principals.clear()
            self.submitters.clear()
        self.principals[peer] = principal
        if admin:
            self.submitters.discard(peer)
        else:
            self.submitters.add(peer)

    def _mine(self, peer: bytes, task: Task) -> bool:
        """The peer may see and act on this task: an operator, or its owner."""
        return peer not in self.submitters or task.owner == self.principals.get(peer)

    def _allowed(self, peer: bytes, msg: object) -> bool:
        """A client message this peer's role permits; else it is answered `forbidden`."""
        if peer not in self.submitters or isinstance(msg, SUBMITTER_MAY):
            return True
        self.outbox.to_clients.append((peer, p.Error(
            "forbidden", f"{type(msg).__name__} needs an admin key; this client's key may "
            "only submit and act on its own tasks", getattr(msg, "req", 0))))
        return False

