"""A real worker process, driven by a test that plays its broker on a ROUTER socket:
message orders a real broker makes only now and then, made every time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import msgspec
import pytest
import zmq

from actorq.node.config import PoolConfig
from actorq.node.specs import WorkerSpec
from actorq.testing import ROOT, kill_session, session_pids
from actorq.wire import protocol as p
from actorq.wire.payload import decode_result, encode_args

L = "tests.apps.lifecycle"
REPLY_TIMEOUT_MS = 10_000


@pytest.fixture
def fake_broker():
    """(router, start_worker): a ROUTER on a free port, and a factory that starts one
    real worker process against it and answers its Hello; returns the worker's id."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    procs: list[subprocess.Popen] = []

    def start_worker(concurrency: int = 1) -> bytes:
        spec = WorkerSpec(pool=PoolConfig(name="t", workers=1, concurrency=concurrency,
                                          tasks=[L]),
                          broker=f"tcp://127.0.0.1:{port}", worker_id="t.1")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "actorq", "_actor", "worker",
             msgspec.json.encode(spec).decode()],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True,
            stdin=subprocess.DEVNULL))
        ident, hello = receive(router)
        assert isinstance(hello, p.Hello) and hello.role == "worker"
        send(router, ident, p.Welcome(version=p.PROTOCOL_VERSION, instance="fake",
                                      max_payload_bytes=1 << 20, heartbeat_interval_s=1.0,
                                      takes_release=True))
        return ident

    yield router, start_worker
    for proc in procs:
        kill_session(proc.pid)
        proc.wait(10)
        assert not session_pids(proc.pid)
    router.close()
    ctx.term()


def send(router: zmq.Socket, ident: bytes, msg: object) -> None:
    router.send_multipart([ident, p.encode(msg)])


def receive(router: zmq.Socket) -> tuple[bytes, object]:
    assert router.poll(REPLY_TIMEOUT_MS), "the worker said nothing"
    ident, data = router.recv_multipart()
    return ident, msgspec.msgpack.decode(data, type=p.WorkerToBroker)


def results(router: zmq.Socket, want: int) -> dict[str, p.Result]:
    """Read the worker's messages until `want` results came (heartbeats pass by)."""
    got: dict[str, p.Result] = {}
    deadline = time.monotonic() + REPLY_TIMEOUT_MS / 1000
    while len(got) < want and time.monotonic() < deadline:
        _, msg = receive(router)
        if isinstance(msg, p.Report):
            got.update({r.id: r for r in msg.results})
    return got


def lease(tid: str, token: int, *args) -> p.Lease:
    return p.Lease(tid, f"{L}:async_wait", encode_args(args, None), token, 1)


def test_an_async_task_stopped_in_the_read_that_brings_it_frees_its_slot(fake_broker):
    router, start_worker = fake_broker
    # Given a worker with one slot
    worker = start_worker()
    # When an async task and the Stop that cancels it arrive together, so the worker
    # reads the Stop before the task has taken its first step
    send(router, worker, p.Dispatch([lease("t1", 1, 30)]))
    send(router, worker, p.Stop(["t1"]))
    # Then the task is reported cancelled
    first = results(router, 1)
    assert not first["t1"].ok and first["t1"].error.startswith("Cancelled")
    # And its slot is free: the next async task runs at once
    send(router, worker, p.Dispatch([lease("t2", 2, 0)]))
    second = results(router, 1)
    assert second["t2"].ok and decode_result(second["t2"].value) == "finished"
