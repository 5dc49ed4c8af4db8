"""BrokerState: the broker's whole logic as pure objects, split by concern (see state.py)."""

from actorq.broker.state.outbox import Outbox
from actorq.broker.state.state import BrokerState

__all__ = ["BrokerState", "Outbox"]
