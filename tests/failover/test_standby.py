"""A standby broker node: it waits without listening, stops cleanly while it waits,
and takes over at once from a leader that stops in order; /health and /metrics
say which broker leads and under which epoch."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid

import pytest

from actorq import Client
from actorq.testing import ROOT, NodeProcess, free_port, wait_until

NODE = """
[node]
shutdown_grace = 5
[broker]
bind = "tcp://127.0.0.1:{port}"
worker_bind = "tcp://127.0.0.1:{worker_port}"
[storage]
url = "{url}"
[http]
bind = "127.0.0.1:0"
[[pools]]
name = "default"
workers = 1
tasks = ["tests.apps.lifecycle"]
"""


@pytest.fixture
def shared(pg, tmp_path):
    url = pg.create_database(f"s{uuid.uuid4().hex[:12]}")
    made: list[NodeProcess] = []

    def start(name: str) -> NodeProcess:
        port, worker_port = free_port(), free_port()
        n = NodeProcess(NODE.format(port=port, worker_port=worker_port, url=url), tmp_path,
                        name)
        n.address = f"tcp://127.0.0.1:{port}"
        made.append(n)
        return n

    yield start
    leaks = {n.dir.name: n.cleanup() for n in made}
    assert not any(leaks.values()), leaks


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_standby_waits_then_takes_over_from_a_leader_stopping_in_order(shared):
    a = shared("a")
    b = shared("b")
    assert not a.standby and b.standby
    assert "the broker is a standby" in b.log()
    status, body = get(f"{a.http}/health")
    assert status == 200 and json.loads(body)["epoch"] == 1
    with Client([a.address, b.address]) as c:
        assert c.submit("tests.apps.lifecycle:double", (2,)).result(timeout=30) == 4
        assert a.terminate() == 0  # releases the lease on its way out
        wait_until(lambda: not b.standby, 10, message="the standby leads")
        assert c.submit("tests.apps.lifecycle:double", (3,)).result(timeout=30) == 6
        assert c.stats().epoch == 2
    # The CLI takes both addresses, comma-separated, and reads from the leader
    cli = subprocess.run([sys.executable, "-m", "actorq", "stats", "--json", "--broker",
                          f"{a.address},{b.address}"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["epoch"] == 2
    health = json.loads(get(f"{b.http}/health")[1])
    assert health["epoch"] == 2 and health["leader"]
    metrics = get(f"{b.http}/metrics")[1]
    assert "actorq_broker_epoch 2.0" in metrics
    assert "actorq_broker_leading{" in metrics


def test_a_standby_stops_cleanly_while_it_waits(shared):
    shared("a")
    b = shared("b")
    assert b.standby
    assert b.terminate() == 0
    assert "standby" in b.log()
