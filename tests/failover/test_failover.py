"""Brokers sharing a PostgreSQL store, losing their leader or a worker host under
load (benchmarks/failover.py runs the same rounds many times and reports figures).

On loopback: the leader's node SIGKILLed whole, and the leader's broker paused
(SIGSTOP) until the standby led, then woken: it must step down. On hosts (network
namespaces joined by veth pairs; root only): the leader's host killed (every
process) or cut off, and a worker host cut off and healed. Every round: every task
ends ok, none lost, duplicated on the wire or wrong, and the standby leads under
epoch 2; the worker round also sees the cut-off host's late results discarded.
"""

from __future__ import annotations

import random

import pytest

from benchmarks.failover import (
    HOST_NAMES,
    Site,
    round_or_failure,
    leader_round,
    worker_cut_round,
)
from benchmarks.hosts import Hosts, unavailable

CLEAN = {"lost": 0, "duplicated": 0, "wrong": 0, "wrong leader": 0, "late result not seen": 0}


def assert_clean(r) -> None:
    assert r.counts["ok"] > 0, r
    assert {k: r.counts[k] for k in CLEAN} == CLEAN, r


@pytest.fixture(scope="module")
def hosts_site():
    why = unavailable()
    if why is not None:
        pytest.skip(f"multi-host tests need network namespaces: {why}")
    with Hosts(HOST_NAMES) as hosts:
        site = Site(hosts)
        pg = site.postgres()
        try:
            yield site, pg
        finally:
            pg.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["leader host killed", "leader paused"])
def test_on_loopback_the_standby_takes_over_and_nothing_is_lost(fault, pg, tmp_path):
    r = leader_round(tmp_path, pg, Site(), random.Random(fault), fault)
    assert_clean(r)
    assert r.recovery_s and r.recovery_s[0] < 10, r


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["leader host killed", "leader host cut off"])
def test_on_hosts_the_standby_takes_over_and_nothing_is_lost(fault, hosts_site, tmp_path):
    site, pg = hosts_site
    r = leader_round(tmp_path, pg, site, random.Random(fault), fault)
    assert_clean(r)
    assert r.recovery_s and r.recovery_s[0] < 10, r


@pytest.mark.timeout(120)
def test_a_cut_off_worker_host_has_its_tasks_run_elsewhere_and_late_results_discarded(
        hosts_site, tmp_path):
    site, pg = hosts_site
    r = worker_cut_round(tmp_path, pg, site, random.Random("worker"))
    assert_clean(r)


def test_the_benchmark_counts_a_failed_round_and_goes_on(tmp_path):
    def fails(tmp, *args):
        raise TimeoutError("no answer")

    r = round_or_failure(fails, tmp_path, "x")
    assert r.counts["round failed"] == 1 and "no answer" in r.notes[0]
