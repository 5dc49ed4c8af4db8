"""Crashes, hangs and bad input: nothing acknowledged is lost, nothing bad spreads."""

from __future__ import annotations

import os
import random
import signal
import time

import msgspec
import pytest
import zmq

from actorq import BrokerUnavailable, TaskFailed
from actorq.wire import protocol as p
from actorq.testing import raw_peer
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(90)


def _worker_pid(n, worker_name: str) -> int:
    """A worker's pid, from its id (POOL.HOST.SUPERVISORPID.N) on its command line."""
    from tests.conftest import pid_of

    pids = pid_of(f"actorq: worker {worker_name}", n.sid, exact=True)
    assert len(pids) == 1, pids
    return pids[0]


def test_sigkilled_worker_task_completes_elsewhere_on_attempt_two(node, client):
    # Given a node with two workers and a task running on one of them
    n = node()
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (1.0,))
    first = wait_until(lambda: (i := c.status(h.id)).state == "running" and i, 10)
    victim = _worker_pid(n, first.worker)
    # When that worker process is SIGKILLed mid-task
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    # Then the task is running again on another worker well before any lease timeout
    again = wait_until(lambda: (i := c.status(h.id)).attempts == 2 and i, 5)
    requeued_after = time.monotonic() - killed_at
    assert again.worker != first.worker
    assert requeued_after < 1.0, f"requeued {requeued_after:.2f} s after the kill"
    # and it completes, with its attempts counted
    assert h.result(timeout=10) == 1.0
    assert c.status(h.id).attempts == 2
    # and the supervisor started a replacement, which the metrics count
    wait_until(lambda: c.stats().workers_alive.get("default") == 2, 10)
    assert c.stats().worker_restarts == {"default": 1}


def test_hung_worker_loses_its_lease_after_missed_heartbeats(node, client):
    # Given fast heartbeats (0.2 s x 3) and a task running on one worker
    n = node(heartbeat=0.2)
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (1.0,))
    first = wait_until(lambda: (i := c.status(h.id)).state == "running" and i, 10)
    hung = _worker_pid(n, first.worker)
    # When the worker hangs without dying (SIGSTOP: the transport reports nothing)
    os.kill(hung, signal.SIGSTOP)
    try:
        # Then missed heartbeats hand the task to the other worker, where it completes
        again = wait_until(lambda: (i := c.status(h.id)).attempts == 2 and i, 10)
        assert again.worker != first.worker
        assert h.result(timeout=10) == 1.0
    finally:
        os.kill(hung, signal.SIGCONT)
    # And when the hung worker wakes, its late result is recognised as stale
    wait_until(lambda: c.stats().stale_results_total >= 1, 10)
    assert c.status(h.id).state == "succeeded"
    assert c.stats().finished_total == {"succeeded": 1}


def test_a_task_that_kills_every_worker_fails_as_worker_lost(node, client):
    # Given a broker that allows 2 deliveries of a task whose workers die
    c = client(node(broker_extra="max_deliveries = 2"))
    # When a task crashes its worker process every time it runs
    with pytest.raises(TaskFailed, match="WorkerLost") as err:
        c.submit("tests.apps.faulty:crash").result(timeout=20)
    # Then it fails after 2 attempts instead of crash-looping the pool
    assert c.status(err.value.task_id).attempts == 2
    assert c.submit("tests.apps.faulty:add", (1, 1)).result(timeout=10) == 2


def test_repeated_worker_kills_at_high_credit_charge_only_what_ran(node, client):
    # Given four workers that each hold up to 256 leases, and 5,000 short tasks
    n = node(workers=4, prefetch=256, broker_extra="max_deliveries = 5")
    c = client(n)
    handles = c.submit_many([("tests.apps.faulty:sleep", (0.002,))] * 5000)
    # When workers are SIGKILLed 25 times while the tasks run
    rng = random.Random(7)
    for _ in range(25):
        pids = n.worker_pids()
        if pids:
            os.kill(rng.choice(pids), signal.SIGKILL)
        time.sleep(0.1)
    # Then every task completes: a lease its worker never started is not an attempt, so
    # no task is dead-lettered for the crashes of the tasks in front of it
    results = c.gather(handles, timeout=60, return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert not failures, f"{len(failures)} failed, first: {failures[0]}"
    assert c.stats().dead == 0


def test_a_pool_survives_poison_tasks_in_a_row(node, client):
    # Given a pool whose restart intensity allows 3 unexplained deaths a minute
    n = node(workers=1, broker_extra="max_deliveries = 2", extra="max_restarts = 3\n")
    c = client(n)
    # When ten tasks in a row each crash the worker that runs them, twice
    for _ in range(10):
        with pytest.raises(TaskFailed, match="WorkerLost"):
            c.submit("tests.apps.faulty:crash").result(timeout=30)
    # Then the crashes were charged to the tasks, not the pool: it still serves
    assert c.submit("tests.apps.faulty:add", (1, 1)).result(timeout=10) == 2
    stats = c.stats()
    assert stats.supervisors == {"default": "up"} and stats.worker_restarts == {"default": 20}


def _reply(sock: zmq.Socket, union=p.BrokerToClient):
    return msgspec.msgpack.decode(sock.recv(), type=union)


def test_malformed_frames_and_wrong_versions_get_errors_and_harm_nothing(node, client):
    # Given a node with a task in flight
    n = node()
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (0.5,))
    raw = raw_peer(n.broker)
    try:
        # When garbage, a message meant for another actor, a multi-frame message and a
        # hello of an unknown protocol version arrive on the client endpoint
        raw.send(b"\xff\x00garbage")
        assert _reply(raw).code == "bad_frame"
        raw.send(p.encode(p.Report([])))
        assert _reply(raw).code == "bad_frame"
        raw.send_multipart([b"a", b"b"])
        assert _reply(raw).code == "bad_frame"
        raw.send(p.encode(p.Hello(version=99, role="client")))
        err = _reply(raw)
        assert err.code == "protocol_version" and "99" in err.message
        # and a raw submission with an over-limit payload
        big = p.TaskSpec("raw-1", "tests.apps.faulty:echo", b"x" * (10 * 1024 * 1024 + 1))
        raw.send(p.encode(p.Submit([big])))
        rejected = _reply(raw)
        assert isinstance(rejected, p.Rejected) and rejected.items[0].code == "too_large"
    finally:
        raw.close()
    wraw = raw_peer(n.worker_bind)
    try:
        wraw.send(b"junk")
        assert _reply(wraw, p.BrokerToWorker).code == "bad_frame"
    finally:
        wraw.close()
    # Then the broker counted them, and the task in flight and new ones are untouched
    assert h.result(timeout=10) == 0.5
    assert c.submit("tests.apps.faulty:add", (1, 2)).result(timeout=10) == 3
    stats = c.stats()
    assert stats.bad_frames_total == 5  # garbage, misrouted, multi-frame, version, worker junk
    assert stats.rejected_total == 1  # the over-limit payload
    # and each kind is in the log, the wrong version with it
    assert "protocol version 99 is not supported" in n.log()


def test_a_flood_of_bad_frames_is_one_warning_per_kind_and_peer(node):
    # Given a node
    n = node(workers=1)
    first, second = raw_peer(n.broker), raw_peer(n.broker)
    try:
        # When one peer sends 100 undecodable frames, and another peer sends garbage too
        for _ in range(100):
            first.send(b"\xff\x00garbage")
            assert _reply(first).code == "bad_frame"
        second.send(b"\xff\x00garbage")
        assert _reply(second).code == "bad_frame"
    finally:
        first.close()
        second.close()
    # Then the log names each kind from each peer once, and no more
    log = n.log()
    assert log.count("undecodable frame from client") == 2
    assert "Traceback" not in log


def test_a_frame_over_the_limit_is_refused_before_it_is_held(node, client):
    # Given a node with a 1 MiB payload limit, and a client that uses it
    n = node(broker_extra="max_payload_bytes = 1048576")
    c = client(n)
    big = raw_peer(n.broker)
    try:
        # When a peer sends frames far over the limit (plus the envelope)
        rss = _rss(n.actor_pid("broker"))
        for _ in range(20):
            big.send(b"x" * (40 * 1024 * 1024), copy=False)
        # Then ZeroMQ drops them unread: the broker holds none of it and answers none
        assert big.poll(1000) == 0
        assert _rss(n.actor_pid("broker")) < rss + 100 * 1024 * 1024
        # and goes on serving everyone else
        assert c.submit("tests.apps.faulty:add", (2, 2)).result(timeout=10) == 4
    finally:
        big.close()


def _rss(pid: int) -> int:
    from benchmarks.workloads import rss_bytes

    return rss_bytes(pid)


def test_sigkilled_broker_is_restarted_and_clients_and_workers_reconnect(node, client):
    # Given a node and a client waiting on a long task
    n = node()
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (5.0,))
    wait_until(lambda: c.status(h.id).state == "running", 10)
    old_instance = c.stats().instance
    # When the broker process is SIGKILLed
    os.kill(n.actor_pid("broker"), signal.SIGKILL)
    # Then the waiting client is told clearly that the task was lost, instead of hanging
    with pytest.raises(BrokerUnavailable, match="restarted"):
        h.result(timeout=15)
    # And the node restarted the broker on the same endpoint; the same client and the
    # reconnected workers carry on
    assert c.stats().instance != old_instance
    assert c.submit("tests.apps.faulty:add", (2, 2)).result(timeout=15) == 4
    wait_until(lambda: c.stats().workers_alive.get("default") == 2, 15)
    hs = c.submit_many([("tests.apps.faulty:add", (i, 1)) for i in range(100)])
    assert c.gather(hs, timeout=20) == [i + 1 for i in range(100)]


def test_client_without_a_broker_fails_fast():
    from actorq import Client

    with pytest.raises(BrokerUnavailable, match="no broker answered"):
        Client("tcp://127.0.0.1:1", connect_timeout=0.5)
