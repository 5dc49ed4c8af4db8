"""The node as an operator sees it: start, stop, observe, join, misconfigure."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from actorq import SubmitRejected, TaskFailed
from actorq.testing import http_get
from tests.conftest import ROOT, session_pids, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stop_signal_drains_running_tasks_exits_0_and_leaves_no_process(node, client, signum):
    # Given a node with a task in the middle of a 1.5 s run
    n = node(grace=10)
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (1.5,))
    wait_until(lambda: c.status(h.id).state == "running", 10)
    # When the node's process group gets SIGTERM (a service manager) or SIGINT (Ctrl-C
    # in a terminal, which reaches the whole foreground group)
    code = n.terminate(timeout_s=30, signum=signum)
    # Then the running task finished and its result reached the client
    assert h.result(timeout=1) == 1.5
    # and the node exited 0 with no child process left behind
    assert code == 0, n.log()
    assert session_pids(n.sid) == []
    assert "node stopped" in n.log()


def test_draining_node_refuses_new_work_clearly(node, client):
    # Given a node busy with a task, being stopped
    n = node(grace=10)
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (1.5,))
    wait_until(lambda: c.status(h.id).state == "running", 10)
    import os
    import signal

    os.killpg(n.sid, signal.SIGTERM)
    # When a client submits while it drains
    wait_until(lambda: c.stats().draining, 10)
    late = c.submit("tests.apps.faulty:add", (1, 1))
    # Then that submission is refused with a clear code, and the running task finishes
    with pytest.raises(SubmitRejected) as err:
        late.result(timeout=10)
    assert err.value.code == "draining"
    assert h.result(timeout=10) == 1.5


def test_grace_period_bounds_the_drain(node, client):
    # Given a task that would run far longer than the 0.5 s grace period
    n = node(grace=0.5)
    c = client(n)
    h = c.submit("tests.apps.faulty:sleep", (60,))
    wait_until(lambda: c.status(h.id).state == "running", 10)
    # When the node is stopped, it kills the overrunning worker and still exits 0, promptly
    code = n.terminate(timeout_s=20)
    assert code == 0, n.log()
    assert "still running after 0.5 s grace; killing it" in n.log()
    assert session_pids(n.sid) == []


def test_worker_only_node_joins_another_nodes_broker(node, client):
    # Given a node whose own pool serves only "default"
    main = node()
    # When a worker-only node with a pool for queue "remote" joins its broker
    node(config_text=f"""
        [[pools]]
        name = "joined"
        workers = 1
        queues = ["remote"]
        tasks = ["tests.apps.faulty"]
        broker = "{main.worker_bind}"
    """)
    c = client(main)
    # Then work on "remote" runs on the joined node's worker
    h = c.submit("tests.apps.faulty:add", (40, 2), queue="remote")
    assert h.result(timeout=15) == 42
    assert c.status(h.id).worker.startswith("joined.")
    assert c.stats().workers_alive == {"default": 2, "joined": 1}


def test_health_and_metrics(node, client):
    # Given a node that has run a few tasks, one failing, with one worker restarted
    n = node()
    c = client(n)
    c.gather(c.submit_many([("tests.apps.faulty:add", (i, i)) for i in range(10)]), timeout=20)
    with pytest.raises(TaskFailed):
        c.submit("tests.apps.faulty:boom", ("x",)).result(timeout=10)
    c.submit("tests.apps.faulty:echo", (1,), queue="nobody-serves-this")
    # submit() returns before the broker has the task, and the gateway asks the broker
    # over another connection: wait for the acknowledgement, or the scrape can overtake it
    c.flush(timeout=10)
    # When /health and /metrics are fetched
    status, body = http_get(n.http + "/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok"
    pool = health["pools"]["default"]
    assert {k: pool[k] for k in ("workers_alive", "workers_expected", "supervisor")} == {
        "workers_alive": 2, "workers_expected": 2, "supervisor": "up"}
    assert health["unserved_queues"] == ["nobody-serves-this"]
    status, text = http_get(n.http + "/metrics")
    assert status == 200
    # Then the required families are there with the right values
    for line in [
        "actorq_broker_up 1.0",
        "actorq_tasks_submitted_total 12.0",
        'actorq_tasks_finished_total{state="succeeded"} 10.0',
        'actorq_tasks_finished_total{state="dead"} 1.0',
        'actorq_queue_depth{queue="nobody-serves-this"} 1.0',
        'actorq_queue_unserved{queue="nobody-serves-this"} 1.0',
        "actorq_bad_frames_total 0.0",  # counters are there at 0
        'actorq_tasks_finished_total{state="cancelled"} 0.0',  # there from the start
        'actorq_worker_restarts_total{pool="default"} 0.0',
        'actorq_workers_busy{pool="default"} 0.0',
        'actorq_task_runs_total{outcome="succeeded",task="tests.apps.faulty:add"} 10.0',
        'actorq_task_runs_total{outcome="failed",task="tests.apps.faulty:boom"} 1.0',
        "actorq_task_queue_wait_seconds_count 11.0",
        'actorq_workers_alive{pool="default"} 2.0',
        "actorq_task_duration_seconds_count 11.0",
        'actorq_task_duration_seconds_bucket{le="+Inf"} 11.0',
    ]:
        assert line in text.splitlines(), f"{line!r} missing from /metrics:\n{text}"
    assert "# TYPE actorq_worker_restarts_total counter" in text
    # Leases handed back depend on timing (an idle worker may steal from a busy one),
    # so only their presence is certain
    assert re.search(r"^actorq_leases_returned_total \d", text, re.M), text
    rss = next(line for line in text.splitlines()
               if line.startswith("actorq_broker_resident_memory_bytes "))
    assert float(rss.split()[1]) > 10e6
    assert 'actorq_queue_oldest_seconds{queue="nobody-serves-this"}' in text


def test_health_is_503_while_a_pool_is_short_of_workers_and_recovers(node, client):
    import os
    import signal

    # Given a healthy node with fast heartbeats
    n = node(heartbeat=0.2)
    assert http_get(n.http + "/health")[0] == 200
    # When one worker hangs (stops heartbeating)
    hung = n.worker_pids()[0]
    os.kill(hung, signal.SIGSTOP)
    try:
        # Then /health says the pool is degraded
        def degraded():
            status, body = http_get(n.http + "/health")
            return status == 503 and json.loads(body)

        health = wait_until(lambda: (h := degraded()) and
                            h["pools"]["default"]["workers_alive"] == 1 and h, 10)
        assert health["status"] == "degraded"
        assert health["pools"]["default"]["supervisor"] == "up"
    finally:
        os.kill(hung, signal.SIGCONT)
    # and once the worker is back, healthy again
    wait_until(lambda: http_get(n.http + "/health")[0] == 200, 10)


def test_pool_past_its_restart_intensity_fails_loudly_then_tries_again(node, client,
                                                                        tmp_path):
    # Given a running node
    main = node()
    c = client(main)
    # When a worker-only node joins with a pool whose task module cannot be imported
    cfg = tmp_path / "broken.toml"
    cfg.write_text(f"""
[[pools]]
name = "broken"
workers = 1
tasks = ["tests.apps.broken_import"]
max_restarts = 2
restart_window = 60
broker = "{main.worker_bind}"
""")
    log_path = tmp_path / "broken.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "actorq", "run", str(cfg)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        # Then its workers are restarted twice and the pool is reported failed, saying why
        wait_until(lambda: "pool broken FAILED" in log_path.read_text(), 30)
        text = log_path.read_text()
        assert "tests.apps.broken_import cannot be imported, on purpose" in text
        assert "more than 2 restarts in 60 s" in text
        # (the supervisor logs before it tells the broker: the word arrives a moment later)
        wait_until(lambda: c.stats().supervisors.get("broken") == "failed", 5)
        # And after its back-off it tries again (and fails again), instead of staying down
        wait_until(lambda: "pool broken: trying again" in log_path.read_text(), 30)
        wait_until(lambda: log_path.read_text().count("pool broken FAILED") == 2, 30)
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    assert not session_pids(proc.pid)


@pytest.mark.parametrize("text, key", [
    ('[broker]\nbind = "tcp://127.0.0.1:*"\nwroker_bind = "x"\n', "broker.wroker_bind"),
    ('[[pools]]\nname = "p"\nworkers = "many"\ntasks = ["m"]\nbroker = "tcp://h:1"\n',
     "pools[0].workers"),
])
def test_bad_config_exits_2_naming_the_file_and_key(tmp_path, text, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "actorq", "run", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and key in proc.stderr


def test_port_in_use_fails_start_with_a_clear_message(node, tmp_path):
    # Given a node holding its ports
    main = node()
    # When a second node is configured onto the same broker port
    cfg = tmp_path / "clash.toml"
    cfg.write_text(f"""
[broker]
bind = "{main.broker}"
worker_bind = "tcp://127.0.0.1:*"
""")
    proc = subprocess.run([sys.executable, "-m", "actorq", "run", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, start_new_session=True)
    # Then it exits non-zero naming the endpoint, and the first node is unaffected
    assert proc.returncode == 1
    assert "cannot bind" in proc.stderr and main.broker in proc.stderr
    assert http_get(main.http + "/health")[0] == 200


def test_a_users_own_task_module_from_the_working_directory(node, client, tmp_path):
    # Given a user's project directory holding their own task module
    project = tmp_path / "project"
    project.mkdir()
    (project / "mytasks.py").write_text(
        "from actorq import task\n\n@task\ndef shout(s):\n    return s.upper() + '!'\n")
    # When a node is started from that directory with the module in its pool
    n = node(cwd=project, config_text="""
        [broker]
        bind = "tcp://127.0.0.1:*"
        worker_bind = "tcp://127.0.0.1:*"
        [[pools]]
        name = "mine"
        workers = 1
        tasks = ["mytasks"]
    """)
    # Then its tasks run
    assert client(n).submit("mytasks:shout", ("hi",)).result(timeout=10) == "HI!"


def test_worker_only_node_started_before_its_broker_joins_when_it_comes_up(node, client,
                                                                          tmp_path):
    import textwrap
    import threading

    from tests.conftest import Node

    # Given the endpoints of a broker that is not running (a node started and stopped)
    first = node()
    client_ep, worker_ep = first.broker, first.worker_bind
    first.terminate()
    # When a worker-only node is started pointing at it
    started: dict = {}

    def start_workers():
        started["node"] = Node(textwrap.dedent(f"""
            [node]
            startup_timeout = 0.5
            [[pools]]
            name = "early"
            workers = 1
            tasks = ["tests.apps.faulty"]
            broker = "{worker_ep}"
        """), tmp_path, "early")

    t = threading.Thread(target=start_workers)
    t.start()
    try:
        # and its broker comes up only after the node's 0.5 s start-up bound has passed
        # (the bound applies to nodes with a broker of their own, not to this one)
        wait_until(lambda: list(tmp_path.glob("early/node.log")), 10)
        began = time.monotonic()
        wait_until(lambda: time.monotonic() - began > 1.5, 5)  # the point is to be late
        assert "node" not in started
        broker = node(config_text=f"""
            [broker]
            bind = "{client_ep}"
            worker_bind = "{worker_ep}"
        """)
        # Then the workers join and run its tasks
        t.join(30)
        assert "node" in started, "the worker-only node never became ready"
        assert client(broker).submit("tests.apps.faulty:add", (1, 2)).result(timeout=15) == 3
    finally:
        t.join(30)
        if "node" in started:
            assert started["node"].cleanup() == []


def test_health_says_unavailable_while_the_broker_does_not_answer(node):
    import os
    import signal

    # Given a healthy node
    n = node()
    assert http_get(n.http + "/health")[0] == 200
    broker = n.actor_pid("broker")
    # When its broker stops answering (hung, not dead: the node does not restart it)
    os.kill(broker, signal.SIGSTOP)
    try:
        # Then /health answers 503 "unavailable" (after its 2 s stats timeout), not hangs
        status, body = http_get(n.http + "/health")
        assert status == 503
        assert json.loads(body)["status"] == "unavailable"
        status, text = http_get(n.http + "/metrics")
        assert status == 200 and "actorq_broker_up 0.0" in text.splitlines()
    finally:
        os.kill(broker, signal.SIGCONT)
    # and once it answers again, healthy
    wait_until(lambda: http_get(n.http + "/health")[0] == 200, 10)


def test_check_imports_each_task_module_and_names_the_one_that_fails(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text('[[pools]]\nname = "p"\ntasks = ["actorq.demo", "tests.apps.broken_import"]\n'
                   'broker = "tcp://127.0.0.1:9"\n')
    out = subprocess.run([sys.executable, "-m", "actorq", "check", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "pools[0].tasks[1]: module 'tests.apps.broken_import' fails to import" in out.stderr
    assert "ImportError: tests.apps.broken_import cannot be imported, on purpose" in out.stderr
