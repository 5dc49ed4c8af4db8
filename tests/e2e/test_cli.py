"""The admin CLI against a real node: every command, tables and --json, how it finds its
broker, and what it says when it cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from actorq.http.auth import digest
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.timeout(120)

F = "tests.apps.faulty"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actorq", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, COLUMNS="200", **(env or {})))


def test_every_command_against_a_running_node(node, client):
    n = node(workers=1)
    c = client(n)
    b = ["--broker", n.broker]
    # submit takes every option, and prints the id (or the result with --wait)
    out = cli("submit", f"{F}:add", "[2, 3]", "--queue", "default", "--priority", "5",
              "--retries", "1", "--task-timeout", "10", "--key", "k-1", "--wait", *b)
    assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr
    out = cli("submit", f"{F}:echo", "--kwargs", '{"value": 7}', "--delay", "0", *b)
    assert out.returncode == 0 and c.handle(out.stdout.strip()).result(timeout=10) == 7
    # listings, as tables and as JSON
    assert f"{F}:add" in cli("tasks", "--state", "succeeded", *b).stdout
    page = json.loads(cli("tasks", "--json", "--limit", "1", *b).stdout)
    assert len(page["tasks"]) == 1 and page["next_cursor"]
    tid = page["tasks"][0]["id"]
    assert json.loads(cli("task", tid, "--json", *b).stdout)["id"] == tid
    for command in ("workers", "pools", "queues", "crons"):
        out = cli(command, *b)
        assert out.returncode == 0 and command in out.stdout, (command, out.stderr)
    stats = cli("stats", *b)
    assert "submitted" in stats.stdout and "rate succeeded_10s" in stats.stdout
    assert json.loads(cli("stats", "--json", *b).stdout)["submitted_total"] >= 2
    # cancel, dead letters and requeue
    slow = c.submit(f"{F}:async_sleep", (30,))
    wait_until(lambda: c.status(slow.id).state == "running", 10)
    assert cli("cancel", slow.id, *b).returncode == 0
    assert cli("cancel", slow.id, *b).returncode == 1  # it had ended
    dead = c.submit(f"{F}:boom", ("x",))
    wait_until(lambda: c.status(dead.id).state == "dead", 10)
    assert dead.id in cli("dead", *b).stdout
    assert cli("requeue", dead.id, *b).returncode == 0
    wait_until(lambda: c.status(dead.id).state == "dead", 10)
    assert "requeued 1" in cli("requeue", "--dead", "--name", f"{F}:boom", *b).stdout
    # queues: pause holds, resume releases, purge asks for --yes and counts
    assert cli("pause", "spare", *b).returncode == 0
    c.submit_many([(f"{F}:add", (1, 1))] * 2, queue="spare")
    c.flush()
    assert cli("purge", "spare", *b).returncode == 2  # no --yes: nothing happens
    assert "purged 2" in cli("purge", "spare", "--yes", *b).stdout
    assert cli("resume", "spare", *b).returncode == 0
    assert cli("scale", "default", "--min", "1", "--max", "2", *b).returncode == 0


def test_the_broker_comes_from_the_flag_the_config_or_the_environment(node, tmp_path):
    n = node(workers=1)
    config = tmp_path / "node.toml"
    config.write_text(f'[broker]\nbind = "{n.broker}"\n')
    assert cli("stats", "-c", str(config)).returncode == 0
    assert cli("stats", env={"ACTORQ_BROKER": n.broker}).returncode == 0
    # A broker that does not answer: a clear message and exit 1 within the timeout
    gone = cli("stats", "--broker", "tcp://127.0.0.1:9", "--timeout", "0.5")
    assert gone.returncode == 1 and "no broker answered" in gone.stderr


def test_version_usage_errors_and_tokens():
    assert cli("--version").stdout.startswith("actorq ")
    bad = cli("bogus")
    assert bad.returncode == 2 and "_actor" not in bad.stderr
    out = cli("token", "new", "--name", "ops", "--role", "admin")
    token = out.stdout.split("keep it secret): ")[1].split()[0]
    assert f'sha256 = "{digest(token)}"' in out.stdout and 'role = "admin"' in out.stdout
