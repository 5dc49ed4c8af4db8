"""What the broker-state unit tests share: peers, a fresh state on a fake clock at 0,
and one turn of the broker loop without its sockets."""

from actorq.broker.state import BrokerState
from actorq.wire import protocol as p

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


def with_scheduler(s: BrokerState, now: float = 0.0):
    """SCHED says hello as the scheduler (a state made without a scheduler secret
    takes any): only it may say what is due."""
    s.on_worker(SCHED, p.Hello(version=p.PROTOCOL_VERSION, role="scheduler"), now)
    return s.take_outbox()
