"""Durability: with [storage], SIGKILL (not polite shutdown) loses nothing acknowledged."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from actorq import BrokerUnavailable, ResultTimeout
from actorq.testing import free_port
from tests.conftest import BASE_CONFIG, kill_session, pid_of, wait_until

pytestmark = pytest.mark.timeout(120)


def storage(path, queues='["default"]') -> dict:
    return dict(extra=f'\n[storage]\npath = "{path}"\n', queues=queues)


def test_whole_node_sigkilled_mid_stream_keeps_every_acknowledged_task(node, client, tmp_path):
    db = tmp_path / "actorq.db"
    # Given a durable node whose pool does not serve the queue being filled
    n = node(**storage(db))
    c = client(n)
    acked: list[str] = []
    for _ in range(10):
        hs = c.submit_many([("tests.apps.lifecycle:double", (i,)) for i in range(2000)],
                           queue="later")
        c.flush(timeout=30)
        acked += [h.id for h in hs]
    # When every process of the node is SIGKILLed with more submissions in flight
    c.submit_many([("tests.apps.lifecycle:double", (i,)) for i in range(2000)], queue="later")
    kill_session(n.sid)
    wait_until(lambda: n.proc.poll() is not None, 10)
    c.close(close_timeout=0.1)
    # Then the same config, started again (now serving that queue), runs every one
    again = node(**storage(db, queues='["default", "later"]'))
    c2 = client(again)
    results = c2.gather([c2.handle(i) for i in acked], timeout=90)
    assert results == [2 * i for i in range(2000)] * 10
    # (the in-flight submissions that were committed before the kill run too, after
    # the acknowledged ones: ids sort by time)
    wait_until(lambda: not c2.stats().queue_depth.get("later"), 60)
    assert c2.stats().finished_total["succeeded"] >= len(acked)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_broker_sigkilled_under_load_loses_no_result(node, client, tmp_path, engine, request):
    if engine == "sqlite":
        n = node(workers=2, concurrency=2, **storage(tmp_path / "b.db"))
    else:
        url = request.getfixturevalue("pg").create_database(f"k{os.getpid()}{time.time_ns()}")
        fixed = f'"tcp://127.0.0.1:{free_port()}"'
        config = BASE_CONFIG.replace('"tcp://127.0.0.1:*"', fixed, 1).replace(
            '"tcp://127.0.0.1:*"', f'"tcp://127.0.0.1:{free_port()}"', 1)
        n = node(config.format(workers=2, concurrency=2, prefetch=0, grace=10.0, heartbeat=1.0,
                               queues='["default"]', broker_extra=""),
                 extra=f'\n[storage]\nurl = "{url}"\n')
    c = client(n)
    hs = c.submit_many([("tests.apps.faulty:sleep", (0.01,)) for _ in range(400)])
    c.flush(timeout=30)
    wait_until(lambda: c.stats().finished_total.get("succeeded", 0) > 20, 20)
    os.kill(n.actor_pid("broker"), signal.SIGKILL)
    # The node restarts the broker; it recovers, workers reconnect, the same client's
    # waits carry on across the restart.
    assert c.gather(hs, timeout=90) == [0.01] * 400
    assert ("recovered from postgresql://" in n.log()) == (engine == "postgresql")


def test_a_client_mid_submit_many_completes_after_a_broker_restart_exactly_once(node, client,
                                                                                 tmp_path):
    n = node(**storage(tmp_path / "c.db"))
    c = client(n)
    broker = n.actor_pid("broker")
    killer = threading.Timer(0.05, os.kill, (broker, signal.SIGKILL))
    killer.start()
    hs = c.submit_many([("tests.apps.lifecycle:double", (i,)) for i in range(20000)],
                       queue="later")
    c.flush(timeout=60)  # resent to the restarted broker: ids make that idempotent
    killer.join()
    assert pid_of("actorq: broker", n.sid) not in ([], [broker])  # it really was restarted
    wait_until(lambda: c.stats().queue_depth.get("later") == 20000, 30)
    time.sleep(0.5)
    assert c.stats().queue_depth["later"] == 20000  # every task, none twice
    assert c.status(hs[0].id).state == "queued" and c.status(hs[-1].id).state == "queued"


def test_tasks_running_when_the_broker_dies_stay_with_their_workers(node, client, tmp_path):
    # Given 4 slow tasks running on 2 workers with room for 2 more, the tasks longer
    # than the restarted broker waits for workers to claim what they hold (a liveness
    # period of 3 x 0.2 s plus the 1 s reconnect back-off): a broker that forgot who
    # runs them would hand them to the free slots then, while they still run.
    runs = tmp_path / "runs.txt"
    n = node(workers=2, concurrency=3, heartbeat=0.2, **storage(tmp_path / "r.db"))
    c = client(n)
    hs = c.submit_many([("tests.apps.faulty:record_slowly", (str(runs), f"t{i}", 5.0))
                        for i in range(4)])
    c.flush(timeout=30)
    wait_until(lambda: runs.exists() and len(runs.read_text().splitlines()) == 4, 20)
    # When the broker is SIGKILLed while they run
    os.kill(n.actor_pid("broker"), signal.SIGKILL)
    # Then the restarted broker leaves them with the workers that hold them: every
    # result arrives and no task ran twice.
    assert c.gather(hs, timeout=60) == [f"t{i}" for i in range(4)]
    # A second run would have been handed out within 1.6 s of the restart, long before
    # the first runs ended; the margin only covers its first line reaching the file.
    time.sleep(0.5)
    assert sorted(line.split()[0] for line in runs.read_text().splitlines()) == [
        f"t{i}" for i in range(4)]


def test_node_sigkilled_at_random_moments_under_load_keeps_every_acknowledged_task(
        node, client, tmp_path):
    """What a new user tries: kill -9 the node at random moments under load, start it
    again with the same config, repeat; nothing acknowledged may be lost."""
    rng = random.Random(20261122)  # random moments, the same ones on every run
    db = tmp_path / "k.db"
    expected: dict[str, int] = {}  # acknowledged task id -> its result
    k = 0
    for _ in range(3):
        n = node(**storage(db))
        c = client(n)
        killer = threading.Timer(rng.uniform(0.2, 1.2), kill_session, (n.sid,))
        killer.start()
        try:
            while killer.is_alive():  # submit, and let the workers run, until the kill
                hs = c.submit_many([("tests.apps.lifecycle:double", (k + i,))
                                    for i in range(200)])
                c.flush(timeout=2)
                expected.update((h.id, 2 * (k + i)) for i, h in enumerate(hs))
                k += 200
                time.sleep(0.05)  # a steady load (~4,000 tasks/s), not a flood to wait out
        except (ResultTimeout, BrokerUnavailable):
            pass  # the kill landed mid-flush: that batch was not (all) acknowledged
        killer.join()
        wait_until(lambda: n.proc.poll() is not None, 10)
        c.close(close_timeout=0.1)
    n = node(**storage(db))
    c = client(n)
    ids = list(expected)
    assert len(ids) >= 600
    assert c.gather([c.handle(i) for i in ids], timeout=90) == [expected[i] for i in ids]
