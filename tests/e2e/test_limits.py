"""Bounded memory on a real node: a full broker refuses with queue_full, and the
client waits, sends again, and gives up only after its full_timeout."""

from __future__ import annotations

import time

import pytest

from actorq.errors import SubmitRejected
from actorq.testing import wait_until

F = "tests.apps.faulty"


def test_a_full_broker_refuses_and_the_client_waits_then_sends_again(node, client):
    # Given a broker that holds at most 5 unfinished tasks, and a paused queue
    n = node(workers=1, broker_extra="max_queued = 5")
    c = client(n, full_timeout=1.0)
    assert c.pause("default")
    held = [c.submit(f"{F}:add", (i, i)) for i in range(5)]
    c.flush(timeout=10)
    # When a sixth is submitted, the broker refuses it as full; the client keeps it
    sixth = c.submit(f"{F}:add", (6, 6))
    wait_until(lambda: c._session.pressure.full_since is not None, 10)
    assert not sixth.done
    # Then a seventh waits for room, up to full_timeout, and is refused, naming the limit
    t0 = time.monotonic()
    with pytest.raises(SubmitRejected, match=r"max_queued = 5") as err:
        c.submit(f"{F}:add", (7, 7))
    assert err.value.code == "queue_full" and time.monotonic() - t0 >= 0.9
    # And once workers make room, what waited goes through
    assert c.resume("default")
    assert c.gather(held, timeout=10) == [0, 2, 4, 6, 8]
    with pytest.raises(SubmitRejected, match="queue_full"):  # it waited over 1 s
        sixth.result(timeout=10)
    assert c.submit(f"{F}:add", (8, 8)).result(timeout=10) == 16


def test_a_refused_task_goes_through_when_room_comes_within_the_timeout(node, client):
    n = node(workers=1, broker_extra="max_queued = 2")
    c = client(n, full_timeout=10.0)
    first = [c.submit(f"{F}:sleep", (0.5,)) for _ in range(2)]
    late = c.submit(f"{F}:add", (1, 2))  # refused while the two run, then sent again
    assert late.result(timeout=15) == 3
    assert c.gather(first, timeout=10) == [0.5, 0.5]


def test_the_rest_api_answers_a_full_broker_with_503_and_retry_after(node, client):
    import json
    import urllib.error
    import urllib.request

    n = node(workers=1, broker_extra="max_queued = 1")
    assert client(n).pause("default")

    def post() -> tuple[int, dict, str | None]:
        req = urllib.request.Request(f"{n.http}/api/tasks", method="POST",
                                     data=json.dumps({"task": f"{F}:add", "args": [1, 2]}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, json.loads(r.read()), None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), e.headers.get("Retry-After")

    assert post()[0] == 201
    status, body, retry_after = post()
    assert (status, body["error"]["code"], retry_after) == (503, "queue_full", "1"), body
    assert "max_queued = 1" in body["error"]["message"]
