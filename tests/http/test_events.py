"""GET /api/events against a real node: live figures and worker changes, one stream
shared by every listener, and tokens (as a query parameter, for EventSource)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from actorq import Client
from actorq.http.auth import digest
from actorq.testing import NodeProcess, wait_until
from tests.http.nodes import NODE

pytestmark = pytest.mark.timeout(90)


class Stream:
    """A listener on /api/events, reading events one by one (with a deadline)."""

    def __init__(self, url: str) -> None:
        self.response = urllib.request.urlopen(url, timeout=10)

    def next(self, kind: str, deadline_s: float = 10.0) -> dict:
        deadline = time.monotonic() + deadline_s
        event = None
        while time.monotonic() < deadline:
            line = self.response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == kind:
                return json.loads(line[6:])
        raise AssertionError(f"no {kind} event within {deadline_s} s")

    def close(self) -> None:
        self.response.close()


def test_figures_and_workers_arrive_live_on_every_stream(tmp_path):
    node = NodeProcess(NODE.format(tokens=""), tmp_path, "node")
    streams = []
    try:
        # Given two dashboards listening
        streams = [Stream(f"{node.http}/api/events") for _ in range(2)]
        first = streams[0].next("stats")
        workers = streams[1].next("workers")["changed"]
        assert first["workers_alive"] == 2 and len(workers) == 2
        # When tasks run, then a worker is killed
        with Client(node.broker) as c:
            c.gather(c.submit_many([("actorq.demo:add", (i, i)) for i in range(50)]))
            # Then both see the counts within a second or so, without asking again
            for s in streams:
                wait_until(lambda s=s: s.next("stats")["succeeded"] >= 50, 10)
            victim = workers[0]
            os.kill(victim["pid"], signal.SIGKILL)
            gone = streams[0].next("workers")
            while victim["name"] not in gone["gone"]:
                gone = streams[0].next("workers")
            wait_until(lambda: streams[0].next("stats")["worker_restarts"].get("default") == 1,
                       10)
    finally:
        for s in streams:
            s.close()
        assert not node.cleanup()


def test_with_tokens_the_stream_takes_one_as_a_query_parameter(tmp_path):
    token = "viewer-token-for-tests"
    tokens = f'[[http.tokens]]\nname = "v"\nrole = "read"\nsha256 = "{digest(token)}"\n'
    node = NodeProcess(NODE.format(tokens=tokens), tmp_path, "node")
    try:
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{node.http}/api/events", timeout=10)
        assert denied.value.code == 401
        denied.value.close()
        s = Stream(f"{node.http}/api/events?access_token={token}")
        assert s.next("stats")["workers_alive"] == 2
        s.close()
    finally:
        assert not node.cleanup()
