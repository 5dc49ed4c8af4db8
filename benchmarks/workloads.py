"""The workloads. Each starts the system under test itself and returns its figures.

Every workload returns a list of Figure rows; none asserts anything. Sizes come
from a Scale, so `--quick` runs the same code on smaller numbers.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from actorq import Client
from actorq.testing import ROOT, NodeProcess, PostgresCluster, free_port, pid_of, wait_until

NOOP = "actorq.demo:noop"
SPIN = "actorq.demo:spin"
ASYNC_SLEEP = "actorq.demo:async_sleep"
SLEEP = "actorq.demo:sleep"


class Figure(msgspec.Struct):
    workload: str
    metric: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 125000"
    met: bool | None = None


def figure(workload: str, metric: str, value: float, unit: str, op: str = "",
           goal: float | None = None) -> Figure:
    if goal is None:
        return Figure(workload, metric, value, unit)
    met = value >= goal if op == ">=" else value <= goal
    return Figure(workload, metric, value, unit, f"{op} {goal:g}", met)


@dataclass(frozen=True)
class Scale:
    batch_tasks: int
    single_tasks: int
    latency_samples: int
    cpu_tasks_per_worker: int
    backlog_tasks: int
    many_workers: tuple[int, ...]
    many_worker_tasks: int
    burst_tasks: int  # elastic: the burst of 5 ms tasks
    idle_s: float  # elastic: the idle time before and after it


FULL = Scale(200_000, 50_000, 5_000, 400, 1_000_000, (2, 50, 500), 100_000, 20_000, 10.0)
QUICK = Scale(50_000, 10_000, 1_000, 100, 100_000, (2, 50), 20_000, 4_000, 4.0)


def node_toml(*, workers: int = 2, prefetch: int = 0, concurrency: int = 1,
              pools: bool = True, broker: str = "", storage: str = "", extra: str = "",
              http: bool = False) -> str:
    text = ""
    if not broker:
        # A broker on a shared PostgreSQL store needs fixed ports (a standby's peers
        # must know where it will listen).
        port, worker_port = (free_port(), free_port()) if "url =" in storage else ("*", "*")
        text += ('[node]\nshutdown_grace = 5\n[broker]\n'
                 f'bind = "tcp://127.0.0.1:{port}"\nworker_bind = "tcp://127.0.0.1:{worker_port}"\n')
    if http:
        text += '[http]\nbind = "127.0.0.1:0"\n'
    if storage:
        text += storage
    if pools:
        text += (f'[[pools]]\nname = "bench"\nworkers = {workers}\nconcurrency = {concurrency}\n'
                 f'prefetch = {prefetch}\ntasks = ["actorq.demo"]\n{extra}')
        if broker:
            text += f'broker = "{broker}"\n'
    return text


@contextmanager
def running(config: str, name: str = "node") -> Iterator[NodeProcess]:
    with tempfile.TemporaryDirectory(prefix="actorq-bench-") as tmp:
        node = NodeProcess(config, Path(tmp), name)
        try:
            yield node
        finally:
            node.cleanup()


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def resting_rss(pid: int, limit_s: float = 5.0) -> int:
    """RSS once it stops moving: a broker idle after a burst returns freed heap memory
    to the OS within ~0.2 s (actor.HeapTrimmer), which is what an operator then sees."""
    deadline = time.monotonic() + limit_s
    last = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_bytes(pid)
        if abs(now - last) < 1 << 20:
            return now
        last = now
    return last


# Every workload runs the shipped defaults (adaptive credit). The throughput ones also
# measure a pool tuned by hand, `prefetch = 256`, to show what the defaults leave out.
TUNED_PREFETCH = 256
REPEATS = 3  # throughput runs per workload; the median is reported (one run is noisy)


def _median_rate(config: str, n: int, submit: Callable[[Client, int], list],
                 repeats: int = REPEATS) -> float:
    """Tasks per second from first submit to last result, median of `repeats` runs."""
    with running(config) as node, Client(node.broker) as c:
        c.gather(submit(c, 2000), timeout=60)  # warm up
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            c.gather(submit(c, n), timeout=600)
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _batch(c: Client, n: int) -> list:
    return c.submit_many([(NOOP, ())] * n)


def _single(c: Client, n: int) -> list:
    return [c.submit(NOOP) for _ in range(n)]


def throughput_batch(scale: Scale) -> list[Figure]:
    n = scale.batch_tasks
    return [
        figure("throughput-batch", f"{n} no-op tasks, submit_many, defaults (median of "
               f"{REPEATS})", _median_rate(node_toml(), n, _batch), "tasks/s", ">=", 125_000),
        figure("throughput-batch", f"same, prefetch {TUNED_PREFETCH}",
               _median_rate(node_toml(prefetch=TUNED_PREFETCH), n, _batch, 1), "tasks/s"),
    ]


def throughput_single(scale: Scale) -> list[Figure]:
    n = scale.single_tasks
    return [
        figure("throughput-single", f"{n} no-op tasks, one submit each, defaults (median "
               f"of {REPEATS})", _median_rate(node_toml(), n, _single), "tasks/s", ">=",
               20_000),
        figure("throughput-single", f"same, prefetch {TUNED_PREFETCH}",
               _median_rate(node_toml(prefetch=TUNED_PREFETCH), n, _single, 1), "tasks/s"),
    ]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(scale: Scale) -> list[Figure]:
    with running(node_toml()) as node, Client(node.broker) as c:
        for _ in range(200):
            c.submit(NOOP).result(timeout=10)
        samples = []
        for _ in range(scale.latency_samples):
            t0 = time.perf_counter()
            c.submit(NOOP).result(timeout=10)
            samples.append((time.perf_counter() - t0) * 1000)
    return [
        figure("latency", "round trip p50", percentile(samples, 0.50), "ms", "<=", 0.5),
        figure("latency", "round trip p99", percentile(samples, 0.99), "ms", "<=", 1.5),
        figure("latency", "round trip p99.9", percentile(samples, 0.999), "ms"),
        figure("latency", "round trip mean", statistics.fmean(samples), "ms"),
    ]


def cpu(scale: Scale) -> list[Figure]:
    """CPU-bound 5 ms tasks at the default prefetch (2 on a one-slot worker: the next
    task waits at the worker while one runs), then on 2 workers at prefetch 1 (a
    worker waits a round trip to the broker between tasks): what the prefetch buys."""
    figures = []
    task_ms = 5.0
    for workers, prefetch in ((1, 0), (2, 0), (2, 1)):
        n = scale.cpu_tasks_per_worker * workers
        ideal = n * task_ms / 1000 / workers
        efficiencies = []
        with (running(node_toml(workers=workers, prefetch=prefetch)) as node,
              Client(node.broker) as c):
            c.gather(c.submit_many([(SPIN, (task_ms,))] * (10 * workers)), timeout=60)
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                c.gather(c.submit_many([(SPIN, (task_ms,))] * n), timeout=600)
                efficiencies.append(100 * ideal / (time.perf_counter() - t0))
        setting = f", prefetch {prefetch}" if prefetch else ""
        figures.append(figure("cpu", f"{n} x 5 ms on {workers} worker(s){setting}: "
                              f"efficiency (median of {REPEATS})",
                              statistics.median(efficiencies), "%",
                              ">=", 90 if workers == 2 and not prefetch else None))
    return figures


def head_of_line(scale: Scale) -> list[Figure]:
    """Two one-slot workers at the defaults; one 3 s task, then 200 tasks of 1 ms: how
    long after their submission the last short one is done. A short task must not
    wait behind the long one while the other worker is free."""
    with running(node_toml()) as node, Client(node.broker) as c:
        c.gather(c.submit_many([(SLEEP, (0.001,))] * 50), timeout=60)  # warm up
        long = c.submit(SLEEP, (3.0,))
        t0 = time.perf_counter()
        c.gather(c.submit_many([(SLEEP, (0.001,))] * 200), timeout=60)
        elapsed = time.perf_counter() - t0
        long.result(timeout=60)
    return [figure("head-of-line", "200 x 1 ms tasks submitted behind a 3 s one, 2 workers: "
                   "the last done after", elapsed, "s", "<=", 0.5)]


# The elastic workload: a pool of 1..MAX_WORKERS against one fixed at MAX_WORKERS.
# Tasks sleep (5 ms) rather than spin, so more workers than cores still help.
ELASTIC_MAX_WORKERS = 8
ELASTIC_SCALE_DOWN_S = 2.0  # [[pools]] scale_down_after here (30 by default)
SAMPLE_S = 0.1  # how often the pool's size is read, to add up worker-seconds


def _burst(config: str, scale: Scale) -> dict[str, float]:
    """Idle, a burst of 5 ms tasks, idle again: the burst's completion time, the time
    until the pool first grew, and the worker-seconds used from start to end."""
    with running(config) as node, Client(node.broker) as c:
        size = lambda: (s := c.stats().pools.get("bench")) and s.workers  # noqa: E731
        wait_until(size, 30)
        samples: list[tuple[float, int]] = []
        start = time.perf_counter()

        def sample_until(until: float, done: Callable[[], bool] = lambda: False) -> None:
            while time.perf_counter() < until and not done():
                samples.append((time.perf_counter(), size() or 0))
                time.sleep(SAMPLE_S)

        sample_until(start + scale.idle_s)
        first = samples[-1][1]
        t0 = time.perf_counter()
        handles = c.submit_many([(SLEEP, (0.005,))] * scale.burst_tasks)
        grew_at = None
        while not all(h.done for h in handles):
            now, n = time.perf_counter(), size() or 0
            samples.append((now, n))
            if grew_at is None and n > first:
                grew_at = now
            time.sleep(SAMPLE_S)
        c.gather(handles, timeout=600)
        burst_s = time.perf_counter() - t0
        sample_until(time.perf_counter() + scale.idle_s)
        end = time.perf_counter()
    worker_s = sum(a[1] * (b[0] - a[0]) for a, b in zip(samples, samples[1:]))
    worker_s += samples[-1][1] * (end - samples[-1][0])
    return {"burst_s": burst_s, "worker_s": worker_s, "total_s": end - start,
            "scale_up_s": (grew_at - t0) if grew_at else float("nan")}


def elastic(scale: Scale) -> list[Figure]:
    """A pool of 1..8 workers against a fixed pool of 8: idle, a burst of 5 ms tasks,
    idle again."""
    top = ELASTIC_MAX_WORKERS
    elastic_run = _burst(node_toml(workers=1, extra=(
        f"min_workers = 1\nmax_workers = {top}\n"
        f"scale_down_after = {ELASTIC_SCALE_DOWN_S}\n")), scale)
    fixed_run = _burst(node_toml(workers=top), scale)
    n, idle = scale.burst_tasks, scale.idle_s
    return [
        figure("elastic", f"{n} x 5 ms tasks after {idle:g} s idle: scale-up began after",
               elastic_run["scale_up_s"], "s", "<=", 1.0),
        figure("elastic", f"burst done, 1..{top} workers", elastic_run["burst_s"], "s"),
        figure("elastic", f"burst done, {top} fixed workers", fixed_run["burst_s"], "s"),
        figure("elastic", "elastic burst time vs fixed",
               100 * elastic_run["burst_s"] / fixed_run["burst_s"], "%", "<=", 115),
        figure("elastic", f"worker-seconds over {elastic_run['total_s']:.0f} s, 1..{top} "
               "workers", elastic_run["worker_s"], "worker-s"),
        figure("elastic", f"worker-seconds over {fixed_run['total_s']:.0f} s, {top} fixed "
               "workers", fixed_run["worker_s"], "worker-s"),
        figure("elastic", "elastic worker-seconds vs fixed",
               100 * elastic_run["worker_s"] / fixed_run["worker_s"], "%", "<=", 60),
    ]


def backlog(scale: Scale) -> list[Figure]:
    n = scale.backlog_tasks
    with running(node_toml(pools=False)) as node, Client(node.broker) as c:
        broker_pid = node.actor_pid("broker")
        before = rss_bytes(broker_pid)
        t0 = time.perf_counter()
        chunk = 50_000
        handles = []
        for start in range(0, n, chunk):
            handles += c.submit_many([(NOOP, ())] * min(chunk, n - start))
        c.flush(timeout=600)
        submit_rate = n / (time.perf_counter() - t0)
        wait_until(lambda: sum(c.stats().queue_depth.values()) == n, 60)
        peak = rss_bytes(broker_pid, "VmHWM")
        rss = resting_rss(broker_pid)
        with running(node_toml(broker=node.worker_bind),
                     "workers"):
            t1 = time.perf_counter()
            c.gather(handles, timeout=1200)
            drain_rate = n / (time.perf_counter() - t1)
    per_task = (rss - before) / n
    rss_at_1m = before + per_task * 1_000_000  # exact for the full run, projected for --quick
    return [
        figure("backlog", f"submit {n} with no consumer", submit_rate, "tasks/s"),
        figure("backlog", f"broker RSS with {n} queued", rss / 2**20, "MB"),
        figure("backlog", "broker peak RSS while they arrived", peak / 2**20, "MB"),
        figure("backlog", "broker RSS at 1,000,000 queued" +
               ("" if n == 1_000_000 else " (projected)"), rss_at_1m / 2**20, "MB", "<=", 300),
        figure("backlog", "broker memory per queued task", per_task, "bytes"),
        figure("backlog", "drain rate, 2 workers", drain_rate, "tasks/s"),
    ]


PAGES = 200  # listing pages timed at each size
POLL_REPEATS = 6  # runs per node, alternating which goes first


def _page_ms(c: Client) -> float:
    t0 = time.perf_counter()
    for _ in range(PAGES):
        c.list_tasks(limit=50)
    return (time.perf_counter() - t0) / PAGES * 1000


def operator(scale: Scale) -> list[Figure]:
    """What an operator's reads cost: a listing page of 50 with 10,000 tasks stored and
    with the backlog size; then throughput-batch with and without an operator polling
    /api/stats and a listing page once a second while a dashboard reads the live
    stream (/api/events), runs interleaved."""
    with running(node_toml(pools=False)) as node, Client(node.broker) as c:
        c.submit_many([(NOOP, ())] * 10_000)
        c.flush(timeout=60)
        small = _page_ms(c)
        for start in range(10_000, scale.backlog_tasks, 50_000):
            c.submit_many([(NOOP, ())] * min(50_000, scale.backlog_tasks - start))
        c.flush(timeout=600)
        large = _page_ms(c)
    n = scale.batch_tasks // 2
    with ExitStack() as stack:
        # Both with a gateway: what is measured is the polling, not the gateway's being.
        quiet = stack.enter_context(running(node_toml(http=True), "quiet"))
        watched = stack.enter_context(running(node_toml(http=True), "watched"))
        stop = threading.Event()
        poller = threading.Thread(target=_poll, args=(watched.http, stop), daemon=True)
        listener = threading.Thread(target=_listen, args=(watched.http, stop), daemon=True)
        poller.start()
        listener.start()
        stack.callback(listener.join, 20)
        stack.callback(poller.join, 10)
        stack.callback(stop.set)
        rates = {"quiet": [], "watched": []}
        clients = {"quiet": stack.enter_context(Client(quiet.broker)),
                   "watched": stack.enter_context(Client(watched.broker))}
        for c in clients.values():
            c.gather(c.submit_many([(NOOP, ())] * 2000), timeout=60)
        for i in range(POLL_REPEATS):
            for name in ("quiet", "watched") if i % 2 else ("watched", "quiet"):
                c = clients[name]
                t0 = time.perf_counter()
                c.gather(c.submit_many([(NOOP, ())] * n), timeout=600)
                rates[name].append(n / (time.perf_counter() - t0))
    quiet_rate, watched_rate = (statistics.median(rates[k]) for k in ("quiet", "watched"))
    return [
        figure("operator", "listing page of 50, 10,000 tasks stored", small, "ms"),
        figure("operator", f"listing page of 50, {scale.backlog_tasks} tasks stored", large,
               "ms"),
        figure("operator", "page with the backlog vs with 10,000", 100 * large / small, "%",
               "<=", 200),
        figure("operator", f"{n} no-op tasks, submit_many, polled once a second, a live "
               f"stream open (median of {POLL_REPEATS})", watched_rate, "tasks/s"),
        figure("operator", "same, not polled", quiet_rate, "tasks/s"),
        figure("operator", "polled vs not polled", 100 * watched_rate / quiet_rate, "%",
               ">=", 97),
    ]


def _listen(base: str, stop: threading.Event) -> None:
    """A dashboard's live stream (/api/events), read until told to stop."""
    with urllib.request.urlopen(base + "/api/events", timeout=30) as stream:
        while not stop.is_set() and stream.readline():
            pass


def _poll(base: str, stop: threading.Event) -> None:
    """An operator's dashboard: the stats and a page of tasks, once a second."""
    while not stop.wait(1.0):
        for path in ("/api/stats", "/api/tasks?limit=50"):
            with urllib.request.urlopen(base + path, timeout=10) as r:
                r.read()


def many_workers(scale: Scale) -> list[Figure]:
    figures = []
    rates = {}
    for n_workers in scale.many_workers:
        with running(node_toml(pools=False)) as node, Client(node.broker) as c:
            fake = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.fake_workers", node.worker_bind,
                 str(n_workers), "8"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            try:
                fake.stdout.readline()
                wait_until(lambda: c.stats().workers_alive.get("fake") == n_workers, 60)
                c.gather(c.submit_many([(NOOP, ())] * 2000), timeout=60)
                t0 = time.perf_counter()
                c.gather(c.submit_many([(NOOP, ())] * scale.many_worker_tasks), timeout=600)
                rates[n_workers] = scale.many_worker_tasks / (time.perf_counter() - t0)
            finally:
                fake.send_signal(signal.SIGTERM)
                fake.wait(10)
        figures.append(figure("many-workers", f"dispatch rate, {n_workers} workers",
                              rates[n_workers], "tasks/s"))
    base, top = min(rates), max(rates)
    figures.append(figure("many-workers", f"{top} workers vs {base}",
                          100 * rates[top] / rates[base], "%", ">=", 80))
    return figures


def recovery(scale: Scale) -> list[Figure]:
    with running(node_toml(workers=2, concurrency=4)) as node, Client(node.broker) as c:
        handles = c.submit_many([(ASYNC_SLEEP, (0.5,))] * 8)
        infos = wait_until(lambda: (i := [c.status(h.id) for h in handles]) and
                           all(x.state == "running" for x in i) and i, 10)
        victim = infos[0].worker
        held = [x.id for x in infos if x.worker == victim]
        pid = pid_of(f"actorq: worker {victim}", node.sid, exact=True)[0]
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: all(c.status(t).attempts == 2 for t in held), 10, interval_s=0.001)
        requeued = time.perf_counter() - t0
        c.gather([h for h in handles if h.id in held], timeout=30)
        completed = time.perf_counter() - t0
    return [
        figure("recovery", f"SIGKILL to all {len(held)} held tasks running elsewhere",
               requeued * 1000, "ms", "<=", 1000),
        figure("recovery", "SIGKILL to all held tasks completed (0.5 s tasks)",
               completed * 1000, "ms"),
    ]


def _interleaved_batch_rates(configs: dict[str, str], n: int,
                             client_options: dict[str, dict] | None = None,
                             submit: Callable[[Client, int], list] | None = None,
                             ) -> dict[str, float]:
    """Median throughput-batch rate of each config, the runs taken in turn (a, b, c,
    a, b, c, ...) with every node up at once: this machine's speed drifts by 20-40%
    over minutes, and ratios between configs measured minutes apart would carry that
    drift. Idle nodes cost only their heartbeats. `client_options`: per config, what
    its Client takes (keys); `submit`: how tasks go (submit_many by default)."""
    submit = submit or _batch
    rates: dict[str, list[float]] = {name: [] for name in configs}
    with ExitStack() as stack:
        clients = {}
        for name, config in configs.items():
            node = stack.enter_context(running(config, name))
            options = (client_options or {}).get(name, {})
            c = clients[name] = stack.enter_context(Client(node.broker, **options))
            c.gather(submit(c, 2000), timeout=60)  # warm up
        for _ in range(REPEATS):
            for name, c in clients.items():
                t0 = time.perf_counter()
                c.gather(submit(c, n), timeout=600)
                rates[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def durable(scale: Scale) -> list[Figure]:
    """throughput-batch in memory and with [storage] (full and normal), in one run,
    interleaved; then recovery: a durable broker holding the backlog SIGKILLed, and
    the time until the node's restarted broker answers with every task back."""
    n = scale.batch_tasks // 2
    figures = []
    with tempfile.TemporaryDirectory(prefix="actorq-bench-db-") as tmp, ExitStack() as pgs:
        configs = {"memory": node_toml()}
        for sync in ("full", "normal"):
            store = f'[storage]\npath = "{tmp}/{sync}.db"\nsynchronous = "{sync}"\n'
            configs[sync] = node_toml(storage=store)
        try:  # PostgreSQL on this machine (Debian's package), a server of our own
            pg = PostgresCluster()
            pgs.callback(pg.stop)
            configs["postgresql"] = node_toml(
                storage=f'[storage]\nurl = "{pg.create_database("bench")}"\n')
        except RuntimeError:
            pass
        rates = _interleaved_batch_rates(configs, n)
        mem = rates["memory"]
        figures.append(figure("durable", f"{n} no-op tasks, in memory (median of {REPEATS}, "
                              "runs interleaved with those below)", mem, "tasks/s"))
        for sync in [s for s in ("full", "normal", "postgresql") if s in rates]:
            rate = rates[sync]
            what = f"storage synchronous={sync}" if sync != "postgresql" else \
                "PostgreSQL storage (fsync on, same machine)"
            figures.append(figure("durable", f"same, {what}", rate, "tasks/s"))
            ratio = ("durable", f"{what} vs in memory", 100 * rate / mem, "%")
            figures.append(figure(*ratio) if sync == "normal" else figure(*ratio, ">=", 50))
        backlog_n = scale.backlog_tasks
        store = f'[storage]\npath = "{tmp}/recover.db"\n'
        with running(node_toml(pools=False, storage=store)) as node, Client(node.broker) as c:
            for start in range(0, backlog_n, 50_000):
                c.submit_many([(NOOP, ())] * min(50_000, backlog_n - start))
            c.flush(timeout=900)
            os.kill(node.actor_pid("broker"), signal.SIGKILL)
            t0 = time.perf_counter()
            wait_until(lambda: _depth_or_none(c) == backlog_n, 600, interval_s=0.05)
            took = time.perf_counter() - t0
    rec = ("durable", f"recovery: SIGKILL to accepting work, {backlog_n} queued", took, "s")
    figures.append(figure(*rec, "<=", 10) if backlog_n == 1_000_000 else figure(*rec))
    return figures


def _depth_or_none(c: Client) -> int | None:
    try:
        return sum(c.stats(timeout=0.5).queue_depth.values())
    except Exception:  # the broker is down or still recovering
        return None


WORKLOADS: dict[str, Callable[[Scale], list[Figure]]] = {
    "throughput-batch": throughput_batch,
    "durable": durable,
    "throughput-single": throughput_single,
    "latency": latency,
    "cpu": cpu,
    "head-of-line": head_of_line,
    "operator": operator,
    "elastic": elastic,
    "backlog": backlog,
    "many-workers": many_workers,
    "recovery": recovery,
}
