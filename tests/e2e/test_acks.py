"""Acknowledgements at the protocol level: held ones ride with outcomes, and none is lost."""

from __future__ import annotations

import msgspec
import zmq

from actorq.wire import protocol as p
from actorq.wire.payload import encode_args


def _connect(address: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 10_000)
    s.connect(address)
    s.send(p.encode(p.Hello(version=p.PROTOCOL_VERSION, role="client")))
    assert isinstance(_reply(s), p.Welcome)
    return s


def _reply(sock: zmq.Socket):
    return msgspec.msgpack.decode(sock.recv(), type=p.BrokerToClient)


def _spec(tid: str, name: str, *args) -> p.TaskSpec:
    return p.TaskSpec(tid, name, encode_args(args, {}))


def _acks_and_outcomes(sock: zmq.Socket, n: int) -> tuple[list[str], list[str], list[type]]:
    """Read until n outcomes came: every acknowledged id, every finished id, and the
    kinds of message in the order they came."""
    acked, done, kinds = [], [], []
    while len(done) < n:
        msg = _reply(sock)
        kinds.append(type(msg))
        if isinstance(msg, p.Accepted):
            acked += msg.ids
        elif isinstance(msg, p.Outcomes):
            if msg.accepted is not None:
                acked += msg.accepted.ids
            done += [o.id for o in msg.items]
    return acked, done, kinds


def test_acks_come_at_once_when_asked_and_never_get_lost_when_held(node):
    n = node(workers=1)
    s = _connect(n.broker)
    try:
        # A client that waits on its ack (the default) gets it on its own, before the outcome
        s.send(p.encode(p.Submit([_spec("now-1", "tests.apps.faulty:sleep", 0.3)])))
        acked, done, kinds = _acks_and_outcomes(s, 1)
        assert acked == ["now-1"] and done == ["now-1"] and kinds == [p.Accepted, p.Outcomes]
        # A held ack of a task longer than the hold goes out alone when the hold ends
        s.send(p.encode(p.Submit([_spec("late-1", "tests.apps.faulty:sleep", 0.3)],
                                 ack_later=True)))
        acked, done, kinds = _acks_and_outcomes(s, 1)
        assert acked == ["late-1"] and kinds == [p.Accepted, p.Outcomes]
        # Quick tasks: each id is acknowledged exactly once, alone or with its outcomes
        ids = [f"quick-{i:03d}" for i in range(200)]
        for start in range(0, 200, 20):
            s.send(p.encode(p.Submit([_spec(t, "actorq.demo:noop") for t in ids[start:start + 20]],
                                     ack_later=True)))
        acked, done, _ = _acks_and_outcomes(s, 200)
        assert sorted(acked) == ids and sorted(done) == ids
    finally:
        s.close()


def test_a_reply_never_overtakes_the_held_ack_of_an_earlier_submission(node):
    # A client that saw its task in a status reply knows the broker holds it; were
    # the ack still held, a broker restart then would make it resubmit the task.
    n = node(workers=1)
    s = _connect(n.broker)
    try:
        for i in range(5):
            tid = f"asked-{i}"
            s.send(p.encode(p.Submit([_spec(tid, "tests.apps.faulty:sleep", 0.3)],
                                     ack_later=True)))
            s.send(p.encode(p.Query(req=i + 1, ids=[tid])))
            first, second = _reply(s), _reply(s)
            assert isinstance(first, p.Accepted) and first.ids == [tid]
            assert isinstance(second, p.Infos) and second.items[0].id == tid
        assert sorted(_acks_and_outcomes(s, 5)[1]) == [f"asked-{i}" for i in range(5)]
    finally:
        s.close()
