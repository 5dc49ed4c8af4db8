"""The attacks of issue 23 that need no keys, against a real node without CurveZMQ:
each must now be refused. (With keys: tests/security/.)"""

from __future__ import annotations

import os

import msgspec
import pytest
import zmq

from actorq.errors import SubmitRejected
from actorq.testing import raw_peer, wait_until
from actorq.wire import protocol as p
from actorq.wire.payload import encode_args

F = "tests.apps.faulty"


def _send(sock: zmq.Socket, msg: object) -> None:
    sock.send(p.encode(msg))


def _replies(sock: zmq.Socket, wait_ms: int = 1500) -> list[object]:
    got = []
    while sock.poll(wait_ms):
        got.append(msgspec.msgpack.decode(sock.recv(), type=p.BrokerToClient))
        wait_ms = 200
    return got


def test_a_second_connection_under_a_clients_identity_gets_none_of_its_results(node, client):
    # Given a client waiting on a task, and a thief who knows its routing identity
    # (before, any task id gave it away; now no id contains it)
    n = node()
    c = client(n)
    h = c.submit(f"{F}:sleep", (1.0,))
    identity = c._session.identity
    assert identity.decode()[2:] not in h.id
    thief = raw_peer(n.broker, identity)
    try:
        _send(thief, p.Hello(version=p.PROTOCOL_VERSION, role="client"))
        _send(thief, p.Ping())
        # Then the owner still gets its result, and the thief hears nothing at all
        assert h.result(timeout=10) == 1.0
        assert c.submit(f"{F}:add", (2, 2)).result(timeout=10) == 4
        assert _replies(thief, 500) == []
    finally:
        thief.close()


def test_a_task_id_held_by_another_client_is_refused_not_answered(node, client):
    # Given an attacker who submitted a task under an id before its victim did
    n = node()
    victim = client(n)
    squatted = victim._session.new_id()
    attacker = raw_peer(n.broker)
    try:
        payload = encode_args((1337,), None)
        _send(attacker, p.Submit([p.TaskSpec(squatted, f"{F}:echo", payload)]))
        assert any(isinstance(m, p.Accepted) for m in _replies(attacker))
        # When the victim submits under that id
        victim._session.new_id = lambda: squatted
        # Then it is refused as taken: never answered with the attacker's 1337
        with pytest.raises(SubmitRejected, match="id_taken"):
            victim.submit(f"{F}:add", (2, 2)).result(timeout=10)
    finally:
        attacker.close()
    # And the victim's next submission, under an id nobody could guess, runs
    del victim._session.new_id
    assert victim.submit(f"{F}:add", (2, 2)).result(timeout=10) == 4


def test_an_idempotency_key_another_client_used_first_is_not_theirs_to_answer(node, client):
    n = node()
    attacker, victim = client(n), client(n)
    attacker.submit(f"{F}:echo", (1337,), key="order-42").result(timeout=10)
    assert victim.submit(f"{F}:add", (2, 2), key="order-42").result(timeout=10) == 4


def _worker_peer(n) -> zmq.Socket:
    return raw_peer(n.worker_bind, b"rogue-" + os.urandom(4).hex().encode())


def test_a_rogue_supervisor_cannot_requeue_a_healthy_workers_task(node, client):
    # Given a task running on a healthy worker
    n = node(workers=1)
    c = client(n)
    h = c.submit(f"{F}:sleep", (1.5,))
    wait_until(lambda: c.status(h.id).state == "running", 10)
    running_on = c.status(h.id).worker
    # When a peer says hello as a supervisor and reports that worker dead, many times
    rogue = _worker_peer(n)
    try:
        _send(rogue, p.Hello(version=p.PROTOCOL_VERSION, role="supervisor", pool="default"))
        for _ in range(10):
            _send(rogue, p.WorkerExited(worker=running_on, exit_code=-9, restarted=True))
        # Then the task runs on, once, on the same worker
        assert h.result(timeout=10) == 1.5
        info = c.status(h.id)
        assert (info.attempts, info.worker) == (1, running_on)
        assert "which it did not start" in n.log()
    finally:
        rogue.close()


def test_a_rogue_scheduler_is_refused_and_cannot_release_delayed_tasks(node, client):
    n = node()
    c = client(n)
    h = c.submit(f"{F}:add", (2, 2), delay=60)
    rogue = _worker_peer(n)
    try:
        _send(rogue, p.Hello(version=p.PROTOCOL_VERSION, role="scheduler"))
        reply = msgspec.msgpack.decode(rogue.recv(), type=p.BrokerToWorker)
        assert isinstance(reply, p.Error) and reply.code == "bad_role"
        _send(rogue, p.Due([h.id]))
        # The real scheduler still works: a short delay comes due
        assert c.submit(f"{F}:add", (1, 1), delay=0.2).result(timeout=10) == 2
        assert c.status(h.id).state == "scheduled"
    finally:
        rogue.close()


def test_a_worker_hello_cannot_rate_limit_another_pools_task(node, client):
    n = node()
    c = client(n)
    rogue = _worker_peer(n)
    try:
        _send(rogue, p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="x",
                             queues=["elsewhere"], credit=0, tasks=["rogue:task"],
                             rate_limits={f"{F}:add": 0.001}))
        assert isinstance(msgspec.msgpack.decode(rogue.recv(), type=p.BrokerToWorker), p.Welcome)
        handles = c.submit_many([(f"{F}:add", (i, i)) for i in range(5)])
        assert c.gather(handles, timeout=10) == [0, 2, 4, 6, 8]
        assert "a task it does not register" in n.log()
    finally:
        rogue.close()
