"""Elastic pools against a real node: they grow under a backlog, shrink when idle or told
to, and lose or repeat no task on the way."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest

from actorq import RequestRejected
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.timeout(120)

ELASTIC = "min_workers = 1\nmax_workers = 4\nscale_down_after = 1\n"


def pool(c) -> object:
    return c.stats().pools.get("default")


def test_a_pool_grows_under_a_backlog_shrinks_when_told_and_when_idle_losing_nothing(
        node, client, tmp_path):
    # Given an elastic pool of 1..4 one-slot workers that drains a worker idle for 1 s
    n = node(workers=1, extra=ELASTIC)
    c = client(n)
    runs = tmp_path / "runs"
    # When a burst of 400 tasks of 20 ms arrives
    handles = c.submit_many([("tests.apps.faulty:slow_record", (str(runs), f"t{i}", 0.02))
                             for i in range(400)])
    # Then the pool grows to its maximum while they wait
    wait_until(lambda: (s := pool(c)) is not None and s.workers == 4, 30)
    # And told to shrink to 2 while tasks still run, it drains workers down to 2
    c.scale("default", max_workers=2)
    wait_until(lambda: c.stats().workers_alive.get("default") == 2, 30)
    # And every task ran exactly once
    c.gather(handles, timeout=60)
    assert Counter(runs.read_text().split()) == Counter(f"t{i}" for i in range(400))
    # And once idle, the pool drains to its minimum
    wait_until(lambda: c.stats().workers_alive.get("default") == 1, 30)
    size = pool(c)
    assert size.scale_ups >= 1 and size.scale_downs >= 2 and size.max_workers == 2
    with urllib.request.urlopen(f"{n.http}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'actorq_pool_scale_events_total{direction="up",pool="default"}' in text
    assert 'actorq_pool_workers{pool="default"} 1.0' in text
    with urllib.request.urlopen(f"{n.http}/health", timeout=10) as r:
        health = json.loads(r.read())
    assert health["pools"]["default"]["max_workers"] == 2


def test_bounds_from_the_client_and_the_cli_and_bad_values_change_nothing(node, client):
    # Given a pool fixed at one worker
    n = node(workers=1)
    c = client(n)
    # When bad bounds are asked for, from the client
    for kwargs, why in [(dict(min_workers=3, max_workers=2), "min_workers 3 is over"),
                        (dict(min_workers=0), "min_workers must be an int in 1..1024"),
                        ({}, "give min_workers, max_workers or both")]:
        with pytest.raises(RequestRejected, match=why):
            c.scale("default", **kwargs)
    with pytest.raises(RequestRejected, match="no pool 'nope'"):
        c.scale("nope", min_workers=1, max_workers=2)
    # and from the CLI
    cli = [sys.executable, "-m", "actorq", "scale", "--broker", n.broker]
    bad = subprocess.run(cli + ["default", "--min", "3", "--max", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "min_workers 3 is over max_workers 1" in bad.stderr
    # Then nothing changed; and good bounds from the CLI fix the pool at two workers
    good = subprocess.run(cli + ["default", "--min", "2", "--max", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    wait_until(lambda: c.stats().workers_alive.get("default") == 2, 30)
    wait_until(lambda: (s := pool(c)) is not None and (s.min_workers, s.max_workers) == (2, 2),
               10)
