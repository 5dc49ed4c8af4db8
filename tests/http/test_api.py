"""The REST API against a real node: every route, bad input on each, tokens, and a
property-based run of the OpenAPI document (schemathesis) that finds no 5xx and no
response off its schema."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from actorq.http.auth import digest
from actorq.http.openapi import document, markdown
from actorq.testing import ROOT, NodeProcess, wait_until
from tests.http.nodes import NODE

pytestmark = pytest.mark.timeout(180)

READ, ADMIN = "read-token-for-tests", "admin-token-for-tests"
TOKENS = f"""
[[http.tokens]]
name = "viewer"
role = "read"
sha256 = "{digest(READ)}"
[[http.tokens]]
name = "ops"
role = "admin"
sha256 = "{digest(ADMIN)}"
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    node = NodeProcess(NODE.format(tokens=""), tmp_path_factory.mktemp("api"), "node")
    yield node
    assert not node.cleanup()


def call(node, method: str, path: str, body=None, token: str | None = None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(node.http + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_tasks_submitted_listed_inspected_cancelled_and_requeued(api):
    status, made = call(api, "POST", "/api/tasks", {"task": "actorq.demo:add", "args": [2, 3]})
    assert status == 201 and made["state"] in ("queued", "running", "succeeded")
    wait_until(lambda: call(api, "GET", f"/api/tasks/{made['id']}")[1]["state"] == "succeeded",
               10)
    status, full = call(api, "GET", f"/api/tasks/{made['id']}")
    # (a task that succeeded keeps its result; its arguments are dropped to keep it small)
    assert (full["result"], full["history"][0]["outcome"]) == (5, "succeeded")
    # bytes a JSON body cannot carry come back tagged, never dropped
    status, odd = call(api, "POST", "/api/tasks", {"task": "tests.apps.faulty:big_result",
                                                   "args": [4]})
    wait_until(lambda: call(api, "GET", f"/api/tasks/{odd['id']}")[1]["state"] == "succeeded",
               10)
    assert call(api, "GET", f"/api/tasks/{odd['id']}")[1]["result"] == {"$base64": "xAR4eHh4"}
    # listing, with status= as an alias of state=, pages through with a cursor
    for _ in range(5):
        call(api, "POST", "/api/tasks", {"task": "actorq.demo:noop"})
    status, page = call(api, "GET", "/api/tasks?status=succeeded&limit=2")
    assert status == 200 and len(page["tasks"]) == 2 and page["next_cursor"]
    # cancel a running task; a second cancel is a conflict naming the state
    _, slow = call(api, "POST", "/api/tasks", {"task": "actorq.demo:async_sleep", "args": [30]})
    wait_until(lambda: call(api, "GET", f"/api/tasks/{slow['id']}")[1]["state"] == "running", 10)
    assert call(api, "DELETE", f"/api/tasks/{slow['id']}")[0] == 200
    status, err = call(api, "DELETE", f"/api/tasks/{slow['id']}")
    assert status == 409 and "cancelled" in err["error"]["message"]
    # a dead task is requeued, one or by filter
    _, dead = call(api, "POST", "/api/tasks", {"task": "actorq.demo:fail", "args": ["why"]})
    wait_until(lambda: call(api, "GET", "/api/dead")[1]["tasks"], 10)
    full = call(api, "GET", f"/api/tasks/{dead['id']}")[1]
    assert full["args"] == ["why"] and "RuntimeError: why" in full["traceback"]
    assert call(api, "POST", f"/api/tasks/{dead['id']}/requeue")[0] == 200
    wait_until(lambda: call(api, "GET", "/api/dead")[1]["tasks"], 10)
    assert call(api, "POST", "/api/dead/requeue", {"name": "actorq.demo:fail"})[1] == {
        "requeued": 1}


def test_workers_pools_queues_crons_and_stats(api):
    assert len(call(api, "GET", "/api/workers")[1]["workers"]) == 2
    (pool,) = call(api, "GET", "/api/pools")[1]["pools"]
    assert pool["name"] == "default" and pool["workers"] == 2
    assert call(api, "POST", "/api/pools/default/scale", {"min_workers": 2,
                                                           "max_workers": 3})[0] == 200
    assert call(api, "POST", "/api/pools/nope/scale", {"min_workers": 1})[0] == 404
    assert call(api, "POST", "/api/queues/held/pause")[1]["changed"] is True
    for _ in range(3):
        call(api, "POST", "/api/tasks", {"task": "actorq.demo:noop", "queue": "held"})
    (held,) = [q for q in call(api, "GET", "/api/queues")[1]["queues"] if q["name"] == "held"]
    assert held["paused"] and held["depth"] == 3
    assert call(api, "DELETE", "/api/queues/held/tasks")[1]["purged"] == 3
    assert call(api, "POST", "/api/queues/held/resume")[1]["changed"] is True
    assert call(api, "POST", "/api/crons", {"name": "nightly", "schedule": "0 3 * * *",
                                            "task": "actorq.demo:add", "args": [1, 2]})[0] == 201
    (entry,) = call(api, "GET", "/api/crons")[1]["crons"]
    assert entry["args"] == [1, 2] and entry["last_fired"] is None and entry["next_run"] > 0
    assert call(api, "POST", "/api/crons/nightly/run")[0] == 200
    assert call(api, "DELETE", "/api/crons/nightly")[0] == 200
    assert call(api, "DELETE", "/api/crons/nightly")[0] == 404
    status, stats = call(api, "GET", "/api/stats")
    assert status == 200 and stats["submitted_total"] > 0 and "rates" in stats


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/api/tasks", b"{not json", "body"),
    ("POST", "/api/tasks", [1, 2], "body"),
    ("POST", "/api/tasks", {"args": []}, "task"),
    ("POST", "/api/tasks", {"task": "m:f", "args": {}}, "args"),
    ("POST", "/api/tasks", {"task": "m:f", "priority": 300}, "priority"),
    ("POST", "/api/tasks", {"task": "m:f", "colour": "red"}, "colour"),
    ("POST", "/api/tasks", {"task": "m:f", "eta": "soon"}, "eta"),
    ("GET", "/api/tasks?limit=many", None, "limit"),
    ("GET", "/api/tasks?state=bogus", None, "state"),
    ("GET", "/api/tasks?cursor=dead:1", None, "cursor"),
    ("POST", "/api/pools/default/scale", {"min_workers": 0}, "min_workers"),
    ("POST", "/api/crons", {"name": "x", "schedule": "nope", "task": "m:f"}, None),
])
def test_bad_input_gets_a_400_naming_the_field(api, method, path, body, field):
    status, err = call(api, method, path, body)
    assert status == 400, err
    assert err["error"]["field"] == field and err["error"]["message"]


def test_unknown_ids_are_404_and_oversized_payloads_413(api):
    assert call(api, "GET", "/api/tasks/nope")[0] == 404
    assert call(api, "DELETE", "/api/tasks/nope")[0] == 404
    status, err = call(api, "POST", "/api/tasks", {"task": "m:f", "args": ["x" * 11_000_000]})
    assert status == 413, err


def test_tokens_give_401_without_one_and_403_for_a_read_token_that_changes(tmp_path):
    node = NodeProcess(NODE.format(tokens=TOKENS), tmp_path, "tokens")
    try:
        assert call(node, "GET", "/api/stats")[0] == 401
        assert call(node, "GET", "/api/stats", token="wrong")[0] == 401
        assert call(node, "GET", "/api/stats", token=READ)[0] == 200
        body = {"task": "actorq.demo:noop"}
        assert call(node, "POST", "/api/tasks", body, token=READ)[0] == 403
        assert call(node, "POST", "/api/tasks", body, token=ADMIN)[0] == 201
        with urllib.request.urlopen(node.http + "/health", timeout=10) as r:
            assert r.status == 200  # probes stay open
    finally:
        assert not node.cleanup()


def test_a_gateway_beyond_loopback_without_tokens_refuses_to_start(tmp_path):
    cfg = tmp_path / "open.toml"
    cfg.write_text(NODE.format(tokens="").replace('bind = "127.0.0.1:0"', 'bind = "0.0.0.0:0"'))
    out = subprocess.run([sys.executable, "-m", "actorq", "check", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "http.bind" in out.stderr and "allow_anonymous" in out.stderr
    cfg.write_text(cfg.read_text().replace("[http]", "[http]\nallow_anonymous = true"))
    # Beyond loopback it also needs TLS (docs/security.md), or the explicit override
    out = subprocess.run([sys.executable, "-m", "actorq", "check", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "without TLS" in out.stderr
    cfg.write_text(cfg.read_text() + "\n[security]\nallow_insecure = true\n")
    ok = subprocess.run([sys.executable, "-m", "actorq", "check", str(cfg)], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_the_api_reference_is_generated_from_the_openapi_document():
    assert (ROOT / "docs" / "api.md").read_text() == markdown()
    served = {(m.upper(), p) for p, item in document()["paths"].items() for m in item
              if m != "parameters"}
    assert ("POST", "/api/tasks") in served and len(served) == 21


# The event stream never ends: it is read by test_events.py, not generated requests.
schema = schemathesis.openapi.from_dict(document()).exclude(path="/api/events")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_5xx_or_a_response_off_the_schema(case, api):
    # What is promised: no server error, and every response (status, content type,
    # body) as the document says. (Whether a value the schema allows is accepted is
    # the business of the 400 tests above: the schema cannot say every rule.)
    case.call_and_validate(base_url=api.http, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance, allow_header_conformance])
