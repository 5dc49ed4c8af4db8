"""Brokers sharing a PostgreSQL store, under load, losing their leader or a worker host.

A cluster is two broker nodes (A leads, B waits as its standby) on one store, two
worker-only nodes whose pools take both brokers' addresses, and a client given both
client addresses. On "hosts" (benchmarks/hosts.py) each runs in a network namespace
of its own, PostgreSQL in another, and the client in the harness's process reaches
them over a bridge; on loopback they all share this machine's network.

Faults: the leader's host killed (every process, SIGKILL), the leader's host cut
off (a partition: nothing in or out, no reset), the leader paused (SIGSTOP of its
broker, which wakes up deposed), and a worker host cut off and healed. Every task
is classified as benchmarks/chaos.py does (ok, lost, duplicated on the wire,
wrong); failover time runs from the fault to the acknowledgement, by the new
leader, of a task submitted just after it.

`python -m benchmarks.failover --rounds 20 [--hosts]` prints the distribution;
tests/failover run one round of each.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from actorq import Client
from actorq.testing import NodeProcess, PostgresCluster, free_port, pid_of, wait_until
from benchmarks.chaos import ECHO, Round, Stream, classify, results, watch_outcomes
from benchmarks.hosts import Hosts

HOST_NAMES = ["db", "a", "b", "w1", "w2"]
FAULTS = ("leader host killed", "leader host cut off", "leader paused")


@dataclass
class Site:
    """Where the cluster runs: this machine's loopback, or hosts of the harness's own."""

    hosts: Hosts | None = None

    def ip(self, name: str) -> str:
        return self.hosts.ip(name) if self.hosts else "127.0.0.1"

    def netns(self, name: str) -> str | None:
        return self.hosts.ns(name) if self.hosts else None

    def postgres(self) -> PostgresCluster:
        return PostgresCluster(self.ip("db"), self.netns("db"))


def broker_config(url: str, ip: str, port: int, worker_port: int) -> str:
    return (f'[node]\nshutdown_grace = 5\n[broker]\nbind = "tcp://{ip}:{port}"\n'
            f'worker_bind = "tcp://{ip}:{worker_port}"\nheartbeat_interval = 0.5\n'
            f'[storage]\nurl = "{url}"\n[security]\nallow_insecure = true\n')


def worker_config(brokers: list[str]) -> str:
    listed = ", ".join(f'"{b}"' for b in brokers)
    return ('[node]\nshutdown_grace = 5\n[security]\nallow_insecure = true\n'
            '[[pools]]\nname = "default"\nworkers = 2\nconcurrency = 2\n'
            f'tasks = ["benchmarks.chaos_tasks"]\nbroker = [{listed}]\n')


class Cluster:
    def __init__(self, tmp: Path, pg: PostgresCluster, site: Site, tag: str) -> None:
        self.site = site
        url = pg.create_database(f"f{tag}{os.urandom(4).hex()}")
        self.nodes: dict[str, NodeProcess] = {}
        self.clients: list[str] = []
        workers: list[str] = []
        try:
            for name in ("a", "b"):
                ip = site.ip(name)
                port, worker_port = free_port(), free_port()
                self.clients.append(f"tcp://{ip}:{port}")
                workers.append(f"tcp://{ip}:{worker_port}")
                self.nodes[name] = NodeProcess(broker_config(url, ip, port, worker_port),
                                               tmp, f"{name}{tag}", netns=site.netns(name))
            assert not self.nodes["a"].standby and self.nodes["b"].standby
            for name in ("w1", "w2"):
                self.nodes[name] = NodeProcess(worker_config(workers), tmp, f"{name}{tag}",
                                               netns=site.netns(name))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for name, node in self.nodes.items():
            if self.site.hosts is not None:
                self.site.hosts.heal(name)
            node.cleanup()


def _acked_after(c: Client, t0: float) -> float:
    """Submit one task now; seconds from t0 until a broker acknowledged it."""
    marker = c.submit(ECHO, (-1, 0.0))
    c._session.want_acks()
    wait_until(lambda: marker.id not in c._session.unacked, 60, interval_s=0.002)
    return time.monotonic() - t0


def leader_round(tmp: Path, pg: PostgresCluster, site: Site, rng: random.Random,
                 fault: str) -> Round:
    """Kill, cut off or pause the leader under load; B must lead, nothing be lost."""
    r = Round()
    cluster = Cluster(tmp, pg, site, f"{rng.randrange(1 << 30)}")
    a = cluster.nodes["a"]
    try:
        with Client(cluster.clients) as c:
            stream = Stream(c)
            time.sleep(rng.uniform(0.2, 0.5))
            t0 = time.monotonic()
            paused = None
            if fault == "leader host killed":
                if site.hosts is not None:
                    site.hosts.kill_all("a")
                else:
                    os.killpg(a.sid, signal.SIGKILL)
            elif fault == "leader host cut off":
                site.hosts.cut("a")
            else:
                paused = pid_of("actorq: broker", a.sid)[0]
                os.kill(paused, signal.SIGSTOP)
            r.recovery_s.append(_acked_after(c, t0))
            stream.feeder.join()
            if paused is not None:  # it wakes up deposed, and steps down
                os.kill(paused, signal.SIGCONT)
            c.flush(timeout=60)
            r.counts = stream.classify(90)
            stats = c.stats()
            b_pids = pid_of("actorq: broker", cluster.nodes["b"].sid)
            if stats.epoch != 2 or int(stats.leader.split(":")[1]) not in b_pids:
                r.counts["wrong leader"] += 1
                r.notes.append(f"after {fault}: leader {stats.leader} epoch {stats.epoch}")
            if paused is not None:
                wait_until(lambda: "no longer leads" in a.log(), 30)
    finally:
        cluster.close()
    return r


def worker_cut_round(tmp: Path, pg: PostgresCluster, site: Site, rng: random.Random) -> Round:
    """Cut a worker host off while it runs tasks, heal it later: its tasks run
    elsewhere, each recorded once, and its late results are discarded."""
    r = Round()
    cluster = Cluster(tmp, pg, site, f"{rng.randrange(1 << 30)}")
    try:
        with Client(cluster.clients) as c:
            seen = watch_outcomes(c)
            hs = c.submit_many([(ECHO, (i, 1.5)) for i in range(8)])
            expected = {h.id: i for i, h in enumerate(hs)}
            w1_pids = cluster.nodes["w1"].worker_pids()

            def held_by_w1() -> dict[str, str]:  # task id -> the w1 worker leasing it
                return {t: w.name for w in c.workers() if w.pid in w1_pids for t in w.tasks}

            held = wait_until(held_by_w1, 20, message="w1 leases tasks")
            site.hosts.cut("w1")

            def run_elsewhere() -> bool:  # past the workers' liveness, each requeued
                infos = [c.status(t) for t in held]
                return all(i.state == "succeeded" or (i.state == "running" and
                                                      i.worker != held[i.id]) for i in infos)

            wait_until(run_elsewhere, 30, interval_s=0.05,
                       message="the cut-off host's tasks running elsewhere")
            site.hosts.heal("w1")
            r.counts = classify(expected, results(c, list(expected), 60,
                                                  {h.id: h for h in hs}), seen)
            # The late results reach the broker once TCP retransmits after the heal.
            try:
                wait_until(lambda: c.stats().stale_results_total > 0, 30)
            except AssertionError:
                r.counts["late result not seen"] += 1
            r.notes.append(f"stale results discarded: {c.stats().stale_results_total}")
    finally:
        cluster.close()
    return r


def round_or_failure(play, tmp: Path, *args) -> Round:
    """One round; one that fails outright (a broker that never answered) is counted
    and named, and the run goes on to give its distribution."""
    try:
        return play(tmp, *args)
    except Exception as exc:  # noqa: BLE001 (reported, as the round's outcome)
        r = Round()
        r.counts["round failed"] += 1
        r.notes.append(f"round failed: {exc!r}")
        return r


def run(rounds: int, seed: int, on_hosts: bool) -> dict[str, Round]:
    rng = random.Random(seed)
    hosts = Hosts(HOST_NAMES) if on_hosts else None
    totals: dict[str, Round] = {}
    try:
        site = Site(hosts)
        pg = site.postgres()
        try:
            faults = list(FAULTS) if on_hosts else ["leader host killed", "leader paused"]
            for fault in faults:
                total = totals[fault] = Round()
                for _ in range(rounds):
                    with tempfile.TemporaryDirectory(prefix="actorq-failover-") as tmp:
                        got = round_or_failure(leader_round, Path(tmp), pg, site, rng, fault)
                    total.counts.update(got.counts)
                    total.recovery_s += got.recovery_s
                    total.notes += got.notes
            if on_hosts:
                total = totals["worker host cut off"] = Round()
                for _ in range(max(1, rounds // 4)):
                    with tempfile.TemporaryDirectory(prefix="actorq-failover-") as tmp:
                        got = round_or_failure(worker_cut_round, Path(tmp), pg, site, rng)
                    total.counts.update(got.counts)
                    total.notes += got.notes
        finally:
            pg.stop()
    finally:
        if hosts is not None:
            hosts.close()
    return totals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.failover",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--hosts", action="store_true", help="on network namespaces (root)")
    ap.add_argument("--seed", type=int, default=20261205)
    args = ap.parse_args(argv)
    totals = run(args.rounds, args.seed, args.hosts)
    bad = 0
    for name, t in totals.items():
        bad += sum(v for k, v in t.counts.items() if k != "ok")
        line = f"{name}: {dict(sorted(t.counts.items()))}"
        if t.recovery_s:
            s = sorted(t.recovery_s)
            line += (f"; failover over {len(s)} rounds: min {s[0]:.2f} s, median "
                     f"{statistics.median(s):.2f} s, p90 {s[int(len(s) * 0.9)]:.2f} s, "
                     f"max {s[-1]:.2f} s; all: {', '.join(f'{x:.2f}' for x in s)}")
        if t.notes:
            line += f"; notes: {'; '.join(t.notes)}"
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
