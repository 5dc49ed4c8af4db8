"""What the broker counts, and the Stats snapshot clients, /metrics and /health read."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from actorq.broker.state.dispatch import DURATION_BUCKETS_S
from actorq.broker.state.records import DEAD, SUCCEEDED
from actorq.wire import protocol as p

MAX_NAMED = 100  # task names with counters of their own
RATE_SAMPLES = 62  # counter samples kept, one a heartbeat: a minute's rates at 1 s


class Statistics:
    """Part of BrokerState (see state.py): counters and the stats() snapshot."""

    def _init_stats(self, now: float) -> None:
        # (cpu seconds, rss bytes) of this process, set by the broker loop: the pure
        # state reads no clock or file of its own.
        self.process_usage: Callable[[], tuple[float, int]] | None = None
        # (when, submitted, succeeded, failed attempts), once a heartbeat: for the rates
        self.samples: deque[tuple[float, int, int, int]] = deque(maxlen=RATE_SAMPLES)
        self.submitted_total = 0
        self.finished_total: dict[str, int] = {}
        self.rejected_total = 0
        self.bad_frames_total = 0
        self.stale_results_total = 0
        self.retries_total = 0
        self.worker_restarts: dict[str, int] = {}
        self.leases_returned_total = 0  # leases requeued uncharged: handed back, never started
        self.duration_counts = [0] * (len(DURATION_BUCKETS_S) + 1)
        self.duration_sum_s = 0.0
        self.wait_counts = [0] * (len(DURATION_BUCKETS_S) + 1)  # submitted to started
        self.wait_sum_s = 0.0
        self.results_total = 0  # current results: how many each histogram holds
        self.by_name: dict[str, list] = {}  # name -> [succeeded, failed, run seconds]

    def _count_results(self, seen: int, succeeded: int, duration_sum: float,
                       wait_sum: float) -> None:
        """A batch of `seen` current results, counted once. The caller counted those past
        the first bucket of each histogram; the rest are in the first."""
        self.results_total += seen
        self.duration_sum_s += duration_sum
        self.wait_sum_s += wait_sum
        if succeeded:
            self.finished_total[SUCCEEDED] = self.finished_total.get(SUCCEEDED, 0) + succeeded

    def _name_tasks(self, names: list[str]) -> None:
        """Registered task names (a worker's Hello) get counters of their own, up to
        MAX_NAMED: a client cannot grow the metrics' cardinality with names it makes up."""
        by_name = self.by_name
        for name in names:
            if len(by_name) >= MAX_NAMED:
                return
            by_name.setdefault(name, [0, 0, 0.0])

    def _sample(self, now: float) -> None:
        done = self.finished_total
        self.samples.append((now, self.submitted_total, done.get(SUCCEEDED, 0),
                             self.retries_total + done.get(DEAD, 0)))

    def _rates(self, now: float) -> dict[str, float]:
        """Per second over the last 10 s and minute, from the samples and the counters."""
        done = self.finished_total
        current = (now, self.submitted_total, done.get(SUCCEEDED, 0),
                   self.retries_total + done.get(DEAD, 0))
        rates = {}
        for window in (10, 60):
            old = next((s for s in self.samples if s[0] >= now - window), current)
            span = now - old[0]
            for i, what in ((1, "submitted"), (2, "succeeded"), (3, "failed")):
                rates[f"{what}_{window}s"] = (current[i] - old[i]) / span if span > 0 else 0.0
        return rates

    def _filled(self, counts: list[int]) -> list[int]:
        """A histogram with its first bucket: every result not counted in another."""
        return [self.results_total - sum(counts[1:]), *counts[1:]]

    def _quantile(self, q: float) -> float:
        """The upper bound of the duration bucket holding quantile `q` (0 when empty)."""
        counts = self._filled(self.duration_counts)
        total = sum(counts)
        if not total:
            return 0.0
        seen = 0
        for bound, n in zip(DURATION_BUCKETS_S, counts):
            seen += n
            if seen >= q * total:
                return bound
        return DURATION_BUCKETS_S[-1]

    def _oldest(self, now: float) -> dict[str, float]:
        wall = now + self.wall_offset
        out = {}
        for name, q in self.queues.items():
            heads = q.heads() if self.depth.get(name) else ()
            if heads:
                out[name] = max(0.0, wall - min(t.submitted_at for t in heads))
        return out

    def stats(self, now: float) -> p.Stats:
        cpu_s, rss = self.process_usage() if self.process_usage is not None else (0.0, 0)
        alive: dict[str, int] = {}
        busy: dict[str, int] = {}
        running = 0
        for w in self.workers.values():
            alive[w.pool] = alive.get(w.pool, 0) + 1
            running += len(w.leased)
            if len(w.leased) >= max(1, w.slots):
                busy[w.pool] = busy.get(w.pool, 0) + 1
        sups = {}
        pools: dict[str, p.PoolStats] = {}
        for s in self.supervisors.values():
            r = s.report
            if r is not None and not s.failed:
                was = pools.get(s.pool)
                pools[s.pool] = p.PoolStats(r.workers, r.target, r.min_workers, r.max_workers,
                                            r.scale_ups, r.scale_downs) if was is None else \
                    p.PoolStats(was.workers + r.workers, was.target + r.target, r.min_workers,
                                r.max_workers, was.scale_ups + r.scale_ups,
                                was.scale_downs + r.scale_downs, was.hosts + 1)
            if s.failed:
                sups[s.pool] = "failed"
            elif now - s.last_seen <= self.liveness_s:
                sups[s.pool] = "up"
            else:
                sups.setdefault(s.pool, "lost")
        return p.Stats(
            instance=self.instance,
            epoch=self.epoch,
            leader=self.leader,
            uptime_s=now - self.started,
            submitted_total=self.submitted_total,
            finished_total={str(k): v for k, v in self.finished_total.items()},
            queue_depth=dict(self.depth),
            running=running,
            workers_alive=alive,
            worker_restarts=dict(self.worker_restarts),
            supervisors=sups,
            duration_buckets=list(DURATION_BUCKETS_S),
            duration_counts=self._filled(self.duration_counts),
            duration_sum_s=self.duration_sum_s,
            bad_frames_total=self.bad_frames_total,
            stale_results_total=self.stale_results_total,
            rejected_total=self.rejected_total,
            draining=self.draining,
            scheduled=len(self.scheduled),
            pending=len(self.waiting),
            dead=len(self.dead),
            retries_total=self.retries_total,
            cron_fired_total=self.cron_fired_total,
            unserved_queues=sorted(q for q, n in self.depth.items()
                                   if n > 0 and q not in self.consumers),
            leases_returned_total=self.leases_returned_total,
            steals_total=self.steals_total,
            pools=pools,
            rates=self._rates(now),
            duration_p50_s=self._quantile(0.5),
            duration_p99_s=self._quantile(0.99),
            workers_busy=busy,
            queue_oldest_s=self._oldest(now),
            queue_by_priority={n: q.by_priority() for n, q in self.queues.items()
                               if self.depth.get(n)},
            process_cpu_s=cpu_s,
            process_rss_bytes=rss,
            wait_counts=self._filled(self.wait_counts),
            wait_sum_s=self.wait_sum_s,
            by_name={n: p.NameStats(*v) for n, v in self.by_name.items()},
        )
