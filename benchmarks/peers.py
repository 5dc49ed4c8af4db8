"""`--compare`: the same workloads through Celery, Dramatiq, RQ and Huey on Redis.

The harness starts its own `redis-server` on a free loopback port (one database
per peer) and each peer's workers with 2 worker processes, runs throughput-batch,
throughput-single and latency through each peer's own client and native result
mechanism, and stops everything it started. How each peer is configured is in
benchmarks/README.md; the code here is the definitive version.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actorq.testing import ROOT, kill_session

from .workloads import Figure, figure, percentile

BIN = Path(sys.executable).parent
RESULT_TIMEOUT_S = 300


@dataclass
class Peer:
    name: str
    workers: Callable[[], list[list[str]]]  # commands, each started in its own session
    client: Callable[[], Any]  # -> object with submit(), wait(handles), batch(n)


class CeleryClient:
    def __init__(self) -> None:
        from benchmarks.peer_apps import celery_app

        self.app = celery_app

    def submit(self):
        return self.app.noop.delay()

    def batch(self, n: int):
        from celery import group

        return [group(self.app.noop.s() for _ in range(n)).apply_async()]

    def wait(self, handles) -> None:
        for h in handles:
            h.get(timeout=RESULT_TIMEOUT_S)


class DramatiqClient:
    def __init__(self) -> None:
        from benchmarks.peer_apps import dramatiq_app

        self.app = dramatiq_app

    def submit(self):
        return self.app.noop.send()

    def batch(self, n: int):
        import dramatiq

        return [dramatiq.group(self.app.noop.message() for _ in range(n)).run()]

    def wait(self, handles) -> None:
        import dramatiq

        for h in handles:
            if isinstance(h, dramatiq.group):
                for _ in h.get_results(block=True, timeout=RESULT_TIMEOUT_S * 1000):
                    pass
            else:
                h.get_result(block=True, timeout=RESULT_TIMEOUT_S * 1000)


class RQClient:
    def __init__(self) -> None:
        from redis import Redis
        from rq import Queue

        self.queue = Queue("bench", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))

    def submit(self):
        return self.queue.enqueue("benchmarks.peer_apps.rq_app.noop")

    def batch(self, n: int):
        from rq import Queue

        data = [Queue.prepare_data("benchmarks.peer_apps.rq_app.noop") for _ in range(n)]
        return self.queue.enqueue_many(data)

    def wait(self, handles) -> None:
        for job in handles:
            if job.latest_result(timeout=RESULT_TIMEOUT_S) is None:
                raise TimeoutError(f"rq job {job.id} gave no result")


class HueyClient:
    def __init__(self) -> None:
        from benchmarks.peer_apps import huey_app

        self.app = huey_app

    def submit(self):
        return self.app.noop()

    def batch(self, n: int):
        return [self.app.noop() for _ in range(n)]

    def wait(self, handles) -> None:
        for h in handles:
            h.get(blocking=True, timeout=RESULT_TIMEOUT_S)


PEERS = [
    Peer("celery", lambda: [[str(BIN / "celery"), "-A", "benchmarks.peer_apps.celery_app",
                             "worker", "--pool", "prefork", "--concurrency", "2",
                             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                             "--without-heartbeat"]], CeleryClient),
    Peer("dramatiq", lambda: [[str(BIN / "dramatiq"), "benchmarks.peer_apps.dramatiq_app",
                               "--processes", "2", "--threads", "8"]], DramatiqClient),
    Peer("rq", lambda: [[str(BIN / "rq"), "worker", "--url", os.environ["BENCH_REDIS_URL"],
                         "--quiet", "bench"]] * 2, RQClient),
    Peer("huey", lambda: [[str(BIN / "huey_consumer"), "benchmarks.peer_apps.huey_app.huey",
                           "-w", "2", "-k", "process", "-q"]], HueyClient),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A throwaway redis-server on a free loopback port, no persistence."""

    def __init__(self, binary: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--databases", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        kill_session(p.pid)  # the workers' children too
        if p.poll() is None:
            p.wait(5)


def run_peer(peer: Peer, tasks: int, samples: int) -> list[Figure]:
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for cmd in peer.workers()]
    try:
        client = peer.client()
        client.wait([client.submit() for _ in range(200)])  # workers up and warm
        t0 = time.perf_counter()
        client.wait(client.batch(tasks))
        batch = tasks / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.wait([client.submit() for _ in range(tasks)])
        single = tasks / (time.perf_counter() - t0)
        rtt = []
        for _ in range(samples):
            t0 = time.perf_counter()
            client.wait([client.submit()])
            rtt.append((time.perf_counter() - t0) * 1000)
    finally:
        _stop_workers(procs)
    return [
        figure(f"peer:{peer.name}", f"throughput-batch, {tasks} tasks", batch, "tasks/s"),
        figure(f"peer:{peer.name}", f"throughput-single, {tasks} tasks", single, "tasks/s"),
        figure(f"peer:{peer.name}", "latency p50", percentile(rtt, 0.5), "ms"),
        figure(f"peer:{peer.name}", "latency p99", percentile(rtt, 0.99), "ms"),
    ]


def compare(tasks: int, samples: int, log: Callable[[str], None]) -> tuple[list[Figure],
                                                                           dict[str, str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        log("redis-server is not installed, so the peers are skipped. Install it with:\n"
            "  sudo apt-get install redis-server     (Debian/Ubuntu)\n"
            "and the peers with: .venv/bin/pip install -e '.[compare]'")
        return [], {}
    try:
        import celery, dramatiq, huey, rq  # noqa: E401, F401
    except ImportError as exc:
        log(f"a peer is not installed ({exc.name}): bin/bench installs the compare extra "
            "when run with --compare")
        return [], {}
    import traceback

    figures: list[Figure] = []
    failures: dict[str, str] = {}
    redis = Redis(binary)
    try:
        for db, peer in enumerate(PEERS):
            os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/{db}"
            log(f"peer {peer.name}")
            try:
                figures += run_peer(peer, tasks, samples)
            except Exception:
                failures[f"peer:{peer.name}"] = traceback.format_exc()
                log(f"peer {peer.name} failed:\n{failures[f'peer:{peer.name}']}")
    finally:
        redis.stop()
    return figures, failures


def ratios(figures: list[Figure]) -> list[Figure]:
    """actorq's figure over the best peer's, for each workload both ran."""
    out = []
    for workload, better in (("throughput-batch", max), ("throughput-single", max),
                             ("latency p50", min)):
        ours = [f for f in figures if f.workload == workload or
                (workload == "latency p50" and f.workload == "latency"
                 and f.metric == "round trip p50")]
        peers = [f for f in figures if f.workload.startswith("peer:") and
                 f.metric.startswith(workload)]
        if not ours or not peers:
            continue
        best = better(peers, key=lambda f: f.value)
        if workload == "latency p50":
            ratio = best.value / ours[0].value
            out.append(figure("vs peers", f"latency p50: best peer ({best.workload[5:]}) / "
                              "actorq", ratio, "x"))
        else:
            ratio = ours[0].value / best.value
            out.append(figure("vs peers", f"{workload}: actorq / best peer "
                              f"({best.workload[5:]})", ratio, "x", ">=", 40))
    return out
