"""Back-pressure in the client's session (client/pressure.py), without sockets."""

import pytest

from actorq import SubmitRejected
from actorq.client.handles import HandleBase
from actorq.client.pressure import FIRST_RETRY_S, Pressure
from actorq.client.session import Session
from actorq.wire import protocol as p

dec = p.decoder(p.ClientToBroker)


def session(**pressure) -> Session:
    s = Session("tcp://x", Pressure(**pressure))
    s.on_message(p.Welcome(version=1, instance="one", max_payload_bytes=1 << 20,
                           heartbeat_interval_s=1.0), 0)
    return s


def submit(s: Session, payload_args=(1,)) -> HandleBase:
    spec = s.build("m:f", payload_args, None, {})
    h = HandleBase(spec.id)
    s.add(spec, h)
    return h


def sent_ids(s: Session, now: float) -> list[str]:
    out = [dec.decode(b) for b in s.take_messages(now)]
    return [t.id for m in out if isinstance(m, p.Submit) for t in m.tasks]


def full(tid: str) -> p.Rejected:
    return p.Rejected([p.Rejection(tid, "queue_full", "max_queued = 5")])


def test_a_task_refused_as_full_goes_again_until_the_broker_takes_it():
    s = session()
    h = submit(s)
    assert sent_ids(s, 0.0) == [h.id]
    s.on_message(full(h.id), 0.0)
    assert not h._ended() and s.congested()
    assert sent_ids(s, FIRST_RETRY_S / 2) == []  # not before its back-off
    assert sent_ids(s, FIRST_RETRY_S) == [h.id]
    s.on_message(full(h.id), FIRST_RETRY_S)
    assert sent_ids(s, FIRST_RETRY_S * 2) == []  # the back-off doubles
    assert sent_ids(s, FIRST_RETRY_S * 3) == [h.id]
    s.on_message(p.Accepted([h.id], "one"), 0.2)
    assert not s.congested() and h.id not in s.unacked


def test_a_broker_full_for_longer_than_full_timeout_fails_the_task_with_its_reason():
    s = session(full_timeout=1.0)
    h = submit(s)
    sent_ids(s, 0.0)
    s.on_message(full(h.id), 0.0)
    now = 0.0
    while not h._ended() and now < 5:
        now += 0.05
        for tid in sent_ids(s, now):
            s.on_message(full(tid), now)
    assert 1.0 < now < 2.5
    assert isinstance(h._error, SubmitRejected) and h._error.code == "queue_full"
    assert "max_queued = 5" in h._error.message
    assert not s.unacked and not s.congested()


def test_too_many_unacknowledged_bytes_congest_until_acknowledged():
    # Each task counts its arguments and SUBMIT_OVERHEAD_BYTES (128) for the rest
    s = session(max_unacked_bytes=1200)
    handles = [submit(s, ("x" * 400,)) for _ in range(3)]
    assert s.congested()
    sent_ids(s, 0.0)
    s.on_message(p.Accepted([h.id for h in handles[:2]], "one"), 0.0)
    assert not s.congested() and s.pressure.unacked_bytes < 600


def test_a_drifted_byte_count_is_counted_afresh_before_anyone_waits_on_it():
    s = session(max_unacked_bytes=1000)
    submit(s)
    s.pressure.unacked_bytes = 10_000  # as a lost update between threads could leave it
    assert not s.congested()
    assert s.pressure.unacked_bytes == len(next(iter(s.unacked.values())).payload) + 128


@pytest.mark.parametrize("code", ["too_large", "draining"])
def test_other_refusals_fail_at_once(code):
    s = session()
    h = submit(s)
    sent_ids(s, 0.0)
    s.on_message(p.Rejected([p.Rejection(h.id, code, "no")]), 0.0)
    assert h._error.code == code and not s.congested()
