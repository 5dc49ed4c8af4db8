"""A live broker takes 100,000 wrong and random frames on each endpoint from peers
that never read a reply, and keeps serving a canary client throughout."""

from __future__ import annotations

import os

import zmq

from actorq.testing import raw_peer
from tests.fuzz.messages import Fuzzer
from actorq.wire import protocol as p

FRAMES = 100_000
F = "tests.apps.faulty"
CANARY = "canary-7f3a"


def _peer(endpoint: str):
    s = raw_peer(endpoint, b"fuzz-" + os.urandom(4).hex().encode())
    s.setsockopt(zmq.SNDHWM, 0)  # queue everything: the broker must keep up or drop
    return s


def test_a_live_broker_takes_a_hundred_thousand_bad_frames_per_endpoint(node, client):
    # Given a node and a canary client. Without keys every client is an operator, so
    # the fuzzing one may pause or purge the queues it names: the canary's queue is
    # one no fuzzed message names.
    n = node(workers=2, queues=f'["default", "{CANARY}"]')
    canary = client(n)
    broker = n.actor_pid("broker")
    fuzz = Fuzzer(seed=7)
    on_clients, on_workers = _peer(n.broker), _peer(n.worker_bind)
    try:
        # When fuzzing peers that never read send 100,000 frames to each endpoint
        for i in range(FRAMES):
            on_clients.send(fuzz.frame(p.ClientToBroker))
            on_workers.send(fuzz.frame(p.WorkerToBroker))
            if i % 20_000 == 0:
                # Then the canary is served all along (tasks a fake worker took come
                # back when it misses its heartbeats)
                assert canary.submit(f"{F}:add", (i, 1), queue=CANARY).result(timeout=30) == i + 1
    finally:
        on_clients.close()
        on_workers.close()
    assert canary.submit(f"{F}:add", (2, 2), queue=CANARY).result(timeout=30) == 4
    assert n.actor_pid("broker") == broker and os.path.exists(f"/proc/{broker}")
    assert canary.stats().bad_frames_total > 0
    log = n.log()
    assert "Traceback" not in log
    assert log.count("is not reading") <= 4  # once a minute per peer, not per message
