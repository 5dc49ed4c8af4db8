"""Workers that die: only what they ran is charged, poison tasks back off, and a worker
gone from the socket waits for its supervisor's word. A fake clock, no sockets."""

from actorq.broker.state import BrokerState
from actorq.broker.state.membership import CRASH_BACKOFF_S, EXIT_REPORT_WAIT_S
from actorq.wire import protocol as p
from tests.broker import fakes
from tests.broker.fakes import C, W1, W2, SUP, turn


def fresh(**kw) -> BrokerState:
    return fakes.fresh(seed=7, **kw)


def hello(credit: int, slots: int = 1) -> p.Hello:
    return p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                   queues=["default"], credit=credit, slots=slots, supervisor=SUP.decode())


def submit(s: BrokerState, n: int, now: float = 0.0) -> None:
    s.on_client(C, p.Submit([p.TaskSpec(f"t{i}", "m:f", b"\x90") for i in range(n)]), now)


def exited(s: BrokerState, worker: bytes, running: list[int] | None, now: float) -> None:
    s.on_worker(SUP, p.WorkerExited(worker=worker.decode(), exit_code=-9, restarted=True,
                                    running=running), now)


def test_a_worker_death_charges_only_the_leases_it_was_running():
    # Given a one-slot worker holding four leases, running the first
    s = fresh()
    s.on_worker(W1, hello(credit=4), 0)
    submit(s, 4)
    leases = turn(s).dispatch[W1]
    # When its supervisor reports it dead, running the first one
    exited(s, W1, [leases[0].token], 0.1)
    # Then the first has an attempt counted and the other three none, and all four wait
    # at the front of the queue in their order
    assert [s.tasks[f"t{i}"].attempts for i in range(4)] == [1, 0, 0, 0]
    assert s.leases_returned_total == 3
    s.on_worker(W2, hello(credit=4), 0.1)
    assert [lease.id for lease in turn(s, 0.1).dispatch[W2]] == ["t0", "t1", "t2", "t3"]


def test_a_task_that_keeps_killing_workers_backs_off_then_is_dead():
    s = fresh(max_deliveries=3)
    s.on_worker(W1, hello(credit=1), 0)
    submit(s, 1)
    lease = turn(s).dispatch[W1][0]
    # A first loss: requeued at once (a worker killed from outside)
    exited(s, W1, [lease.token], 0.0)
    s.on_worker(W2, hello(credit=1), 0.0)
    lease = turn(s, 0.0).dispatch[W2][0]
    assert lease.attempt == 2
    # A second loss: scheduled with a back-off, not queued
    exited(s, W2, [lease.token], 0.0)
    task = s.tasks["t0"]
    assert task.state == "scheduled"
    assert CRASH_BACKOFF_S / 2 <= s.scheduled["t0"] <= CRASH_BACKOFF_S
    # Due again, a third loss: dead, saying why
    fakes.with_scheduler(s, 2.0)
    s.on_worker(fakes.SCHED, p.Due(["t0"]), 2.0)
    s.on_worker(W1, hello(credit=1), 2.0)
    lease = turn(s, 2.0).dispatch[W1][0]
    exited(s, W1, [lease.token], 2.0)
    assert task.state == "dead" and task.error.startswith("WorkerLost: ")


def test_without_a_supervisors_word_what_may_have_run_is_charged():
    # Given a one-slot worker holding five leases that stops answering
    s = fresh()
    s.on_worker(W1, hello(credit=5), 0)
    submit(s, 5)
    turn(s)
    # When its heartbeats lapse (3 s) with nobody saying what it ran
    for t in (1.0, 2.0, 3.0, 4.0):  # the loop wakes every heartbeat
        turn(s, t)
    # Then the leases it could have been running (a plain call and an async one) are
    # charged, and the others are not
    assert W1 not in s.workers
    assert [s.tasks[f"t{i}"].attempts for i in range(5)] == [1, 1, 0, 0, 0]


def test_a_worker_gone_from_the_socket_waits_for_its_supervisor():
    s = fresh()
    s.on_worker(W1, hello(credit=3), 0)
    submit(s, 4)
    leases = turn(s).dispatch[W1]
    # When a send to it fails, it takes no more work but keeps its leases a moment
    s.peer_unreachable(W1, 0.0)
    s.on_worker(W1, p.Report([p.Result(leases[0].id, leases[0].token, True, b"\xc0")]), 0.0)
    assert turn(s, 0.0).dispatch == {} and len(s.workers[W1].leased) == 2
    # Then its supervisor's word, within the wait, says exactly what ran
    exited(s, W1, [leases[1].token], EXIT_REPORT_WAIT_S / 2)
    assert [s.tasks[f"t{i}"].attempts for i in (1, 2)] == [1, 0]


def sup_hello(pool: str = "default", queues=("default",)) -> p.Hello:
    return p.Hello(version=p.PROTOCOL_VERSION, role="supervisor", pool=pool,
                   queues=list(queues), host="h")


def test_supervisors_hear_their_pools_backlog_and_workers_load():
    s = fresh()
    s.on_worker(SUP, sup_hello(), 0)
    s.on_worker(W1, p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                            queues=["default"], credit=1, slots=1, host="h"), 0)
    submit(s, 3)
    turn(s, 0.0)
    out = turn(s, 1.0)
    load = next(m for peer, m in out.to_workers if peer == SUP and isinstance(m, p.PoolLoad))
    assert load.backlog == 2 and load.workers == [p.WorkerLoad("w1", 1, 1, 0.0)]


def test_scale_requests_are_checked_then_passed_to_every_supervisor_of_the_pool():
    s = fresh()
    s.on_worker(SUP, sup_hello(), 0)
    s.on_worker(b"sup2", sup_hello(), 0)
    s.on_worker(SUP, p.PoolReport(2, 2, 2, 2, 0, 0), 0)
    # Bad values and unknown pools change nothing and say why
    for req, pool, low, high, why in [(1, "nope", 1, 2, "no pool 'nope'"),
                                      (2, "default", 5, 3, "min_workers 5 is over max"),
                                      (3, "default", 0, 1, "min_workers 2 is over max")]:
        s.on_client(C, p.Scale(req, pool, low, high), 0)
        (peer, err), = s.take_outbox().to_clients
        assert isinstance(err, p.Error) and err.req == req and why in err.message
    # Good ones go to both supervisors; a bound left out keeps the reported one
    s.on_client(C, p.Scale(4, "default", 0, 6), 0)
    out = s.take_outbox()
    assert out.to_clients == [(C, p.Done(req=4, ok=[True]))]
    assert sorted(out.to_workers) == [(SUP, p.SetBounds(2, 6)), (b"sup2", p.SetBounds(2, 6))]
    # And the pools' reports add up in the stats
    s.on_worker(b"sup2", p.PoolReport(3, 4, 2, 6, 1, 0), 0)
    assert s.stats(0).pools["default"] == p.PoolStats(5, 6, 2, 6, 1, 0, 2)


def test_a_broker_that_was_itself_stalled_does_not_blame_its_workers():
    # Given a worker heard at 0 and a broker whose loop then did not run for 10 s
    s = fresh()
    s.on_worker(W1, hello(credit=1), 0)
    submit(s, 1)
    turn(s, 0.0)
    # When it runs again, before the beats that waited in its socket are read
    turn(s, 10.0)
    # Then the worker keeps its lease: the gap was the broker's own
    assert W1 in s.workers and s.tasks["t0"].state == "running"
    # But a worker that stays silent afterwards is still found out
    for t in (11.0, 12.0, 13.0, 14.0, 14.5):
        turn(s, t)
    assert W1 not in s.workers and s.tasks["t0"].state == "queued"



def test_only_a_workers_own_supervisor_can_report_its_exit():
    # Given a worker running a task, and a second supervisor that did not start it
    s = fakes.fresh()
    s.on_worker(SUP, sup_hello(), 0)
    s.on_worker(b"rogue", sup_hello(), 0)
    s.on_worker(W1, hello(credit=1), 0)
    submit(s, 1)
    lease = turn(s).dispatch[W1][0]
    # When the rogue says it exited, nothing happens to its lease
    s.on_worker(b"rogue", p.WorkerExited(worker="w1", exit_code=-9, running=[lease.token]), 0.1)
    turn(s, 0.1)
    assert s.tasks["t0"].state == "running" and W1 in s.workers
    assert s.worker_restarts.get("default", 0) == 0 and s.bad_frames_total == 1
    # And its own supervisor's word is taken
    exited(s, W1, [lease.token], 0.2)
    assert s.tasks["t0"].state == "queued" and W1 not in s.workers


def test_only_the_scheduler_the_node_started_is_the_scheduler():
    s = fakes.fresh(scheduler_secret="s3cret")
    s.on_client(C, p.Submit([p.TaskSpec("t0", "m:f", b"", opts=p.Options(not_before=100.0))]), 0)
    s.on_worker(b"rogue", p.Hello(version=p.PROTOCOL_VERSION, role="scheduler"), 0)
    out = turn(s)
    assert s.scheduler is None
    assert [m.code for _, m in out.to_workers] == ["bad_role"]
    # What it says is due stays scheduled
    s.on_worker(b"rogue", p.Due(["t0"]), 0.1)
    assert s.tasks["t0"].state == "scheduled"
    s.on_worker(fakes.SCHED, p.Hello(version=p.PROTOCOL_VERSION, role="scheduler",
                                     secret="s3cret"), 0.2)
    assert s.scheduler == fakes.SCHED


def test_a_worker_cannot_rate_limit_a_task_it_does_not_register():
    s = fakes.fresh()
    s.on_worker(W1, p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                            queues=["default"], credit=1, tasks=["m:mine"],
                            rate_limits={"m:mine": 5.0, "victim:task": 0.001}), 0)
    assert set(s.limits) == {"m:mine"}
