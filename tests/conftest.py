"""Fixtures shared by the test suite: real nodes, real clients, strict cleanup."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actorq.testing import (  # noqa: F401  (re-exported for the tests)
    ROOT,
    kill_session,
    pid_of,
    session_pids,
    wait_until,
)
from actorq.testing import (
    NodeProcess as Node,
)

BASE_CONFIG = """
[node]
shutdown_grace = {grace}
[broker]
bind = "tcp://127.0.0.1:*"
worker_bind = "tcp://127.0.0.1:*"
heartbeat_interval = {heartbeat}
{broker_extra}
[http]
bind = "127.0.0.1:0"
[[pools]]
name = "default"
workers = {workers}
concurrency = {concurrency}
prefetch = {prefetch}
queues = {queues}
tasks = ["tests.apps.faulty", "tests.apps.lifecycle", "actorq.demo"]
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Factory: node(config_text=None, **base_config_options) -> a running Node."""
    created: list[Node] = []

    def make(config_text: str | None = None, *, workers: int = 2, concurrency: int = 1,
             prefetch: int = 0,
             grace: float = 10.0, heartbeat: float = 1.0, queues: str = '["default"]',
             broker_extra: str = "", extra: str = "", cwd: Path = ROOT) -> Node:
        if config_text is None:
            config_text = BASE_CONFIG.format(workers=workers, concurrency=concurrency,
                                             prefetch=prefetch,
                                             grace=grace, heartbeat=heartbeat, queues=queues,
                                             broker_extra=broker_extra)
        n = Node(textwrap.dedent(config_text) + textwrap.dedent(extra), tmp_path,
                 f"node{len(created)}", cwd=cwd)
        created.append(n)
        return n

    yield make
    leaks = {}
    for n in reversed(created):
        leaked = n.cleanup()
        if leaked:
            leaks[n.dir.name] = leaked
    assert not leaks, f"processes outlived a graceful stop: {leaks}"


@pytest.fixture
def client() -> Iterator[Callable[..., object]]:
    """Factory: client(node_or_address, **kwargs) -> a connected actorq.Client."""
    from actorq import Client

    made = []

    def make(target, **kwargs):
        c = Client(target if isinstance(target, str) else target.broker, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close(close_timeout=1.0)


@pytest.fixture(scope="session")
def pg():
    """A PostgreSQL server of the test run's own (actorq.testing.PostgresCluster)."""
    from actorq.testing import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.stop()
