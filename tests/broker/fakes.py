"""What the broker-state unit tests share: peers, a fresh state on a fake clock at 0,
and one turn of the broker loop without its sockets."""

from actorq.broker.state import BrokerState

C = b"client-1"
C2 = b"client-2"
W1 = b"w1"
W2 = b"w2"
SUP = b"sup"
SCHED = b"scheduler"


def fresh(**kw) -> BrokerState:
    kw.setdefault("heartbeat_interval_s", 1.0)
    return BrokerState(now=0.0, instance="inst", **kw)


def turn(s: BrokerState, now: float = 0.0):
    """What the loop does each turn before it flushes: expire, dispatch, collect."""
    s.tick(now)
    s.dispatch(now)
    return s.take_outbox()
