"""The task lifecycle in BrokerState (retries, schedule, dependencies, keys, expiry,
rate limits, cron), driven with a fake clock and no sockets. wall_offset is 0, so
monotonic and unix seconds are the same numbers here."""

from actorq.broker.state import BrokerState
from actorq.wire import protocol as p
from tests.broker import fakes
from tests.broker.fakes import C, W1, SUP, SCHED, turn, with_scheduler


def fresh(**kw) -> BrokerState:
    return fakes.fresh(seed=1, **kw)


def spec(i, name="m:f", **opts):
    return p.TaskSpec(f"t{i}", name, b"\x92\x90\x80", "default", 0,
                      p.Options(**opts) if opts else None)


def hello(credit=1, **kw):
    return p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                   queues=["default"], credit=credit, **kw)


def fail(lease, retry=True):
    return p.Report([p.Result(lease.id, lease.token, False, error="E: no", retry=retry)])


def ok(lease, value=b"\x01"):
    return p.Report([p.Result(lease.id, lease.token, True, value)])


def test_retries_back_off_through_the_scheduler_then_dead_then_requeue():
    s = fresh()
    with_scheduler(s)
    s.on_worker(W1, hello(), 0)
    s.on_client(C, p.Submit([spec(0, retries=1, backoff=2.0)]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, fail(lease), 1.0)
    out = turn(s, 1.0)
    task = s.tasks["t0"]
    assert task.state == "scheduled" and task.error == "E: no"
    (peer, sched), = [m for m in out.to_workers if isinstance(m[1], p.Schedule)]
    due = sched.items[0].due
    assert peer == SCHED and 1.0 + 1.0 <= due <= 1.0 + 2.0  # equal jitter of 2 s
    assert not out.outcomes  # the client keeps waiting
    s.on_worker(SCHED, p.Due(["t0"]), due)
    lease2 = turn(s, due).dispatch[W1][0]
    assert lease2.attempt == 2
    s.on_worker(W1, fail(lease2), due + 0.1)
    out = turn(s, due + 0.1)
    assert task.state == "dead" and out.outcomes[C][0].state == "dead"
    s.on_client(C, p.DeadLetters(3), 5)
    assert [i.id for i in s.take_outbox().to_clients[0][1].items] == ["t0"]
    s.on_client(C, p.Requeue(4, ["t0", "nope"]), 5)
    assert s.take_outbox().to_clients == [(C, p.Done(4, [True, False]))]
    lease3 = turn(s, 5).dispatch[W1][0]
    assert lease3.attempt == 3 and not s.dead
    s.on_worker(W1, fail(lease3), 6)  # a fresh budget: one retry again
    assert task.state == "scheduled"


def test_an_exception_outside_retry_on_is_not_retried():
    s = fresh()
    s.on_worker(W1, hello(), 0)
    s.on_client(C, p.Submit([spec(0, retries=5, retry_on=["KeyError"])]), 0)
    lease = turn(s).dispatch[W1][0]
    assert lease.retry_on == ["KeyError"]
    s.on_worker(W1, fail(lease, retry=False), 1)
    assert s.tasks["t0"].state == "dead" and s.tasks["t0"].attempts == 1


def test_a_delayed_task_waits_for_the_scheduler_which_gets_everything_on_hello():
    s = fresh()
    s.on_worker(W1, hello(), 0)
    s.on_client(C, p.Submit([spec(0, not_before=10.0)]), 0)
    out = turn(s)
    assert s.tasks["t0"].state == "scheduled" and not out.dispatch
    # No scheduler yet: it learns of the task when it says hello.
    out = with_scheduler(s, 1)
    sched = [m for _, m in out.to_workers if isinstance(m, p.Schedule)]
    assert sched == [p.Schedule([p.Timer("t0", 10.0)], reset=True)]
    s.on_worker(SCHED, p.Due(["t0"]), 3.0)  # a stale timer, far too early: ignored
    assert s.tasks["t0"].state == "scheduled"
    s.on_worker(SCHED, p.Due(["t0"]), 10.0)
    s.on_worker(W1, p.Heartbeat(), 10.0)
    assert turn(s, 10.0).dispatch[W1][0].id == "t0"


def test_dependencies_release_pipe_and_cascade_cancellation():
    s = fresh()
    s.on_client(C, p.Submit([spec(0), spec(1, depends_on=["t0"], pipe=True),
                             spec(2, depends_on=["t1"]), spec(3, depends_on=["nope"])]), 0)
    out = s.take_outbox()
    assert out.accepted[C] == ["t0", "t1", "t2"]
    assert out.rejected[C][0].id == "t3" and "nope" in out.rejected[C][0].message
    assert s.tasks["t1"].state == "pending" and s.tasks["t2"].state == "pending"
    s.on_worker(W1, hello(), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, ok(lease, b"\x07"), 1)
    lease1 = turn(s, 1).dispatch[W1][0]
    assert lease1.id == "t1" and lease1.prev == b"\x07"  # the chain's previous result
    s.on_worker(W1, fail(lease1), 2)
    out = turn(s, 2)
    assert s.tasks["t1"].state == "dead"
    assert s.tasks["t2"].state == "cancelled" and "DependencyFailed" in s.tasks["t2"].error
    assert [o.state for o in out.outcomes[C]] == ["dead", "cancelled"]
    # Depending on a task that already ended badly cancels at once.
    s.on_client(C, p.Submit([spec(4, depends_on=["t1"])]), 3)
    assert s.tasks["t4"].state == "cancelled"


def test_a_long_chain_cancels_without_recursion():
    s = fresh()
    n = 5000
    specs = [spec(0)] + [spec(i, depends_on=[f"t{i-1}"]) for i in range(1, n)]
    s.on_client(C, p.Submit(specs), 0)
    s.on_client(C, p.Cancel(1, ["t0"]), 0)
    assert s.tasks[f"t{n-1}"].state == "cancelled"


def test_idempotency_key_returns_the_first_task_to_its_submitter():
    s = fresh()
    s.on_client(C, p.Submit([spec(0, key="k")]), 0)
    s.on_client(C, p.Submit([spec(1, key="k")]), 0)
    out = s.take_outbox()
    assert out.accepted[C] == ["t0", "t1"] and out.aliases[C] == {"t1": "t0"}
    assert "t1" not in s.tasks and s.tasks["t0"].watchers == C


def test_ignore_result_keeps_nothing_after_success():
    s = fresh()
    s.on_worker(W1, hello(), 0)
    s.on_client(C, p.Submit([spec(0, ignore_result=True, key="k")]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, ok(lease), 1)
    out = s.take_outbox()
    assert out.outcomes[C] == [p.Outcome("t0", "succeeded")]
    assert "t0" not in s.tasks and not s.keys


def test_expiry_before_start_and_at_submit():
    s = fresh()
    s.on_client(C, p.Submit([spec(0, expires_at=5.0), spec(1, expires_at=-1.0)]), 0)
    assert s.tasks["t1"].state == "expired"
    turn(s, 0.0)
    assert s.next_deadline() == 1.0  # the heartbeat comes first
    turn(s, 5.0)
    assert s.tasks["t0"].state == "expired" and s.queued == 0


def test_rate_limit_spaces_dispatches_and_lets_other_tasks_pass():
    s = fresh()
    s.on_worker(W1, hello(credit=100, rate_limits={"m:slow": 10.0}, tasks=["m:slow"]), 0)
    s.on_client(C, p.Submit([spec(i, "m:slow") for i in range(3)] + [spec(9)]), 0)
    out = turn(s, 0.0)
    assert [le.id for le in out.dispatch[W1]] == ["t0", "t9"]
    assert s.queued == 2 and abs(s.next_deadline() - 0.1) < 1e-9
    assert not turn(s, 0.05).dispatch
    assert [le.id for le in turn(s, 0.1).dispatch[W1]] == ["t1"]
    assert [le.id for le in turn(s, 0.2).dispatch[W1]] == ["t2"]


def test_stuck_worker_is_killed_by_its_supervisor():
    s = fresh(kill_grace_s=0.5)
    s.on_worker(SUP, p.Hello(version=1, role="supervisor", pool="default", host="h"), 0)
    s.on_worker(W1, hello(host="h"), 0)
    s.take_outbox()
    s.on_worker(W1, p.Stuck("overran"), 0)
    assert s.take_outbox().to_workers == [(SUP, p.Kill("w1", "overran", 0.5))]
    assert W1 not in s.ready


def test_progress_shows_in_status_while_running():
    s = fresh()
    s.on_worker(W1, hello(), 0)
    s.on_client(C, p.Submit([spec(0)]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, p.Report([], progress=[p.Progress("t0", lease.token, 0.5, {"n": 1})]), 1)
    s.on_client(C, p.Query(1, ["t0"]), 1)
    info = s.take_outbox().to_clients[0][1].items[0]
    assert info.progress == 0.5 and info.progress_info == {"n": 1}


def test_cron_fires_each_due_time_once():
    entry = p.CronEntry("tick", "* * * * * *", "m:f", b"\x92\x90\x80")
    s = fresh(crons=[entry])
    out = with_scheduler(s)
    assert [m for _, m in out.to_workers if isinstance(m, p.Crons)][0].entries[0].name == "tick"
    s.on_worker(SCHED, p.Fire([p.Firing("tick", 2.0)]), 2.0)
    s.on_worker(SCHED, p.Fire([p.Firing("tick", 2.0), p.Firing("tick", 1.0)]), 2.1)
    s.on_worker(SCHED, p.Fire([p.Firing("nope", 3.0)]), 3.0)
    assert s.queued == 1 and s.cron_fired_total == 1
    assert s.crons["tick"].last_fired == 2.0
    s.on_client(C, p.AddCron(5, p.CronEntry("bad", "61 * * * *", "m:f", b"")), 3)
    (peer, err), = s.take_outbox().to_clients
    assert isinstance(err, p.Error) and err.code == "bad_option" and err.req == 5
