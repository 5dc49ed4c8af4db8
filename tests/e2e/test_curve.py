"""CurveZMQ on a real node: keys, allow-lists and roles, and the attacks of issue 23
that need keys to be refused (the others: test_attacks.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from actorq.errors import BrokerUnavailable, RequestRejected
from actorq.testing import ROOT, raw_peer
from actorq.wire import curve
from actorq.wire import protocol as p

F = "tests.apps.faulty"

SECURE_NODE = """
[broker]
bind = "tcp://127.0.0.1:*"
worker_bind = "tcp://127.0.0.1:*"
[http]
bind = "127.0.0.1:0"
[security]
broker_key = "{keys}/broker.key_secret"
client_keys = ["{keys}/clients"]
admin_keys = ["{keys}/admins/ops.key"]
worker_keys = ["{keys}/workers"]
[[pools]]
name = "default"
workers = 1
tasks = ["tests.apps.faulty"]
"""


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """broker, clients/alice and bob (submit), admins/ops, workers/w1, and mallory
    (on no list)."""
    d = tmp_path / "keys"
    curve.generate("broker", d)
    for where, name in (("clients", "alice"), ("clients", "bob"), ("admins", "ops"),
                        ("workers", "w1"), ("", "mallory")):
        curve.generate(name, d / where)
    return d


@pytest.fixture
def secure(node, keys):
    n = node(SECURE_NODE.format(keys=keys))
    n.keys = keys
    return n


def _key(keys: Path, name: str) -> dict:
    found = next(keys.rglob(f"{name}.key_secret"))
    return {"key": str(found), "broker_key": str(keys / "broker.key")}


def test_allowed_keys_work_and_a_node_with_keys_runs_its_own_pools(secure, client):
    alice = client(secure, **_key(secure.keys, "alice"))
    assert alice.submit(f"{F}:add", (2, 2)).result(timeout=10) == 4
    ops = client(secure, **_key(secure.keys, "ops"))
    assert [w.pool for w in ops.workers()] == ["default"]
    import urllib.request

    with urllib.request.urlopen(f"{secure.http}/health", timeout=10) as r:  # the gateway's key
        assert r.status == 200


@pytest.mark.parametrize("who, says", [("mallory", "refused this client's CurveZMQ key"),
                                       ("plaintext", "does the broker want CurveZMQ keys")])
def test_a_client_without_an_allowed_key_is_refused_and_told_why(secure, client, who, says):
    kwargs = _key(secure.keys, who) if who != "plaintext" else {}
    with pytest.raises(BrokerUnavailable, match=says):
        client(secure, connect_timeout=1.5, **kwargs)
    if who == "mallory":
        assert "refused a connection to the clients endpoint from 127.0.0.1" in secure.log()


def _curve_dealer(endpoint: str, keys: Path, name: str, identity: bytes | None = None):
    return raw_peer(endpoint, identity,
                    curve=curve.client_curve(_key(keys, name)["key"], keys / "broker.key"))


def test_a_rogue_worker_with_a_client_key_gets_no_task(secure, client):
    # Given a peer with a client key on the worker endpoint, asking for 1000 leases
    rogue = _curve_dealer(secure.worker_bind, secure.keys, "alice")
    try:
        rogue.send(p.encode(p.Hello(version=p.PROTOCOL_VERSION, role="worker",
                                    queues=["default"], credit=1000, tasks=[f"{F}:add"])))
        alice = client(secure, **_key(secure.keys, "alice"))
        handles = [alice.submit(f"{F}:add", (i, 1)) for i in range(20)]
        # Then every task is run by the real worker, and the rogue heard nothing
        assert alice.gather(handles, timeout=15) == [i + 1 for i in range(20)]
        assert not rogue.poll(300)
        assert "refused a connection to the workers endpoint" in secure.log()
    finally:
        rogue.close()


def test_a_submit_key_acts_only_on_its_own_tasks_and_an_admin_key_on_all(secure, client):
    alice = client(secure, **_key(secure.keys, "alice"))
    bob = client(secure, **_key(secure.keys, "bob"))
    ops = client(secure, **_key(secure.keys, "ops"))
    h = alice.submit(f"{F}:sleep", (0.3,), delay=30)
    assert bob.cancel(h.id) is False
    with pytest.raises(RequestRejected, match="forbidden"):
        bob.dead_letters()
    with pytest.raises(RequestRejected, match="forbidden"):
        bob.pause("default")
    assert alice.status(h.id).state == "scheduled"
    assert ops.cancel(h.id) is True
    # Keys are scoped to their key: bob's "order-42" is not alice's
    first = bob.submit(f"{F}:echo", (1337,), key="order-42")
    mine = alice.submit(f"{F}:add", (2, 2), key="order-42")
    assert mine.id != first.id and mine.result(timeout=10) == 4
    # And alice's second process (the same key pair) finds her task by its key
    again = client(secure, **_key(secure.keys, "alice")).submit(f"{F}:add", (2, 2),
                                                                 key="order-42")
    assert again.id == mine.id


def test_a_connection_under_another_clients_identity_gets_none_of_its_results(secure, client):
    alice = client(secure, **_key(secure.keys, "alice"))
    h = alice.submit(f"{F}:sleep", (1.0,))
    thief = _curve_dealer(secure.broker, secure.keys, "bob", alice._session.identity)
    try:
        thief.send(p.encode(p.Watch([h.id])))
        assert h.result(timeout=10) == 1.0
        got = []
        while thief.poll(300):
            got.append(msgspec.msgpack.decode(thief.recv(), type=p.BrokerToClient))
        assert not any(isinstance(m, p.Outcomes) and any(o.state == "succeeded"
                                                         for o in m.items) for m in got)
    finally:
        thief.close()


def test_the_cli_takes_key_files_from_flags_and_the_environment(secure):
    def cli(*args, env=None):
        return subprocess.run([sys.executable, "-m", "actorq", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})})

    ops = _key(secure.keys, "ops")
    out = cli("stats", "--broker", secure.broker, "--client-key", ops["key"],
              "--broker-key", ops["broker_key"], "--json")
    assert out.returncode == 0, out.stderr
    env = {"ACTORQ_KEY": ops["key"], "ACTORQ_BROKER_KEY": ops["broker_key"]}
    out = cli("workers", "--broker", secure.broker, "--json", env=env)
    assert out.returncode == 0 and '"default"' in out.stdout, out.stderr
    out = cli("stats", "--broker", secure.broker, "--timeout", "1")  # no key: refused
    assert out.returncode == 1 and "want CurveZMQ keys" in out.stderr


def test_a_worker_node_joins_with_a_worker_key(secure, node, client):
    keys = secure.keys
    joining = """
[[pools]]
name = "{name}"
workers = 1
queues = ["{name}"]
tasks = ["tests.apps.faulty"]
broker = "{broker}"
[security]
key = "{key}"
broker_public_key = "{keys}/broker.key"
"""
    node(joining.format(name="joined", broker=secure.worker_bind, keys=keys,
         key=keys / "workers" / "w1.key_secret"))
    ops = client(secure, **_key(keys, "ops"))
    assert ops.submit(f"{F}:add", (1, 2), queue="joined").result(timeout=15) == 3
    assert "refused" not in secure.log()
