"""The task lifecycle end to end: each option from a user's task module against a real
node (tests/apps/lifecycle.py), submitted through the real client."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import time
import urllib.request

import pytest

from actorq import SubmitRejected, TaskCancelled, TaskExpired, TaskFailed
from tests.apps import lifecycle as app
from tests.conftest import pid_of, wait_until

pytestmark = pytest.mark.timeout(90)

L = "tests.apps.lifecycle"


def lines(path) -> list[str]:
    return path.read_text().split() [::2] if path.exists() else []


def test_priority_runs_a_later_high_priority_task_first(node, client, tmp_path):
    # Given one busy worker with a backlog of low-priority tasks
    c = client(node(workers=1))
    out = tmp_path / "order"
    busy = c.submit("tests.apps.faulty:sleep", (0.5,))
    wait_until(lambda: c.status(busy.id).state == "running", 10)
    low = [c.submit(f"{L}:log_line", (str(out), f"low{i}"), priority=1) for i in range(3)]
    # When a high-priority task is submitted after them
    high = c.submit(f"{L}:log_line", (str(out), "high"), priority=200)
    c.gather(low + [high], timeout=20)
    # Then it runs first, and the others keep their order
    assert lines(out) == ["high", "low0", "low1", "low2"]
    with pytest.raises(SubmitRejected, match="priority"):
        c.submit(f"{L}:double", (1,), priority=256)


def test_a_task_on_a_queue_nobody_serves_waits_and_is_named(node, client, caplog):
    n = node(workers=1)
    c = client(n)
    # When a task goes to a queue no worker consumes
    with caplog.at_level(logging.WARNING, logger="actorq.client"):
        h = c.submit(f"{L}:double", (1,), queue="reports")
        c.flush()
        # Then the client says so when it submits
        wait_until(lambda: any("'reports' has no live worker" in r.getMessage()
                               for r in caplog.records), 5)
    # And the task waits, counted in the queue's depth, and /health names the queue
    assert c.status(h.id).state == "queued"
    stats = c.stats()
    assert stats.queue_depth["reports"] == 1 and stats.unserved_queues == ["reports"]
    with urllib.request.urlopen(f"{n.http}/health", timeout=10) as r:
        assert json.loads(r.read())["unserved_queues"] == ["reports"]


def test_retries_back_off_then_succeed_and_dead_letters_can_be_requeued(node, client, tmp_path):
    c = client(node())
    # A task that fails twice succeeds on its third run with retries=2
    h = c.submit(f"{L}:flaky", (str(tmp_path / "a"), 2), retries=2, backoff=0.05)
    assert h.result(timeout=20) == 3
    assert c.status(h.id).attempts == 3
    # @task defaults apply (retries=2, backoff=0.05 on `defaulted`)
    d = c.submit(app.defaulted, (str(tmp_path / "b"),))
    assert d.result(timeout=20) == 2 and c.status(d.id).priority == 7
    # Retries exhausted: dead, listed as a dead letter, and requeue runs it again
    path = tmp_path / "c"
    dead = c.submit(f"{L}:flaky", (str(path), 3), retries=1, backoff=0.05)
    with pytest.raises(TaskFailed) as err:
        dead.result(timeout=20)
    assert err.value.state == "dead" and c.status(dead.id).attempts == 2
    assert dead.id in [i.id for i in c.dead_letters()]
    assert c.dead_letters(queue="elsewhere") == []
    assert c.requeue(dead.id) is True
    assert c.handle(dead.id).result(timeout=20) == 4  # run 3 fails, its one retry succeeds
    assert c.requeue(dead.id) is False  # it is not dead any more
    # retry_on limits which exceptions retry
    k = c.submit(f"{L}:raise_key_error", retries=3, backoff=0.05, retry_on=(ValueError,))
    with pytest.raises(TaskFailed, match="KeyError"):
        k.result(timeout=20)
    assert c.status(k.id).attempts == 1


# concurrency 1 runs a plain function on the worker's loop thread, covered by the
# stand-in thread; concurrency 2 runs it on a runner thread
@pytest.mark.parametrize("concurrency", [1, 2])
def test_timeouts_stop_async_tasks_in_place_and_replace_a_stuck_worker(node, client,
                                                                       concurrency):
    n = node(concurrency=concurrency, broker_extra="kill_grace = 0.5")
    c = client(n)
    a = c.submit(f"{L}:async_wait", (30,), timeout=0.3)
    with pytest.raises(TaskFailed, match="TaskTimeout"):
        a.result(timeout=10)
    before = set(n.worker_pids())
    t0 = time.monotonic()
    s = c.submit("tests.apps.faulty:sleep", (60,), timeout=0.3, retries=1, backoff=0.05)
    with pytest.raises(TaskFailed, match="TaskTimeout") as err:
        s.result(timeout=20)
    assert err.value.state == "dead" and c.status(s.id).attempts == 2  # the retry applied
    assert time.monotonic() - t0 < 10
    # The overrunning workers were killed and replaced; the pool still works
    wait_until(lambda: len(set(n.worker_pids()) - before) >= 1 and len(n.worker_pids()) == 2, 10)
    assert c.submit(f"{L}:double", (4,)).result(timeout=10) == 8
    assert sum(c.stats().worker_restarts.values()) >= 1


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_long_plain_function_keeps_its_worker_alive_and_reports_progress(node, client,
                                                                           concurrency):
    # Given fast heartbeats: 0.6 s of silence (0.2 s x 3) presumes a worker dead
    c = client(node(workers=1, concurrency=concurrency, heartbeat=0.2))
    # When a plain function runs for 2 s, reporting progress as it goes
    h = c.submit(f"{L}:steps", (4, 0.5))
    info = wait_until(lambda: (i := c.status(h.id)).progress and i.progress >= 0.5 and i, 10)
    # Then its progress shows while it runs, and it completes on its first attempt:
    # its worker kept beating all along
    assert info.state == "running" and info.progress_info["step"] >= 2
    assert h.result(timeout=10) == "done"
    assert c.status(h.id).attempts == 1
    # And a plain function may start an event loop of its own, as anywhere else
    assert c.submit(f"{L}:runs_its_own_loop", (3,)).result(timeout=10) == 6


def test_expires_and_delay_and_eta(node, client):
    c = client(node())
    gone = c.submit(f"{L}:double", (1,), queue="nobody", expires=0.3)
    with pytest.raises(TaskExpired):
        gone.result(timeout=10)
    assert c.status(gone.id).state == "expired"
    t0 = time.time()
    later = c.submit(f"{L}:double", (2,), delay=0.6)
    assert c.status(later.id).state == "scheduled"
    assert later.result(timeout=10) == 4
    started = c.status(later.id).started_at
    assert 0.6 <= started - t0 < 0.6 + 0.3, started - t0  # typically within 50 ms
    at = dt.datetime.now() + dt.timedelta(seconds=0.4)
    eta = c.submit(f"{L}:double", (3,), eta=at)
    assert eta.result(timeout=10) == 6 and c.status(eta.id).started_at >= at.timestamp()
    # A delay that outlives its deadline never runs
    never = c.submit(f"{L}:double", (5,), delay=5, expires=0.3)
    with pytest.raises(TaskExpired):
        never.result(timeout=10)


@pytest.mark.parametrize("bad, match", [
    (dict(delay=-1), "delay"), (dict(retries=-1), "retries"), (dict(timeout=0), "timeout"),
    (dict(delay=1, eta=dt.datetime.now()), "delay and eta"), (dict(backoff=0), "backoff"),
    (dict(expires="soon"), "expires"), (dict(retry_on=(int,)), "retry_on"),
])
def test_options_that_make_no_sense_are_rejected_naming_the_option(bad, match):
    from actorq.client.session import Session

    with pytest.raises(SubmitRejected, match=match):
        Session("tcp://127.0.0.1:1").build(f"{L}:double", (1,), None, bad)


def test_cancel_pending_queued_and_running_tasks(node, client):
    n = node(workers=1, broker_extra="kill_grace = 0.5")
    c = client(n)
    # A running async task is cancelled in place, quickly
    a = c.submit(f"{L}:async_wait", (30,))
    wait_until(lambda: c.status(a.id).state == "running", 10)
    t0 = time.monotonic()
    assert a.cancel() is True
    with pytest.raises(TaskCancelled):
        a.result(timeout=5)
    # A queued task behind a running plain function, then that function itself
    s = c.submit("tests.apps.faulty:sleep", (60,))
    q = c.submit(f"{L}:double", (1,))
    wait_until(lambda: c.status(s.id).state == "running", 10)
    assert c.cancel(q.id) is True and c.status(q.id).state == "cancelled"
    before = n.worker_pids()
    t0 = time.monotonic()
    assert s.cancel() is True
    with pytest.raises(TaskCancelled):
        s.result(timeout=5)
    # Its worker is replaced within about a second, and the pool carries on
    wait_until(lambda: n.worker_pids() and n.worker_pids() != before, 10)
    assert time.monotonic() - t0 < 3
    assert c.submit(f"{L}:double", (2,)).result(timeout=10) == 4
    # Cancelling a finished task changes nothing
    done = c.submit(f"{L}:double", (3,))
    assert done.result(timeout=10) == 6
    assert done.cancel() is False and c.status(done.id).state == "succeeded"
    # A scheduled and a pending task are cancelled at once
    sched = c.submit(f"{L}:double", (4,), delay=30)
    pend = c.submit(f"{L}:double", (5,), depends_on=[sched.id])
    assert c.cancel(sched.id) is True
    with pytest.raises(TaskCancelled):
        pend.result(timeout=5)


def test_dependencies_chains_and_groups(node, client):
    c = client(node())
    first = c.submit(f"{L}:double", (1,), delay=0.3)
    second = c.submit(f"{L}:double", (10,), depends_on=[first])
    assert c.status(second.id).state == "pending"
    assert second.result(timeout=10) == 20
    assert c.status(second.id).depends_on == [first.id]
    with pytest.raises(SubmitRejected, match="depends_on"):
        c.submit(f"{L}:double", (1,), depends_on=["no-such-task"])
    # chain: each step gets the previous result as its first argument
    ch = c.chain([(f"{L}:add", (1, 2)), (f"{L}:double", ()), (f"{L}:add", (100,))])
    assert ch.result(timeout=10) == 106
    g = c.group([(f"{L}:double", (i,)) for i in range(5)])
    assert g.result(timeout=10) == [0, 2, 4, 6, 8]
    # A failing step stops the chain; its final handle reports that failure
    broken = c.chain([(f"{L}:double", (1,)), (f"{L}:raise_key_error", ()),
                      (f"{L}:double", ())])
    with pytest.raises(TaskFailed, match="KeyError"):
        broken.result(timeout=10)
    assert c.status(broken.id).state == "cancelled"
    assert "DependencyFailed" in c.status(broken.id).error


def test_idempotency_keys_and_ignore_result(node, client):
    n = node()
    c, other = client(n), client(n)
    a = c.submit(f"{L}:double", (1,), key="order-42")
    again = c.submit(f"{L}:double", (99,), key="order-42")
    assert again.id == a.id and again.result(timeout=10) == 2
    # Another client's key is its own (docs/security.md): nobody can squat a key.
    b = other.submit(f"{L}:double", (99,), key="order-42")
    assert b.id != a.id and b.result(timeout=10) == 198
    assert c.stats().submitted_total == 2
    i = c.submit(f"{L}:double", (2,), ignore_result=True)
    assert i.result(timeout=10) is None
    wait_until(lambda: _gone(c, i.id), 5)


def _gone(c, task_id) -> bool:
    from actorq import TaskNotFound

    try:
        c.status(task_id)
    except TaskNotFound:
        return True
    return False


def test_rate_limit_holds_across_workers_and_progress_is_reported(node, client, tmp_path):
    c = client(node(workers=2, concurrency=2, prefetch=4))
    out = tmp_path / "limited"
    hs = c.submit_many([(f"{L}:limited", (str(out), str(i))) for i in range(6)])
    c.gather(hs, timeout=20)
    times = sorted(float(line.split()[1]) for line in out.read_text().splitlines())
    assert times[-1] - times[0] >= 5 / 5 - 0.1  # 6 runs at 5/s span at least a second
    assert all(b - a >= 0.15 for a, b in zip(times, times[1:]))
    p = c.submit(f"{L}:steps", (4, 0.3))
    info = wait_until(lambda: (i := c.status(p.id)).progress and i.progress >= 0.5 and i, 10)
    assert info.progress_info["step"] >= 2 and info.state == "running"
    assert p.result(timeout=10) == "done"


CRON = """
[[cron]]
name = "every-second"
schedule = "* * * * * *"
task = "tests.apps.lifecycle:log_line"
args = ["{path}", "tick"]
"""


def test_cron_fires_each_second_once_also_across_a_scheduler_restart(node, client, tmp_path):
    out = tmp_path / "cron"
    n = node(extra=CRON.format(path=out))
    c = client(n)
    wait_until(lambda: len(lines(out)) >= 2, 10)
    # SIGKILL the scheduler: the node restarts it and no due time fires twice
    old = n.actor_pid("scheduler")
    os.kill(old, signal.SIGKILL)
    at_kill = len(lines(out))
    wait_until(lambda: pid_of("actorq: scheduler", n.sid) not in ([], [old]), 10)
    wait_until(lambda: len(lines(out)) >= at_kill + 2, 10)  # it carries on firing
    stamps = [int(float(line.split()[1])) for line in out.read_text().splitlines()]
    assert len(stamps) == len(set(stamps)), stamps  # one run per due second
    assert len(stamps) >= 4
    assert [e.name for e in c.crons()] == ["every-second"]
    assert c.crons()[0].last_fired > 0
    # At run time: add, list, remove
    c.add_cron("halfminute", "*/30 * * * *", app.double, (1,))
    assert {e.name for e in c.crons()} == {"every-second", "halfminute"}
    with pytest.raises(SubmitRejected, match="schedule"):
        c.add_cron("bad", "61 * * * *", app.double, (1,))
    assert c.remove_cron("every-second") is True and c.remove_cron("every-second") is False
    time.sleep(1.2)
    count = len(lines(out))
    time.sleep(1.5)
    assert len(lines(out)) == count  # removed: fires no more


def test_async_client_has_the_same_lifecycle_api(node):
    import asyncio

    from actorq import AsyncClient

    n = node()

    async def scenario():
        async with AsyncClient(n.broker) as c:
            h = await c.submit(f"{L}:double", (2,), delay=0.1, retries=1)
            assert await h.result(timeout=10) == 4
            ch = await c.chain([(f"{L}:add", (1, 1)), (f"{L}:double", ())])
            g = await c.group([(f"{L}:double", (1,)), (f"{L}:double", (2,))])
            assert await ch.result(timeout=10) == 4 and await g.result(timeout=10) == [2, 4]
            k1 = await c.submit(f"{L}:double", (5,), key="same")
            k2 = await c.submit(f"{L}:double", (6,), key="same")
            assert k1.id == k2.id and await k2.result(timeout=10) == 10
            dead = await c.submit(f"{L}:raise_key_error")
            with pytest.raises(TaskFailed):
                await dead.result(timeout=10)
            assert [i.id for i in await c.dead_letters()] == [dead.id]
            assert await c.requeue(dead.id) is True
            await c.add_cron("nightly", "0 3 * * *", f"{L}:double", (1,))
            assert [e.name for e in await c.crons()] == ["nightly"]
            assert await c.remove_cron("nightly") is True

    asyncio.run(scenario())
