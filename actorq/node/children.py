"""Child actor processes and restart intensity, shared by the node and supervisors.

A child is `python -m actorq _actor ROLE SPEC_JSON`, started in its own process
group (so a terminal's Ctrl-C reaches only the node, which orders the shutdown)
and told its parent's pid (so it can die with it). It reports readiness as one
JSON line on an inherited pipe.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any

import msgspec

from actorq.node.actor import PARENT_PID_ENV, READY_FD_ENV

log = logging.getLogger(__name__)


class Child:
    """One actor process and what its parent knows of it."""

    def __init__(self, role: str, name: str, spec: msgspec.Struct, log_level: str,
                 fds: dict[str, int] | None = None) -> None:
        """`fds`: file descriptors the child inherits, each named to it by an
        environment variable (variable name -> fd)."""
        self.role = role
        self.name = name
        self.spec = spec
        r, w = os.pipe()
        env = dict(os.environ)
        env[READY_FD_ENV] = str(w)
        env[PARENT_PID_ENV] = str(os.getpid())
        env["ACTORQ_LOG_LEVEL"] = log_level
        for var, fd in (fds or {}).items():
            env[var] = str(fd)
        args = [sys.executable, "-m", "actorq", "_actor", role,
                msgspec.json.encode(spec).decode()]
        try:
            self.proc = subprocess.Popen(args, pass_fds=(w, *(fds or {}).values()), env=env,
                                         process_group=0, stdin=subprocess.DEVNULL)
        finally:
            os.close(w)
        os.set_blocking(r, False)
        self.ready_fd: int | None = r
        self._buf = b""
        self.standby = False  # a broker that said it waits for the store's leadership
        self.ready_info: dict[str, Any] | None = None
        self.started = time.monotonic()
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_ready(self) -> bool:
        """Read the readiness pipe; True once the child said it is ready."""
        if self.ready_fd is None:
            return self.ready_info is not None
        try:
            chunk = os.read(self.ready_fd, 65536)
        except BlockingIOError:
            return False
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            info = json.loads(line or b"{}")
            if info.get("standby"):  # a broker waiting for leadership: more to come
                self.standby = True
                continue
            self.standby = False
            self.ready_info = info
            self.close_pipe()
            return True
        if not chunk:  # EOF: it exited (or closed the pipe) without saying ready
            self.close_pipe()
        return False

    def close_pipe(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None

    def poll(self) -> int | None:
        if self.exit_code is None:
            self.exit_code = self.proc.poll()
            if self.exit_code is not None:
                self.close_pipe()
        return self.exit_code

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def describe_exit(self) -> str:
        code = self.exit_code
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


class RestartIntensity:
    """OTP-style: at most `max_restarts` restarts within `window_s`, else give up."""

    def __init__(self, max_restarts: int, window_s: float) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a wanted restart at `now`; False when that would exceed the intensity."""
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True


def wait_all(children: list[Child], timeout_s: float) -> list[Child]:
    """Wait for children to exit, at most timeout_s; returns those still running."""
    deadline = time.monotonic() + timeout_s
    alive = [c for c in children if c.poll() is None]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [c for c in alive if c.poll() is None]
    return alive
