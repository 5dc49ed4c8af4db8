"""Every metric name, help text and label set, rendered from a broker Stats snapshot.

The gateway scrapes the broker for one Stats message per /metrics request and
turns it into Prometheus families here, so no other module invents a metric name.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from actorq.wire.protocol import Stats

BROKER_UP = "actorq_broker_up"
SUBMITTED = "actorq_tasks_submitted"  # exposed with the _total suffix
FINISHED = "actorq_tasks_finished"
REJECTED = "actorq_submissions_rejected"
QUEUE_DEPTH = "actorq_queue_depth"
RUNNING = "actorq_tasks_running"
WORKERS_ALIVE = "actorq_workers_alive"
WORKER_RESTARTS = "actorq_worker_restarts"
POOL_UP = "actorq_pool_up"
TASK_DURATION = "actorq_task_duration_seconds"
BAD_FRAMES = "actorq_bad_frames"
STALE_RESULTS = "actorq_stale_results"
BROKER_UPTIME = "actorq_broker_uptime_seconds"
WAITING = "actorq_tasks_waiting"
RETRIES = "actorq_task_retries"
CRON_FIRED = "actorq_cron_fired"
LEASES_RETURNED = "actorq_leases_returned"
STEALS = "actorq_lease_steals"
POOL_WORKERS = "actorq_pool_workers"
POOL_TARGET = "actorq_pool_workers_target"
POOL_SCALE_EVENTS = "actorq_pool_scale_events"
WORKERS_BUSY = "actorq_workers_busy"
QUEUE_OLDEST = "actorq_queue_oldest_seconds"
BROKER_CPU = "actorq_broker_cpu_seconds"
BROKER_RSS = "actorq_broker_resident_memory_bytes"
QUEUE_WAIT = "actorq_task_queue_wait_seconds"
TASK_RUNS = "actorq_task_runs"
TASK_RUN_TIME = "actorq_task_run_seconds"
# Every final state a task can reach: each is exported from the start, at 0, so that the
# first failure shows in increase() rather than as a series appearing from nothing.
FINAL_STATES = ("succeeded", "dead", "cancelled", "expired")
QUEUE_UNSERVED = "actorq_queue_unserved"
BROKER_EPOCH = "actorq_broker_epoch"
BROKER_LEADING = "actorq_broker_leading"


def _leadership(stats: Stats) -> Iterator[Metric]:
    # A broker that answers serves: a standby does not listen, and a gateway whose
    # broker is a standby reports actorq_broker_up 0 instead.
    leading = GaugeMetricFamily(BROKER_LEADING, "1: the broker this gateway reads serves (and "
                                "leads its shared store, if it has one).", labels=["leader"])
    leading.add_metric([stats.leader or stats.instance], 1)
    yield leading
    yield GaugeMetricFamily(BROKER_EPOCH, "Leadership epoch of the broker: grows with every "
                            "takeover of a shared PostgreSQL store (0 without one).",
                            value=stats.epoch)


def families(stats: Stats | None) -> Iterator[Metric]:
    up = GaugeMetricFamily(BROKER_UP, "1 when the gateway could read the broker's stats.")
    up.add_metric([], 0 if stats is None else 1)
    yield up
    if stats is None:
        return
    yield GaugeMetricFamily(BROKER_UPTIME, "Seconds since this broker instance started.",
                            value=stats.uptime_s)
    yield from _leadership(stats)
    yield CounterMetricFamily(SUBMITTED, "Tasks accepted by the broker.",
                              value=stats.submitted_total)
    finished = CounterMetricFamily(FINISHED, "Tasks that reached a final state, by state.",
                                   labels=["state"])
    for state, n in sorted({**dict.fromkeys(FINAL_STATES, 0), **stats.finished_total}.items()):
        finished.add_metric([state], n)
    yield finished
    yield CounterMetricFamily(REJECTED, "Submissions the broker refused (too large, bad option, "
                              "draining).", value=stats.rejected_total)
    depth = GaugeMetricFamily(QUEUE_DEPTH, "Tasks waiting in each queue.", labels=["queue"])
    for queue, n in sorted(stats.queue_depth.items()):
        depth.add_metric([queue], n)
    yield depth
    yield GaugeMetricFamily(RUNNING, "Tasks leased to workers now.", value=stats.running)
    waiting = GaugeMetricFamily(WAITING, "Tasks not in a queue yet, and dead letters kept, "
                                "by state.", labels=["state"])
    waiting.add_metric(["scheduled"], stats.scheduled)
    waiting.add_metric(["pending"], stats.pending)
    waiting.add_metric(["dead"], stats.dead)
    yield waiting
    yield CounterMetricFamily(RETRIES, "Failed attempts scheduled for a retry.",
                              value=stats.retries_total)
    yield CounterMetricFamily(CRON_FIRED, "Tasks submitted by cron entries.",
                              value=stats.cron_fired_total)
    alive = GaugeMetricFamily(WORKERS_ALIVE, "Workers connected and heartbeating, by pool.",
                              labels=["pool"])
    for pool, n in sorted(stats.workers_alive.items()):
        alive.add_metric([pool], n)
    yield alive
    restarts = CounterMetricFamily(WORKER_RESTARTS, "Worker processes restarted after dying, "
                                   "by pool.", labels=["pool"])
    known_pools = dict.fromkeys((*stats.workers_alive, *stats.supervisors, *stats.pools), 0)
    for pool, n in sorted({**known_pools, **stats.worker_restarts}.items()):
        restarts.add_metric([pool], n)
    yield restarts
    pools = GaugeMetricFamily(POOL_UP, "1 while a pool's supervisor is up; 0 once it gave up "
                              "or went silent.", labels=["pool"])
    for pool, state in sorted(stats.supervisors.items()):
        pools.add_metric([pool], 1 if state == "up" else 0)
    yield pools
    yield from _pool_sizes(stats)
    yield from _load(stats)
    buckets = []
    cumulative = 0
    for bound, n in zip(stats.duration_buckets, stats.duration_counts):
        cumulative += n
        buckets.append((repr(float(bound)), cumulative))
    cumulative += stats.duration_counts[-1]
    buckets.append(("+Inf", cumulative))
    yield HistogramMetricFamily(TASK_DURATION, "Run time of finished task attempts.",
                                buckets=buckets, sum_value=stats.duration_sum_s)
    yield from _per_task(stats)
    yield CounterMetricFamily(BAD_FRAMES, "Frames the broker could not decode or accept.",
                              value=stats.bad_frames_total)
    yield CounterMetricFamily(STALE_RESULTS, "Results ignored because their lease was stale.",
                              value=stats.stale_results_total)
    yield CounterMetricFamily(LEASES_RETURNED, "Leases requeued without an attempt counted: "
                              "handed back by a busy or draining worker, or held unstarted by "
                              "one that died.", value=stats.leases_returned_total)
    yield CounterMetricFamily(STEALS, "Times the broker asked a worker to hand back leases it "
                              "had not started, for an idle worker.", value=stats.steals_total)
    unserved = GaugeMetricFamily(QUEUE_UNSERVED, "1 for a queue with tasks waiting and no "
                                 "live worker consuming it.", labels=["queue"])
    for queue in stats.unserved_queues:
        unserved.add_metric([queue], 1)
    yield unserved


def _histogram(bounds: list[float], counts: list[int]) -> list[tuple[str, int]]:
    out, cumulative = [], 0
    for bound, n in zip(bounds, counts):
        cumulative += n
        out.append((repr(float(bound)), cumulative))
    out.append(("+Inf", cumulative + (counts[-1] if len(counts) > len(bounds) else 0)))
    return out


def _per_task(stats: Stats) -> Iterator[Metric]:
    if stats.wait_counts:
        yield HistogramMetricFamily(QUEUE_WAIT, "Time tasks waited from submission to the "
                                    "start of their attempt.",
                                    buckets=_histogram(stats.duration_buckets, stats.wait_counts),
                                    sum_value=stats.wait_sum_s)
    runs = CounterMetricFamily(TASK_RUNS, "Finished attempts by registered task name and "
                               "outcome.", labels=["task", "outcome"])
    run_time = CounterMetricFamily(TASK_RUN_TIME, "Run time of finished attempts by "
                                   "registered task name.", labels=["task"])
    for name, s in sorted(stats.by_name.items()):
        runs.add_metric([name, "succeeded"], s.succeeded)
        runs.add_metric([name, "failed"], s.failed)
        run_time.add_metric([name], s.run_s)
    yield runs
    yield run_time


def _load(stats: Stats) -> Iterator[Metric]:
    busy = GaugeMetricFamily(WORKERS_BUSY, "Workers holding at least their slots' worth of "
                             "tasks, by pool.", labels=["pool"])
    for pool in sorted(stats.workers_alive):
        busy.add_metric([pool], stats.workers_busy.get(pool, 0))
    yield busy
    oldest = GaugeMetricFamily(QUEUE_OLDEST, "Age of the oldest task waiting in each queue.",
                               labels=["queue"])
    for queue in sorted(stats.queue_depth):
        oldest.add_metric([queue], stats.queue_oldest_s.get(queue, 0.0))
    yield oldest
    yield CounterMetricFamily(BROKER_CPU, "CPU time the broker process used.",
                              value=stats.process_cpu_s)
    yield GaugeMetricFamily(BROKER_RSS, "Resident memory of the broker process.",
                            value=stats.process_rss_bytes)


def _pool_sizes(stats: Stats) -> Iterator[Metric]:
    workers = GaugeMetricFamily(POOL_WORKERS, "Worker processes a pool runs now, as its "
                                "supervisors report.", labels=["pool"])
    target = GaugeMetricFamily(POOL_TARGET, "Worker processes a pool is heading for "
                               "(autoscaling).", labels=["pool"])
    events = CounterMetricFamily(POOL_SCALE_EVENTS, "Scaling decisions taken, by direction.",
                                 labels=["pool", "direction"])
    for pool, s in sorted(stats.pools.items()):
        workers.add_metric([pool], s.workers)
        target.add_metric([pool], s.target)
        events.add_metric([pool, "up"], s.scale_ups)
        events.add_metric([pool, "down"], s.scale_downs)
    yield workers
    yield target
    yield events


class StatsCollector(Collector):
    """Yields the families of whatever snapshot the gateway last fetched."""

    def __init__(self) -> None:
        self.stats: Stats | None = None

    def collect(self) -> Iterator[Metric]:
        return families(self.stats)
