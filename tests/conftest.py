"""Fixtures shared by the test suite: real nodes, real clients, strict cleanup."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actorq.testing import (  # noqa: F401  (re-exported for the tests)
    ROOT,
    NodeProcess as Node,
    kill_session,
    pid_of,
    session_pids,
    wait_until,
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
queues = {queues}
tasks = ["tests.apps.faulty", "actorq.demo"]
"""


class Node:
    """A running `actorq run` in its own session."""

    def __init__(self, config_text: str, tmp: Path, name: str, cwd: Path = ROOT) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        self.config_path = self.dir / "node.toml"
        self.config_path.write_text(config_text)
        self.ready_path = self.dir / "ready.json"
        self.log_path = self.dir / "node.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actorq", "run", str(self.config_path),
             "--ready-file", str(self.ready_path)],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.sid = self.proc.pid
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready_path.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode} before ready:\n"
                                     f"{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"node not ready in {READY_TIMEOUT_S} s:\n{self.log()}")
            time.sleep(0.02)
        return json.loads(self.ready_path.read_text())

    @property
    def broker(self) -> str:
        return self.info["broker"]

    @property
    def worker_bind(self) -> str:
        return self.info["worker_bind"]

    @property
    def http(self) -> str:
        return f"http://{self.info['http']}"

    def actor_pid(self, name: str) -> int:
        return self.info["actors"][name]

    def worker_pids(self) -> list[int]:
        return pid_of("_actor worker", self.sid)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S,
                  signum: int = signal.SIGTERM) -> int | None:
        """Signal the node's process group, as a terminal or service manager would, and
        wait; returns its exit code."""
        if self.proc.poll() is None:
            os.killpg(self.sid, signum)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        return self.proc.poll()

    def cleanup(self) -> list[int]:
        """Stop everything; returns pids that outlived a graceful stop (a leak)."""
        self.terminate()
        leaked = [] if self.proc.poll() is None else session_pids(self.sid)
        if leaked:  # give just-exiting children a moment before calling it a leak
            time.sleep(1.0)
            leaked = session_pids(self.sid)
        kill_session(self.sid)
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()
        return leaked


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Factory: node(config_text=None, **base_config_options) -> a running Node."""
    created: list[Node] = []

    def make(config_text: str | None = None, *, workers: int = 2, concurrency: int = 1,
             grace: float = 10.0, heartbeat: float = 1.0, queues: str = '["default"]',
             broker_extra: str = "", extra: str = "", cwd: Path = ROOT) -> Node:
        if config_text is None:
            config_text = BASE_CONFIG.format(workers=workers, concurrency=concurrency,
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
