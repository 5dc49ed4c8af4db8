"""BrokerState fed wrong messages by the hundred thousand (a million in the long
tier): nothing may escape it, and its books must still balance."""

from __future__ import annotations

import msgspec
import pytest

from actorq.broker.state import BrokerState
from actorq.wire import protocol as p
from tests.fuzz.messages import Fuzzer

CLIENTS = [b"c1", b"c2", b"c3"]
PEERS = [b"w1", b"w2", b"sup", b"scheduler", b"stranger"]


def a_busy_state() -> BrokerState:
    """Two workers, a supervisor, the scheduler and tasks in every state to aim at."""
    s = BrokerState(now=0.0, instance="fuzz", max_queued=5_000, max_queued_bytes=1 << 20,
                    scheduler_secret="", seed=1)
    for w in (b"w1", b"w2"):
        s.on_worker(w, p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                               queues=["default", "q"], credit=2, slots=2, tasks=["m:f"],
                               supervisor="sup"), 0.0)
    s.on_worker(b"sup", p.Hello(version=p.PROTOCOL_VERSION, role="supervisor",
                                pool="default", queues=["default"]), 0.0)
    s.on_worker(b"scheduler", p.Hello(version=p.PROTOCOL_VERSION, role="scheduler"), 0.0)
    s.bind_principal(b"c3", b"key-of-c3", admin=False)
    s.on_client(b"c1", p.Submit([p.TaskSpec(f"t{i}", "m:f", b"\x90") for i in range(4)]
                                + [p.TaskSpec("t5", "m:f", b"\x90",
                                              opts=p.Options(not_before=5.0, key="k"))]), 0.0)
    s.dispatch(0.0)
    s.take_outbox()
    return s


def check_books(s: BrokerState) -> None:
    live = [t for t in s.tasks.values() if t.state not in p.FINAL_STATES]
    assert (s.live, s.live_bytes) == (len(live), sum(len(t.payload) for t in live))
    assert s.queued == sum(s.depth.values())
    for w in s.workers.values():
        for tid, task in w.leased.items():
            assert task.id == tid and task.state == "running" and task.worker == w.ident


def feed(n: int, seed: int) -> int:
    """n messages, alternating endpoints, through the state as the loop would; returns
    how many the decoder let through."""
    s = a_busy_state()
    fuzz = Fuzzer(seed)
    rand = fuzz.rand
    client_dec, worker_dec = p.decoder(p.ClientToBroker), p.decoder(p.WorkerToBroker)
    now, delivered = 0.0, 0
    for i in range(n):
        now += rand.choice((0.0, 0.0001, 0.01, 0.5))
        to_worker_side = i % 2 == 1
        union, dec = ((p.WorkerToBroker, worker_dec) if to_worker_side
                      else (p.ClientToBroker, client_dec))
        if i % 10 == 0:  # through the decoder as bytes, as the loop gets them
            try:
                msg = dec.decode(fuzz.frame(union))
            except msgspec.DecodeError:
                continue  # the loop answers these (bad_frame) without the state
        else:
            msg = fuzz.message(union)
        delivered += 1
        if to_worker_side:
            s.on_worker(rand.choice(PEERS), msg, now)
        else:
            s.on_client(rand.choice(CLIENTS), msg, now)
        if i % 50 == 0:
            s.tick(now)
            s.dispatch(now)
            s.take_outbox()
            if s.journal is not None:
                s.take_journal()
        if i % 20_000 == 0:
            check_books(s)
    s.tick(now + 100)
    s.dispatch(now + 100)
    s.take_outbox()
    check_books(s)
    return delivered


def test_two_hundred_thousand_wrong_messages_break_nothing():
    assert feed(200_000, seed=23) > 150_000


@pytest.mark.long
@pytest.mark.timeout(900)
def test_a_million_wrong_messages_break_nothing():
    assert feed(1_000_000, seed=24) > 750_000
