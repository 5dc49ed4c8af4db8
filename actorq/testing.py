"""Run real nodes from Python: for the test suite and the benchmark harness.

`NodeProcess(config_text, workdir)` starts `actorq run` in its own session,
waits for its ready file and knows its endpoints; `cleanup()` stops it and
reports any process that outlived a graceful stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
LEAK_GRACE_S = 1.0  # after the node exits, how long its children may take to go


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.02,
               message: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout_s} s")
        time.sleep(interval_s)


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, str]:
    """GET a node's HTTP endpoint: (status, body), an error status included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for configs that need a fixed one)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Every live process in session `sid` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pid_of(name_part: str, sid: int, exact: bool = False) -> list[int]:
    """Pids in the session whose command line (process title) contains name_part, or
    is it when `exact`. Actors' titles are `actorq: ROLE [NAME]`."""
    found = []
    for pid in session_pids(sid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if (cmd.strip() == name_part) if exact else (name_part in cmd):
            found.append(pid)
    return found



def raw_peer(endpoint: str, identity: bytes | None = None, *, curve=None,
             timeout_ms: int = 5000):
    """A bare DEALER on a broker endpoint, as a hostile or broken peer would hold:
    no linger, a receive timeout, an optional routing id and CurveZMQ keys
    (wire.curve.ClientCurve). The caller closes it."""
    import zmq

    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    if curve is not None:
        curve.apply(s)
    s.connect(endpoint)
    return s

class NodeProcess:
    """A running `actorq run` in its own session."""

    def __init__(self, config_text: str, tmp: Path, name: str, cwd: Path = ROOT,
                 env: dict[str, str] | None = None, netns: str | None = None,
                 wait_ready: bool = True) -> None:
        """Start it and wait until it is ready (or a standby), unless not `wait_ready`."""
        self.dir = tmp / name
        self.dir.mkdir()
        self.config_path = self.dir / "node.toml"
        self.config_path.write_text(config_text)
        self.ready_path = self.dir / "ready.json"
        self.log_path = self.dir / "node.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self._log = self.log_path.open("wb")
        # In a network namespace of the test's own: `ip netns exec` execs the node, so
        # the pid and session are the node's.
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "actorq", "run", str(self.config_path),
             "--ready-file", str(self.ready_path)],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.sid = self.proc.pid
        self.info = self._wait_ready() if wait_ready else {}

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
    def standby(self) -> bool:
        """Whether the node's broker waits for another's lease (its ready file says)."""
        self.info = json.loads(self.ready_path.read_text())
        return bool(self.info.get("standby"))

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
        return pid_of("actorq: worker ", self.sid)

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
        if leaked:  # children reaped by a parent that just exited may linger an instant
            deadline = time.monotonic() + LEAK_GRACE_S
            while leaked and time.monotonic() < deadline:
                time.sleep(0.02)
                leaked = session_pids(self.sid)
        kill_session(self.sid)
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()
        return leaked


class PostgresCluster:
    """A throwaway PostgreSQL server of the test's own: `initdb` in a temporary
    directory, started on a free loopback port (as the `postgres` user when root, as
    PostgreSQL insists), removed by `stop()`. Uses Debian's `postgresql` package."""

    def __init__(self, host: str = "127.0.0.1", netns: str | None = None) -> None:
        import glob
        import shutil
        import socket
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
        if not found or not found[-1]:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        # Its own directory under /tmp: a test's tmp_path is root's alone, and the
        # server runs as postgres.
        self.dir = Path(tempfile.mkdtemp(prefix="actorq-pg-"))
        self.dir.chmod(0o755)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        if netns:  # a host of the test's own (benchmarks/hosts.py)
            self.as_user = ["ip", "netns", "exec", netns, *self.as_user]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        if host != "127.0.0.1":  # trust the hosts' network too, as initdb does loopback
            with open(self.dir / "data" / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {host.rsplit('.', 1)[0]}.0/24 trust\n")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses={host}", "start")
        self.url = f"postgresql://postgres@{host}:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True,
                       capture_output=True, timeout=120)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        import shutil

        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
