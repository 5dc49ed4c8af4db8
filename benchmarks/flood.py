"""Floods: clients submitting as fast as they can to a broker with no workers, at the
shipped limits. What the broker's memory does, what the clients are told, and whether
anything dies (docs/operations.md#limits states the bound these figures check)."""

from __future__ import annotations

import multiprocessing
import threading
import time

from actorq import Client, SubmitRejected

from .workloads import Figure, Scale, figure, node_toml, rss_bytes, running

CLIENTS = 10
BASE_RSS = 70 * 2**20  # the documented bound: the process and its libraries ...
PER_TASK = 250  # ... and this per unfinished task, plus their arguments
MAX_QUEUED, MAX_QUEUED_BYTES = 1_000_000, 2**30  # the shipped [broker] defaults


def _flood(address: str, payload_bytes: int, seconds: float, out) -> None:
    """One client: submit_many in batches until `seconds` pass; report what it was told."""
    codes: dict[str, int] = {}
    accepted = 0
    batch = [("actorq.demo:noop", ("x" * payload_bytes,) if payload_bytes else ())] * (
        max(1, min(2000, 4_000_000 // max(payload_bytes, 1))))
    with Client(address, full_timeout=1.0) as c:
        handles = []
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            try:
                handles += c.submit_many(batch)
            except SubmitRejected as exc:
                codes[exc.code] = codes.get(exc.code, 0) + len(batch)
        try:
            c.flush(timeout=30)
        except Exception:  # noqa: BLE001 (refused ones may still be waiting)
            pass
        for h in handles:
            err = getattr(h, "_error", None)
            if err is None:
                accepted += 1
            else:
                code = getattr(err, "code", type(err).__name__)
                codes[code] = codes.get(code, 0) + 1
        c.close(close_timeout=1.0)
    out.put((accepted, codes))


def _run(payload_bytes: int, seconds: float) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with running(node_toml(pools=False)) as node:
        pid = node.actor_pid("broker")
        base = rss_bytes(pid)
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = ctx.Queue()
        procs = [ctx.Process(target=_flood, args=(node.broker, payload_bytes, seconds, out))
                 for _ in range(CLIENTS)]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=seconds + 120) for _ in procs]
        for proc in procs:
            proc.join(30)
        done.set()
        sampler.join()
        with Client(node.broker) as c:
            stats = c.stats()
        alive = node.proc.poll() is None and node.actor_pid("broker") == pid
    codes: dict[str, int] = {}
    for _, got in results:
        for code, n in got.items():
            codes[code] = codes.get(code, 0) + n
    return {"peak": peak[0], "base": base, "accepted": sum(a for a, _ in results),
            "codes": codes, "alive": alive, "queued": sum(stats.queue_depth.values())}


def flood(scale: Scale) -> list[Figure]:
    seconds = 6.0 if scale.backlog_tasks < 1_000_000 else 15.0
    figures = []
    for label, payload in (("no-op tasks", 0), ("tasks of 100 KB", 100_000)):
        r = _run(payload, seconds)
        bound = BASE_RSS + PER_TASK * MAX_QUEUED + MAX_QUEUED_BYTES
        if payload == 0:
            bound = BASE_RSS + PER_TASK * MAX_QUEUED + 16 * MAX_QUEUED
        refused = sum(r["codes"].values())
        others = sum(n for code, n in r["codes"].items() if code != "queue_full")
        what = f"{CLIENTS} clients, {label}, {seconds:g} s, no workers"
        figures += [
            figure("flood", f"{what}: accepted", r["accepted"], "tasks"),
            figure("flood", f"{what}: refused, all queue_full", refused, "tasks"),
            figure("flood", f"{what}: refusals other than queue_full", others, "tasks",
                   "<=", 0),
            figure("flood", f"{what}: broker peak RSS (bound {bound / 2**20:.0f} MB)",
                   r["peak"] / 2**20, "MB", "<=", round(bound / 2**20)),
            figure("flood", f"{what}: broker and node still up (1 = yes)", int(r["alive"]),
                   "", ">=", 1),
        ]
    return figures
