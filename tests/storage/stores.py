"""What the store tests share: a broker state recovered from a store, as a broker
starting on it would have it."""

from actorq.broker.state import BrokerState
from actorq.storage.journal import Journal


def recovered(store, now: float = 0.0):
    """(store, state): the state loaded from the store, journaling its changes."""
    s = BrokerState(now=now, instance="x")
    rows, crons = store.load()
    s.recover(rows, crons, now)
    s.journal = Journal()
    return store, s
