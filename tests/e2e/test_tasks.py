"""Tasks end to end through a real node and the real client."""

from __future__ import annotations

import asyncio
import threading

import pytest

import actorq.client.sync_io
from actorq import (
    AsyncClient,
    BrokerUnavailable,
    ResultTimeout,
    SubmitRejected,
    TaskFailed,
    TaskNotFound,
)
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(90)


def test_ten_thousand_tasks_complete_with_correct_results(node, client):
    # Given a node with two workers
    c = client(node())
    # When 10,000 tasks are submitted in one submit_many call
    handles = c.submit_many([("tests.apps.faulty:add", (i, i)) for i in range(10_000)])
    # Then every result comes back, in order, and correct
    assert c.gather(handles, timeout=60) == [2 * i for i in range(10_000)]
    stats = c.stats()
    assert stats.submitted_total == 10_000
    assert stats.finished_total == {"succeeded": 10_000}


def test_status_reports_state_attempts_worker_and_times(node, client):
    c = client(node())
    h = c.submit("tests.apps.faulty:sleep", (0.3,))
    info = wait_until(lambda: (i := c.status(h.id)).state == "running" and i, 10)
    assert info.attempts == 1 and info.worker.startswith("default.")
    assert h.result(timeout=10) == 0.3
    done = c.status(h.id)
    assert done.state == "succeeded"
    assert done.submitted_at <= done.started_at <= done.finished_at
    with pytest.raises(TaskNotFound):
        c.status("no-such-id")


def test_a_raising_task_raises_task_failed_with_remote_type_message_and_traceback(node, client):
    c = client(node())
    with pytest.raises(TaskFailed) as err:
        c.submit("tests.apps.faulty:boom", ("kaput",)).result(timeout=10)
    assert err.value.exc_type == "ValueError"
    assert err.value.error == "ValueError: kaput"
    assert "raise ValueError(message)" in err.value.traceback
    assert err.value.state == "dead"  # its last (only) attempt failed


def test_unknown_task_name_fails_clearly_and_other_work_is_untouched(node, client):
    c = client(node())
    ok = c.submit("tests.apps.faulty:sleep", (0.2,))
    bad = c.submit("os:system", ("echo pwned",))  # a real function, but not a registered task
    with pytest.raises(TaskFailed, match="UnknownTask: 'os:system' is not a task registered"):
        bad.result(timeout=10)
    assert ok.result(timeout=10) == 0.2


def test_arguments_that_cannot_be_encoded_fail_at_submit(node, client):
    c = client(node())
    with pytest.raises(TypeError, match="cannot be encoded"):
        c.submit("tests.apps.faulty:echo", (object(),))
    with pytest.raises(SubmitRejected) as err:
        c.submit("no_colon", ())
    assert err.value.code == "bad_option"
    with pytest.raises(SubmitRejected, match="priority"):
        c.submit("tests.apps.faulty:echo", (1,), priority=256)
    assert c.submit("tests.apps.faulty:echo", ({"a": [1, 2.5, None, "x", b"b"]},)).result(
        timeout=10) == {"a": [1, 2.5, None, "x", b"b"]}


def test_oversized_payload_and_result_get_clear_errors(node, client):
    # Given a broker with a 4 KiB payload limit
    c = client(node(broker_extra="max_payload_bytes = 4096"))
    # Then an oversized submission is refused at submit, before anything is sent
    with pytest.raises(SubmitRejected) as err:
        c.submit("tests.apps.faulty:echo", ("x" * 5000,))
    assert err.value.code == "too_large" and "4096" in str(err.value)
    # and an oversized or unencodable result fails the task with a clear error
    with pytest.raises(TaskFailed, match="ResultTooLarge"):
        c.submit("tests.apps.faulty:big_result", (5000,)).result(timeout=10)
    with pytest.raises(TaskFailed, match="ResultNotEncodable"):
        c.submit("tests.apps.faulty:unencodable_result").result(timeout=10)
    # and the node carries on
    assert c.submit("tests.apps.faulty:add", (2, 3)).result(timeout=10) == 5


def test_cancel_a_queued_task(node, client):
    # Given one worker busy with a long task and a task queued behind it
    c = client(node(workers=1))
    busy = c.submit("tests.apps.faulty:sleep", (1.0,))
    queued = c.submit("tests.apps.faulty:add", (1, 1))
    wait_until(lambda: c.status(busy.id).state == "running", 10)
    # When the queued task is cancelled
    assert c.cancel(queued.id) is True
    # Then it never runs and result() says so; cancelling again changes nothing
    from actorq import TaskCancelled

    with pytest.raises(TaskCancelled):
        queued.result(timeout=5)
    assert c.status(queued.id).state == "cancelled"
    assert c.cancel(queued.id) is False
    assert busy.result(timeout=10) == 1.0
    assert c.cancel(busy.id) is False  # finished


def test_a_second_client_can_wait_on_a_task_by_id(node, client):
    n = node()
    first = client(n)
    h = first.submit("tests.apps.faulty:sleep", (0.3,))
    first.flush(timeout=10)  # the id is only known to the broker once acknowledged
    other = client(n)
    assert other.handle(h.id).result(timeout=10) == 0.3
    with pytest.raises(TaskNotFound):
        other.handle("missing").result(timeout=10)
    # Another client's handle cannot learn its result here: said at once, not a timeout
    with pytest.raises(ValueError, match=f"belongs to another client.*handle\\('{h.id}'\\)"):
        other.gather([h], timeout=30)


def test_one_client_shared_by_threads_serves_every_waiter(node, client):
    # Given one client shared by threads: one waits on a slow task (and so reads the
    # socket for everyone while it waits), six others make round trips of their own
    c = client(node(workers=2, concurrency=4))
    slow = c.submit("tests.apps.faulty:sleep", (1.0,))
    results: dict[object, object] = {}
    errors: list[BaseException] = []

    def run(key, fn):
        try:
            results[key] = fn()
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("slow", lambda: slow.result(timeout=20)))]
    for k in range(6):
        threads.append(threading.Thread(target=run, args=(k, lambda k=k: [
            c.submit("actorq.demo:double", (100 * k + i,)).result(timeout=20)
            for i in range(30)])))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Then every thread got its own answers, whichever thread read them
    assert not errors and not any(t.is_alive() for t in threads)
    assert results["slow"] == 1.0
    assert all(results[k] == [2 * (100 * k + i) for i in range(30)] for k in range(6))
    # And a short wait times out without disturbing the next one
    with pytest.raises(ResultTimeout):
        c.submit("tests.apps.faulty:sleep", (1.5,)).result(timeout=0.2)
    assert c.submit("actorq.demo:double", (2,)).result(timeout=10) == 4
    # And closing the client wakes a thread that is waiting on it, at once
    long = c.submit("tests.apps.faulty:sleep", (2.0,))
    waiter = threading.Thread(target=run, args=("long", lambda: long.result(timeout=30)))
    waiter.start()
    wait_until(lambda: c._reader, 10)  # it is reading the socket
    c.close()
    waiter.join(5)
    assert not waiter.is_alive() and isinstance(errors[-1], BrokerUnavailable)


def test_done_turns_true_for_a_submission_that_nobody_waits_on(node, client, monkeypatch):
    # Given a client whose I/O thread would only look at the socket by itself once a
    # minute (its ping), after round trips whose callers read the answers themselves
    monkeypatch.setattr(actorq.client.sync_io, "PING_INTERVAL_S", 60.0)
    c = client(node(workers=1))
    for i in range(5):
        assert c.submit("actorq.demo:double", (i,)).result(timeout=10) == 2 * i
        # When a lone submission is made and nobody waits on it, only looks at .done
        h = c.submit("actorq.demo:double", (i,))
        # Then looking is enough for the outcome to be read, long before the ping
        wait_until(lambda: h.done, 10, message=f"submission {i} done")
        assert h.result(timeout=0) == 2 * i


def test_async_client_and_async_tasks_run_concurrently(node):
    # Given one worker with 4 slots
    n = node(workers=1, concurrency=4)

    async def scenario():
        async with AsyncClient(n.broker) as c:
            # When four async tasks of 0.5 s each are submitted together
            hs = await c.submit_many([("tests.apps.faulty:async_sleep", (0.5,))] * 4)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            results = await c.gather(hs, timeout=20)
            elapsed = loop.time() - t0
            single = await (await c.submit("tests.apps.faulty:add", (20, 22))).result(10)
            info = await c.status(hs[0].id)
            # a result() that times out leaves the handle usable
            slow = await c.submit("tests.apps.faulty:async_sleep", (0.3,))
            with pytest.raises(ResultTimeout):
                await slow.result(timeout=0.05)
            late = await slow.result(timeout=10)
            return results, elapsed, single, info, late

    results, elapsed, single, info, late = asyncio.run(scenario())
    assert late == "slept 0.3"
    # Then they share the worker's slots rather than queue behind each other
    assert results == ["slept 0.5"] * 4
    assert elapsed < 1.9, f"4 x 0.5 s async tasks took {elapsed:.2f} s on 4 slots"
    assert single == 42 and info.state == "succeeded"


def test_the_cli_submits_and_waits(node):
    import subprocess
    import sys

    n = node()
    out = subprocess.run([sys.executable, "-m", "actorq", "submit", "actorq.demo:add", "[2, 3]",
                          "--broker", n.broker, "--wait", "--timeout", "20"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"


def test_async_tasks_never_exceed_the_workers_slots(node, client):
    # Given one worker with one slot that may hold 4 leases, which has just failed an
    # unknown task
    c = client(node(workers=1, concurrency=1, prefetch=4))
    with pytest.raises(TaskFailed, match="UnknownTask"):
        c.submit("tests.apps.faulty:no_such_task").result(timeout=10)
    # When several async tasks arrive together
    hs = c.submit_many([("tests.apps.faulty:overlap", (0.2,))] * 3)
    # Then they run one at a time: no run ever saw another beside it
    assert c.gather(hs, timeout=20) == [1, 1, 1]


# A plain function runs on the loop thread and the stand-in hands the waiting lease
# back; an async one leaves the loop free, and the loop's own check does. (A plain
# task behind an async one does not wait: plain functions have their own slot.)
@pytest.mark.parametrize("name", ["actorq.demo:sleep", "actorq.demo:async_sleep"])
def test_a_task_leased_behind_a_long_one_moves_to_an_idle_worker(node, client, name):
    # Given two one-slot workers at the default prefetch (each may hold a second
    # lease), one of them running a long task
    c = client(node(workers=2))
    long = c.submit(name, (3.0,))
    busy = wait_until(lambda: (i := c.status(long.id)).state == "running" and i.worker, 10)
    # and a short task the other one has just run, which leaves the busy worker next
    # in the broker's round
    assert c.submit(name, (0.01,)).result(timeout=10) == 0.01
    # When the next task is leased to the busy worker, behind the long one
    h = c.submit(name, (0.02,))
    # Then that worker hands it back and it runs on the idle one, while the long task
    # still runs, and the hand-back counts no attempt
    assert h.result(timeout=10) == 0.02
    assert c.status(long.id).state == "running"
    info = c.status(h.id)
    assert info.worker != busy and info.attempts == 1
    assert long.result(timeout=10) == 3.0


def test_short_tasks_never_wait_behind_a_long_one_while_a_slot_is_free(node, client):
    # Given two one-slot workers at the default (adaptive) credit
    c = client(node(workers=2))
    # When a long task is submitted, then 200 short ones
    long = c.submit("actorq.demo:sleep", (3.0,))
    shorts = c.submit_many([("actorq.demo:sleep", (0.001,))] * 200)
    # Then every short task finishes while the long one still runs: none stayed
    # behind it at the busy worker
    c.gather(shorts, timeout=10)
    assert c.status(long.id).state == "running"
    assert long.result(timeout=10) == 3.0

