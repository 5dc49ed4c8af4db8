"""A real worker fed 100,000 wrong and random frames by the broker it trusts: it stays
up, and a real task sent after them still runs and reports its result."""

from __future__ import annotations

import time

from actorq.wire import protocol as p
from actorq.wire.payload import decode_result, encode_args
from tests.fuzz.messages import Fuzzer
from tests.worker.test_worker_protocol import fake_broker, results  # noqa: F401 (fixture)

FRAMES = 100_000


def test_a_worker_takes_a_hundred_thousand_bad_frames_and_runs_the_next_task(fake_broker):  # noqa: F811
    router, start_worker = fake_broker
    ident = start_worker()
    fuzz = Fuzzer(seed=11)
    for i in range(FRAMES):
        router.send_multipart([ident, fuzz.frame(p.BrokerToWorker)])
        if i % 1000 == 0:
            while router.poll(0):  # what it says back (hellos, reports): read, not kept
                router.recv_multipart()
    # A real task, leased with a token no fuzzed lease used, runs and reports
    lease = p.Lease("canary", "tests.apps.lifecycle:add", encode_args((2, 3), None),
                    token=2**62 + 1, attempt=1)
    router.send_multipart([ident, p.encode(p.Dispatch([lease]))])
    deadline = time.monotonic() + 30
    got: dict = {}
    while "canary" not in got and time.monotonic() < deadline:
        got.update(results(router, 1))
    assert got["canary"].ok and decode_result(got["canary"].value) == 5
