"""What an operator sees and steers through the client library, against a real node."""

from __future__ import annotations

import pytest

from actorq import RequestRejected, TaskCancelled, TaskFailed
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(90)

F = "tests.apps.faulty"


def test_listing_inspecting_and_steering_a_running_node(node, client):
    n = node(workers=2)
    c = client(n)
    # Paging through 300 tasks yields each id once, newest first
    handles = c.submit_many([(f"{F}:add", (i, i)) for i in range(300)])
    c.gather(handles, timeout=30)
    seen, cursor = [], None
    while True:
        page = c.list_tasks("succeeded", limit=64, cursor=cursor)
        seen += [t.id for t in page.tasks]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [h.id for h in reversed(handles)]
    # A running task can be cancelled, and shows where it ran
    slow = c.submit(f"{F}:async_sleep", (30,))
    wait_until(lambda: c.status(slow.id).state == "running", 10)
    busy = {w.name: w for w in c.workers()}
    assert any(slow.id in w.tasks and w.state == "busy" for w in busy.values())
    assert c.cancel(slow.id) is True
    with pytest.raises(TaskCancelled):
        slow.result(timeout=10)
    # A dead task is shown in full and requeued from the dead letters
    dead = c.submit(f"{F}:boom", ("no",))
    with pytest.raises(TaskFailed):
        dead.result(timeout=10)
    full = c.task(dead.id)
    assert full.state == "dead" and full.worker and "ValueError: no" in full.traceback
    assert [a.outcome for a in full.history] == ["ValueError: no"]
    assert c.requeue_dead(name=f"{F}:boom") == 1
    with pytest.raises(TaskFailed):
        c.handle(dead.id).result(timeout=10)
    # Pause holds work, resume releases it, purge cancels what waits and says how many
    assert c.pause("default") is True
    held = c.submit(f"{F}:add", (1, 2))
    purged = c.submit_many([(f"{F}:add", (0, 0))] * 3, queue="spare")
    c.flush()
    (default,) = [q for q in c.queues() if q.name == "default"]
    assert default.paused and default.depth == 1 and default.consumers == 2
    assert c.status(held.id).state == "queued"
    assert c.resume("default") is True and held.result(timeout=10) == 3
    assert c.purge("spare") == 3
    with pytest.raises(TaskCancelled):
        purged[0].result(timeout=10)
    (pool,) = c.pools()
    assert (pool.name, pool.workers, pool.state) == ("default", 2, "up")
    stats = c.stats()
    assert stats.rates["submitted_60s"] > 0 and stats.duration_p50_s > 0
    # Bad arguments are refused, naming them
    with pytest.raises(RequestRejected, match="state must be one of"):
        c.list_tasks("bogus")
    with pytest.raises(RequestRejected, match="cursor"):
        c.list_tasks(cursor="dead:1")
