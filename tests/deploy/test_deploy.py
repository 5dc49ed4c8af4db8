"""deploy/: Prometheus files pass promtool, every metric the alerts and the Grafana
dashboard name is one a live node exports, and the Compose configs are valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request

import pytest

from actorq.node.config import load
from actorq.testing import ROOT, wait_until

DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bactorq_[a-z_]+")


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: Debian's prometheus package has it (bin/test installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("what, path", [("config", "prometheus/prometheus.yml"),
                                        ("rules", "prometheus/rules.yml")])
def test_promtool_accepts_the_prometheus_files(what, path):
    done = promtool("check", what, str(DEPLOY / path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_the_alerts_and_the_dashboard_name_is_exported(node, client):
    # Given a node that ran a task (so its histograms have series), holds one in a
    # queue nobody serves, and whose pool has reported its size
    n = node()
    c = client(n)
    assert c.submit("actorq.demo:add", (1, 2)).result(timeout=10) == 3
    c.submit("actorq.demo:add", (1, 2), queue="nobody")
    exported: set[str] = set()

    def scrape() -> bool:
        with urllib.request.urlopen(f"{n.http}/metrics", timeout=10) as r:
            exported.update(re.findall(r"^(actorq_[a-z_]+)", r.read().decode(), re.M))
        return {"actorq_pool_workers_target", "actorq_queue_unserved"} <= exported

    wait_until(scrape, 10, interval_s=0.2)
    # Then each metric a query names is among them
    dashboard = json.loads((DEPLOY / "grafana" / "actorq.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries.append((DEPLOY / "prometheus" / "rules.yml").read_text())
    named = {m for q in queries for m in METRIC.findall(q)}
    assert len(named) >= 15
    assert named <= exported, f"not exported: {sorted(named - exported)}"


@pytest.mark.parametrize("config", ["broker.toml", "worker.toml"])
def test_the_compose_configs_are_valid(config):
    cfg = load(DEPLOY / "config" / config)
    assert cfg.security.allow_insecure  # a private network, said so explicitly


def test_compose_runs_two_brokers_on_one_store_and_workers_follow_the_leader():
    compose = (DEPLOY / "compose.yaml").read_text()
    for service in ("postgres", "broker-a", "broker-b", "worker", "prometheus", "grafana"):
        assert re.search(rf"^  {service}:$", compose, re.M), service
    broker, worker = load(DEPLOY / "config" / "broker.toml"), load(DEPLOY / "config" / "worker.toml")
    assert broker.storage.url.startswith("postgresql://")
    port = broker.broker.worker_bind.rsplit(":", 1)[1]
    assert worker.pools[0].broker == [f"tcp://broker-a:{port}", f"tcp://broker-b:{port}"]
