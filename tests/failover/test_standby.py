"""A standby broker node: it waits without listening, stops cleanly while it waits,
and takes over at once from a leader that stops in order, and from one gone in the
middle of a commit; /health and /metrics say which broker leads and under which
epoch. A broker deposed while its node starts the rest is started again."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from actorq import Client
from actorq.storage.leadership import session_name
from actorq.testing import (
    ROOT,
    NodeProcess,
    free_port,
    http_get,
    kill_session,
    wait_until,
)

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

    start.url = url
    yield start
    leaks = {n.dir.name: n.cleanup() for n in made}
    assert not any(leaks.values()), leaks


def test_standby_waits_then_takes_over_from_a_leader_stopping_in_order(shared):
    a = shared("a")
    b = shared("b")
    assert not a.standby and b.standby
    assert "the broker is a standby" in b.log()
    status, body = http_get(f"{a.http}/health")
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
    health = json.loads(http_get(f"{b.http}/health")[1])
    assert health["epoch"] == 2 and health["leader"]
    metrics = http_get(f"{b.http}/metrics")[1]
    assert "actorq_broker_epoch 2.0" in metrics
    assert "actorq_broker_leading{" in metrics


def test_a_standby_stops_cleanly_while_it_waits(shared):
    shared("a")
    b = shared("b")
    assert b.standby
    assert b.terminate() == 0
    assert "standby" in b.log()


def leader_holder(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute("SELECT holder FROM actorq_leader").fetchone()[0]


def test_the_standby_takes_over_from_a_leader_gone_in_the_middle_of_a_commit(shared):
    """As when the leader's host is cut off: the server still holds its session, with
    the leader row locked by a commit that will never end."""
    import psycopg

    a = shared("a")
    b = shared("b")
    stuck = psycopg.connect(shared.url, application_name=session_name(leader_holder(shared.url)))
    try:
        stuck.execute("SELECT 1 FROM actorq_leader WHERE id = 1 FOR UPDATE")
        kill_session(a.sid)  # everything of a's but the session posing as its commit
        with Client([a.address, b.address]) as c:
            assert c.submit("tests.apps.lifecycle:double", (4,)).result(timeout=30) == 8
            assert c.stats().epoch == 2
        assert "ended 1 session(s)" in b.log()
    finally:
        stuck.close()


def test_a_broker_deposed_while_its_node_starts_the_rest_is_started_again(pg, tmp_path):
    import psycopg

    url = pg.create_database(f"s{uuid.uuid4().hex[:12]}")
    # A pool whose broker never answers holds the node in its start-up.
    config = NODE.format(port=free_port(), worker_port=free_port(), url=url).replace(
        "shutdown_grace = 5", "shutdown_grace = 5\nstartup_timeout = 120") + (
        f'broker = "tcp://127.0.0.1:{free_port()}"\n')
    node = NodeProcess(config, tmp_path, "n", wait_ready=False)
    try:
        wait_until(lambda: "(epoch 1)" in node.log(), 30, message="the broker leads")
        with psycopg.connect(url, autocommit=True) as db:  # another broker takes over
            db.execute("UPDATE actorq_leader SET epoch = epoch + 1, holder = 'thief', "
                       "expires = clock_timestamp() + interval '1 second'")
        wait_until(lambda: "broker exit code 4; restarting it" in node.log(), 15,
                   message=f"the deposed broker started again:\n{node.log()}")
        # ... as a standby, which leads again once the thief's lease lapses
        wait_until(lambda: "(epoch 3)" in node.log(), 15, message="the broker leads again")
        assert node.proc.poll() is None
    finally:
        assert not node.cleanup()
