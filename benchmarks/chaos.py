"""The fault suite: faults injected into real nodes under load, and a history checker.

Each round starts a node, submits a stream of tasks whose results name them, injects
one fault at a random moment (or a few), waits for every task, and sorts each into
ok, lost (no result, or an error), duplicated (its outcome reached the client twice)
or wrong (another task's result). Scenarios: random worker SIGKILL at the default
credit and at prefetch 256, SIGSTOP of a worker, SIGKILL of the scheduler, of the
broker and of the whole durable node, and poison tasks that crash their worker every
time. `bin/chaos --rounds N` runs N rounds of each and prints the figures; the
quick tier (one round each) runs in the test suite (tests/chaos/).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from actorq import Client
from actorq.testing import NodeProcess, kill_session, pid_of, wait_until
from actorq.wire import protocol as p

ECHO = "benchmarks.chaos_tasks:echo_after"
POISON = "benchmarks.chaos_tasks:poison"
TASKS = 400  # per round, ~1 s of work for 4 one-slot workers
TASK_S = 0.01
KINDS = ("ok", "lost", "duplicated", "wrong")
LOST = object()  # what results() gives a task that ended without its result


@dataclass
class Round:
    counts: Counter = field(default_factory=Counter)
    recovery_s: list[float] = field(default_factory=list)  # worker kill -> running elsewhere
    notes: list[str] = field(default_factory=list)


def node_config(*, prefetch: int = 0, storage: Path | None = None, extra: str = "",
                queues: str = '["default"]') -> str:
    text = ('[node]\nshutdown_grace = 5\n[broker]\nbind = "tcp://127.0.0.1:*"\n'
            'worker_bind = "tcp://127.0.0.1:*"\nheartbeat_interval = 0.5\n' + extra)
    if storage is not None:
        text += f'[storage]\npath = "{storage}"\n'
    return text + (f'[[pools]]\nname = "default"\nworkers = 4\nprefetch = {prefetch}\n'
                   f'queues = {queues}\ntasks = ["benchmarks.chaos_tasks"]\n')


def watch_outcomes(c: Client) -> Counter:
    """How many successful outcomes the client's session received per task id: the
    wire as the client sees it, before the handles (which keep only the first)."""
    seen: Counter = Counter()
    session = c._session
    handle = session.on_message

    def counting(msg: object, now: float) -> None:
        if isinstance(msg, p.Outcomes):
            seen.update(o.id for o in msg.items if o.state == "succeeded")
        handle(msg, now)

    session.on_message = counting
    return seen


def classify(expected: dict[str, int], got: dict[str, object], seen: Counter) -> Counter:
    counts: Counter = Counter()
    for tid, want in expected.items():
        value = got.get(tid, LOST)
        if value is LOST:
            counts["lost"] += 1
        elif value != want:
            counts["wrong"] += 1
        elif seen[tid] > 1:
            counts["duplicated"] += 1
        else:
            counts["ok"] += 1
    return counts



def results(c: Client, ids: list[str], timeout: float,
            handles: dict[str, object] | None = None) -> dict[str, object]:
    """Each task's result, or LOST. The submitting client's own handles when given: a
    new handle watches the task, and the broker answers it again (no duplicate)."""
    got: dict[str, object] = {}
    deadline = time.monotonic() + timeout
    for tid in ids:
        h = handles[tid] if handles is not None else c.handle(tid)
        try:
            got[tid] = h.result(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 (a lost task, whatever the error)
            got[tid] = LOST
    return got


def submit_stream(c: Client, expected: dict[str, int], handles: dict[str, object],
                  stop: threading.Event, **options) -> None:
    """Submit TASKS tasks in chunks over ~0.5 s, or until `stop`."""
    for chunk in range(0, TASKS, 50):
        if stop.is_set():
            return
        hs = c.submit_many([(ECHO, (chunk + i, TASK_S)) for i in range(50)], **options)
        expected.update((h.id, chunk + i) for i, h in enumerate(hs))
        handles.update((h.id, h) for h in hs)
        time.sleep(0.02)


@dataclass
class Stream:
    """A stream of tasks submitted on a thread (submit_stream), and what came back."""

    c: Client
    options: dict = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    handles: dict[str, object] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.seen = watch_outcomes(self.c)
        self.feeder = threading.Thread(target=submit_stream, kwargs=self.options,
                                       args=(self.c, self.expected, self.handles, self.stop))
        self.feeder.start()

    def classify(self, timeout: float) -> Counter:
        """Once the stream ended: each task's fate, from the submitting client's handles."""
        self.feeder.join()
        return classify(self.expected, results(self.c, list(self.expected), timeout,
                                               self.handles), self.seen)


def _in_memory_round(tmp: Path, rng: random.Random, fault: Callable, prefetch: int = 0,
                     **options) -> Round:
    r = Round()
    node = NodeProcess(node_config(prefetch=prefetch), tmp, f"n{rng.randrange(1 << 30)}")
    try:
        with Client(node.broker) as c:
            stream = Stream(c, options)
            time.sleep(rng.uniform(0.2, 0.6))
            fault(node, c, r, rng)
            stream.feeder.join()
            c.flush(timeout=30)
            r.counts = stream.classify(60)
    finally:
        node.cleanup()
    return r


def _running_on(c: Client, worker_pid: int) -> tuple[str, list[str]]:
    for w in c.workers():
        if w.pid == worker_pid:
            return w.name, [t for t in w.tasks if c.status(t).state == "running"]
    return "", []


def kill_worker(node: NodeProcess, c: Client, r: Round, rng: random.Random) -> None:
    """SIGKILL a random busy worker; time until the tasks it ran run elsewhere."""
    pid = rng.choice(node.worker_pids())
    name, running = _running_on(c, pid)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    for tid in running:
        def moved(tid: str = tid) -> bool:
            info = c.status(tid)
            return info.state == "succeeded" or (info.state == "running" and info.worker != name)
        wait_until(moved, 10, interval_s=0.005)
        r.recovery_s.append(time.monotonic() - t0)


def stop_worker(node: NodeProcess, c: Client, r: Round, rng: random.Random) -> None:
    """SIGSTOP a worker past its heartbeat liveness, then let it go on."""
    pid = rng.choice(node.worker_pids())
    os.kill(pid, signal.SIGSTOP)
    time.sleep(2.5)  # liveness: 0.5 s x 3
    os.kill(pid, signal.SIGCONT)


def kill_scheduler(node: NodeProcess, c: Client, r: Round, rng: random.Random) -> None:
    os.kill(pid_of("actorq: scheduler", node.sid)[0], signal.SIGKILL)


def durable_round(tmp: Path, rng: random.Random, whole_node: bool) -> Round:
    """SIGKILL the broker (the node restarts it) or the whole durable node (started
    again from its config) under load; acknowledged tasks must all come back."""
    r = Round()
    db = tmp / f"chaos-{rng.randrange(1 << 30)}.db"
    nodes = [NodeProcess(node_config(storage=db), tmp, f"d{rng.randrange(1 << 30)}")]
    try:
        c = Client(nodes[0].broker)
        stream = Stream(c)
        expected = stream.expected
        time.sleep(rng.uniform(0.2, 0.6))
        if whole_node:
            stream.stop.set()
            kill_session(nodes[0].sid)
        else:
            os.kill(nodes[0].actor_pid("broker"), signal.SIGKILL)
        stream.feeder.join()
        if whole_node:
            # What the old node acknowledged is what the client no longer holds unacked
            acked = {tid: v for tid, v in expected.items() if tid not in c._session.unacked}
            c.close(close_timeout=0.1)
            nodes.append(NodeProcess(node_config(storage=db), tmp, f"d{rng.randrange(1 << 30)}"))
            c = Client(nodes[-1].broker)
            r.counts = classify(acked, results(c, list(acked), 90), Counter())
            r.notes.append(f"{len(expected) - len(acked)} not acknowledged before the kill")
        else:
            c.flush(timeout=60)
            r.counts = stream.classify(90)
        c.close(close_timeout=1.0)
    finally:
        for n in nodes:
            n.cleanup()
    return r


def poison_round(tmp: Path, rng: random.Random) -> Round:
    """Ten different poison tasks in a row among good ones: each is dead after
    max_deliveries, the good ones all run, and the pool is still up."""
    r = Round()
    node = NodeProcess(node_config(extra="max_deliveries = 2\n"), tmp,
                       f"p{rng.randrange(1 << 30)}")
    try:
        with Client(node.broker) as c:
            seen = watch_outcomes(c)
            poisons = [c.submit(POISON, (i,)) for i in range(10)]
            good = c.submit_many([(ECHO, (i, TASK_S)) for i in range(100)])
            expected = {h.id: i for i, h in enumerate(good)}
            r.counts = classify(expected, results(c, list(expected), 120,
                                                  {h.id: h for h in good}), seen)
            for h in poisons:
                try:
                    h.result(timeout=120)
                    r.counts["poison ran"] += 1
                except Exception as exc:  # noqa: BLE001
                    r.counts["poison dead" if "WorkerLost" in str(exc) else "poison other"] += 1
            alive = len(node.worker_pids())
            r.notes.append(f"{alive} workers alive after")
            if c.submit(ECHO, (7, 0.0)).result(timeout=30) != 7 or alive < 1:
                r.counts["pool down"] += 1
    finally:
        node.cleanup()
    return r


SCENARIOS: dict[str, Callable[[Path, random.Random], Round]] = {
    "worker SIGKILL, default credit": lambda t, g: _in_memory_round(t, g, kill_worker),
    "worker SIGKILL, prefetch 256": lambda t, g: _in_memory_round(t, g, kill_worker, 256),
    "worker SIGSTOP": lambda t, g: _in_memory_round(t, g, stop_worker),
    "scheduler SIGKILL": lambda t, g: _in_memory_round(t, g, kill_scheduler, delay=0.3),
    "broker SIGKILL (durable)": lambda t, g: durable_round(t, g, whole_node=False),
    "node SIGKILL (durable)": lambda t, g: durable_round(t, g, whole_node=True),
    "poison tasks": poison_round,
}


def run(names: list[str], rounds: int, seed: int) -> dict[str, Round]:
    totals = {}
    rng = random.Random(seed)
    for name in names:
        total = Round()
        for _ in range(rounds):
            with tempfile.TemporaryDirectory(prefix="actorq-chaos-") as tmp:
                got = SCENARIOS[name](Path(tmp), rng)
            total.counts.update(got.counts)
            total.recovery_s += got.recovery_s
            total.notes += got.notes
        totals[name] = total
    return totals


def p99(samples: list[float]) -> float:
    if not samples:
        return float("nan")
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bin/chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1, help="rounds of each scenario")
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=None)
    ap.add_argument("--seed", type=int, default=20261205)
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    names = args.only or list(SCENARIOS)
    totals = run(names, args.rounds, args.seed)
    table = Table(title=f"actorq chaos: {args.rounds} round(s) of each scenario")
    for column in ("scenario", *KINDS, "other", "recovery p99", "rounds"):
        table.add_column(column)
    bad = 0
    for name, t in totals.items():
        other = {k: v for k, v in t.counts.items() if k not in KINDS}
        bad += t.counts["lost"] + t.counts["duplicated"] + t.counts["wrong"]
        bad += other.get("poison ran", 0) + other.get("poison other", 0) + other.get("pool down", 0)
        table.add_row(name, *(str(t.counts[k]) for k in KINDS),
                      ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "-",
                      f"{p99(t.recovery_s) * 1000:.0f} ms" if t.recovery_s else "-",
                      str(args.rounds))
    Console(width=140).print(table)
    kills = [s for t in totals.values() for s in t.recovery_s]
    if kills:
        print(f"worker SIGKILL -> its running tasks running elsewhere, over {len(kills)} "
              f"tasks: median {statistics.median(kills) * 1000:.0f} ms, p99 "
              f"{p99(kills) * 1000:.0f} ms, max {max(kills) * 1000:.0f} ms")
    print("lost, duplicated or wrong results, poison tasks not dead, pools down:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
