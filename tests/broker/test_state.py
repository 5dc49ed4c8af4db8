"""BrokerState rules, driven with a fake clock and no sockets."""

import msgspec

from actorq.wire import protocol as p
from tests.broker.fakes import C, W1, W2, SUP, fresh, turn


def spec(i, queue="default", priority=0, payload=b"\x92\x90\x80"):
    return p.TaskSpec(f"t{i}", "m:f", payload, queue, priority)


def worker_hello(credit=1, queues=("default",), pool="default"):
    return p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool=pool, queues=list(queues),
                   credit=credit, supervisor=SUP.decode())


def ok(lease: p.Lease, value=b"\x01") -> p.Result:
    return p.Result(lease.id, lease.token, True, value)


def test_submit_acks_queues_and_dispatches_within_credit():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=2), 0)
    s.on_client(C, p.Submit([spec(i) for i in range(5)]), 0)
    out = turn(s)
    assert out.accepted[C] == [f"t{i}" for i in range(5)]
    assert [lease.id for lease in out.dispatch[W1]] == ["t0", "t1"]  # credit 2, FIFO
    assert s.depth["default"] == 3 and s.queued == 3
    assert s.tasks["t0"].state == "running" and s.tasks["t0"].attempts == 1


def test_results_return_credit_and_push_outcomes_to_the_submitter():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0), spec(1)]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, p.Report([ok(lease)]), 0.1)
    out = turn(s, 0.1)
    assert out.outcomes[C] == [p.Outcome("t0", "succeeded", b"\x01")]
    assert [x.id for x in out.dispatch[W1]] == ["t1"]
    assert s.tasks["t0"].payload == b""  # finished tasks drop their arguments


def test_priority_beats_order_and_fifo_holds_within_priority():
    s = fresh()
    s.on_client(C, p.Submit([spec(0), spec(1), spec(2, priority=9), spec(3, priority=9)]), 0)
    s.on_worker(W1, worker_hello(credit=4), 0)
    assert [x.id for x in turn(s).dispatch[W1]] == ["t2", "t3", "t0", "t1"]


def test_workers_take_only_their_queues_and_other_queues_wait():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=5, queues=["reports"]), 0)
    s.on_client(C, p.Submit([spec(0, queue="default"), spec(1, queue="reports")]), 0)
    out = turn(s)
    assert [x.id for x in out.dispatch[W1]] == ["t1"]
    assert s.depth == {"default": 1, "reports": 0}


def test_dispatch_round_robins_between_workers():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_worker(W2, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0), spec(1)]), 0)
    out = turn(s)
    assert {k: [x.id for x in v] for k, v in out.dispatch.items()} == {W1: ["t0"], W2: ["t1"]}


def test_a_few_tasks_spread_over_idle_workers_before_one_takes_more():
    # Given two idle workers that may each hold 3 leases
    s = fresh()
    s.on_worker(W1, worker_hello(credit=3), 0)
    s.on_worker(W2, worker_hello(credit=3), 0)
    # When two tasks arrive, then five more
    s.on_client(C, p.Submit([spec(0), spec(1)]), 0)
    first = turn(s).dispatch
    s.on_client(C, p.Submit([spec(i) for i in range(2, 7)]), 0)
    second = turn(s).dispatch
    # Then the two went one to each worker, not both to the first one's prefetch
    assert {k: [x.id for x in v] for k, v in first.items()} == {W1: ["t0"], W2: ["t1"]}
    # And the next five filled what credit was left (2 + 2), in one turn
    assert sum(len(v) for v in second.values()) == 4 and s.queued == 1
    assert s.workers[W1].credit == 0 and s.workers[W2].credit == 0


def test_a_worker_short_of_credit_leaves_its_share_to_the_others_in_the_same_turn():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_worker(W2, worker_hello(credit=10), 0)
    s.on_client(C, p.Submit([spec(i) for i in range(6)]), 0)
    out = turn(s)
    assert [len(out.dispatch[W1]), len(out.dispatch[W2])] == [1, 5] and s.queued == 0


def test_release_requeues_unstarted_leases_in_order_and_keeps_their_credit_spent():
    # Given a worker holding three leases, the first of them running long
    s = fresh()
    assert s.welcome().takes_release
    s.on_worker(W1, worker_hello(credit=3), 0)
    s.on_client(C, p.Submit([spec(0), spec(1), spec(2), spec(3)]), 0)
    turn(s)
    # When it hands back the two it never started
    s.on_worker(W1, p.Release(["t1", "t2"]), 0.1)
    # Then they are queued again ahead of t3, in their order, with no attempt counted
    assert [s.tasks[t].state for t in ("t1", "t2")] == ["queued", "queued"]
    assert s.tasks["t1"].attempts == 0 and s.queued == 3
    # And none goes back to the busy worker, whose credit stays spent
    assert W1 not in turn(s, 0.1).dispatch
    # Until another worker takes them, in order
    s.on_worker(W2, worker_hello(credit=2), 0.2)
    assert [x.id for x in turn(s, 0.2).dispatch[W2]] == ["t1", "t2"]
    # And the busy worker's credit comes back with its next Report
    s.on_worker(W1, p.Report([p.Result("t0", s.tasks["t0"].run.token, True, b"\x01")],
                             credit=2), 0.3)
    assert s.tasks["t0"].state == "succeeded" and s.workers[W1].credit == 3
    assert [x.id for x in turn(s, 0.3).dispatch[W1]] == ["t3"]


def test_handoff_says_when_an_answer_is_near_and_never_for_a_stream():
    # (The broker spins for a near answer; see spinpoll.py.)
    s = fresh()
    s.on_worker(W1, worker_hello(credit=3), 0)
    assert not turn(s).handoff  # a hello hands nothing over
    # A task given to a worker that held nothing: its Report is near
    s.on_client(C, p.Submit([spec(0)]), 0)
    out = turn(s)
    first = out.dispatch[W1]
    assert out.handoff
    # More tasks for a worker that already holds one: a stream
    s.on_client(C, p.Submit([spec(1), spec(2)]), 0)
    out = turn(s)
    more = out.dispatch[W1]
    assert len(more) == 2 and not out.handoff
    # A result that leaves the worker holding others: still a stream
    s.on_worker(W1, p.Report([ok(first[0]), ok(more[0])]), 0.1)
    assert not turn(s, 0.1).handoff
    # The last result: the worker is idle, the client's next submission may be near
    s.on_worker(W1, p.Report([ok(more[1])]), 0.2)
    out = turn(s, 0.2)
    assert out.outcomes[C] and out.handoff


def test_validation_rejects_without_touching_other_tasks():
    s = fresh(max_payload_bytes=10)
    s.on_client(C, p.Submit([spec(0), spec(1, payload=b"x" * 11), spec(2, priority=256),
                             p.TaskSpec("t3", "nocolon", b""), spec(4, queue="")]), 0)
    out = turn(s)
    assert out.accepted[C] == ["t0"]
    assert [(r.id, r.code) for r in out.rejected[C]] == [
        ("t1", "too_large"), ("t2", "bad_option"), ("t3", "bad_option"), ("t4", "bad_option")]
    assert s.queued == 1 and s.rejected_total == 4


def test_resubmitting_an_id_is_a_no_op_that_acks_again():
    s = fresh()
    s.on_client(C, p.Submit([spec(0)]), 0)
    s.on_client(C, p.Submit([spec(0)]), 0)
    out = turn(s)
    assert out.accepted == {C: ["t0", "t0"]}
    assert s.queued == 1 and s.submitted_total == 1
    assert s.tasks["t0"].watchers == C

def test_supervisor_report_requeues_leases_at_once_and_next_attempt_counts():
    s = fresh()
    s.on_worker(SUP, p.Hello(version=1, role="supervisor", pool="default"), 0)
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0)]), 0)
    first = turn(s).dispatch[W1][0]
    s.on_worker(SUP, p.WorkerExited("w1", -9, True), 0.1)
    assert s.tasks["t0"].state == "queued"
    s.on_worker(W2, worker_hello(credit=1), 0.2)
    second = turn(s, 0.2).dispatch[W2][0]
    assert second.attempt == 2 and second.token != first.token
    assert s.worker_restarts == {"default": 1}


def test_a_stale_result_is_ignored_and_the_current_one_counts():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0)]), 0)
    first = turn(s).dispatch[W1][0]
    s.peer_unreachable(W1, 0)  # gone, and no supervisor says what it ran:
    turn(s, 1.0)  # dropped after EXIT_REPORT_WAIT_S, its lease requeued
    s.on_worker(W2, worker_hello(credit=1), 1.0)
    second = turn(s, 1.0).dispatch[W2][0]
    s.on_worker(W1, p.Report([ok(first, b"old")]), 1.1)  # late frame from the old lease
    assert s.tasks["t0"].state == "running" and s.stale_results_total == 1
    s.on_worker(W2, p.Report([ok(second, b"new")]), 1.2)
    assert s.tasks["t0"].value == b"new"
    s.on_worker(W2, p.Report([ok(second, b"again")]), 1.3)  # duplicate: recorded once
    assert s.tasks["t0"].value == b"new" and s.finished_total == {"succeeded": 1}


def test_missed_heartbeats_requeue_a_silent_workers_leases():
    s = fresh(heartbeat_interval_s=1.0, heartbeat_liveness=3)
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_worker(W2, worker_hello(credit=0), 0)
    s.on_client(C, p.Submit([spec(0)]), 0)
    turn(s, 0)
    for t in (1.0, 2.0, 3.0):
        s.on_worker(W2, p.Heartbeat(), t)  # W2 keeps beating, W1 is silent (hung, cut off)
        turn(s, t)
    assert W1 in s.workers
    turn(s, 4.0)
    assert W1 not in s.workers and W2 in s.workers
    assert s.tasks["t0"].state == "queued"


def test_unknown_worker_is_asked_to_say_hello():
    s = fresh()
    s.on_worker(W1, p.Heartbeat(), 0)
    out = turn(s)
    assert out.to_workers[0][0] == W1 and out.to_workers[0][1].code == "unknown_peer"


def test_wrong_protocol_version_gets_a_clear_error():
    s = fresh()
    s.on_client(C, p.Hello(version=99, role="client"), 0)
    (peer, err), = turn(s).to_clients
    assert peer == C and err.code == "protocol_version" and "99" in err.message
    assert s.bad_frames_total == 1


def test_cancel_stops_running_and_queued_tasks_once_and_notifies_watchers():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0), spec(1)]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_client(C, p.Cancel(7, ["t0", "t1", "t1", "nope"]), 0)
    out = turn(s)
    assert out.to_clients == [(C, p.CancelReply(7, [True, True, False, False]))]
    assert out.to_workers == [(W1, p.Stop(["t0"]))]  # the running one is stopped
    assert [o.state for o in out.outcomes[C]] == ["cancelled", "cancelled"]
    assert s.queued == 0 and s.depth["default"] == 0
    # The stopped attempt's late report changes nothing but frees the lease.
    s.on_worker(W1, p.Report([p.Result("t0", lease.token, False, error="Cancelled: x")]), 1)
    assert s.tasks["t0"].state == "cancelled" and not s.workers[W1].leased


def test_goodbye_hands_back_unstarted_leases_without_counting_an_attempt():
    s = fresh()
    s.on_worker(W1, worker_hello(credit=2), 0)
    s.on_client(C, p.Submit([spec(0), spec(1)]), 0)
    turn(s)
    s.on_worker(W1, p.Goodbye(released=["t1"]), 0)
    assert s.tasks["t1"].state == "queued" and s.tasks["t1"].attempts == 0
    assert W1 not in s.ready
    s.on_worker(W1, p.Report([], credit=1), 0)
    assert W1 not in s.ready  # a draining worker gets nothing new


def test_watch_and_query():
    s = fresh()
    s.on_client(C, p.Submit([spec(0)]), 0)
    s.on_client(b"late", p.Watch(["t0", "nope"]), 0)
    s.on_client(b"late", p.Query(5, ["t0", "nope"]), 0)
    out = turn(s)
    assert out.outcomes[b"late"] == [p.Outcome("nope", "unknown",
                                              error="no task 'nope' on this broker")]
    (_, infos), = out.to_clients
    assert infos.items[0].state == "queued" and infos.items[1] is None
    assert s.tasks["t0"].watchers == [C, b"late"]


def test_tasks_share_one_copy_of_their_name_and_queue():
    s = fresh()
    s.on_client(C, p.Submit(msgspec.msgpack.decode(
        p.encode(p.Submit([spec(0), spec(1)])), type=p.Submit).tasks), 0)
    a, b = s.tasks["t0"], s.tasks["t1"]
    assert a.name is b.name and a.queue is b.queue
    assert a.watchers == C  # a lone watcher is stored bare


def test_finished_tasks_are_purged_after_their_ttl():
    s = fresh(result_ttl_s=10.0)
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0)]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, p.Report([ok(lease)]), 1.0)
    turn(s, 5.0)
    assert "t0" in s.tasks
    s.on_worker(W1, p.Heartbeat(), 11.5)
    turn(s, 11.5)
    assert "t0" not in s.tasks


def test_draining_refuses_new_submissions():
    s = fresh()
    s.draining = True
    s.on_client(C, p.Submit([spec(0)]), 0)
    assert turn(s).rejected[C][0].code == "draining"


def test_stats_snapshot():
    s = fresh()
    s.on_worker(SUP, p.Hello(version=1, role="supervisor", pool="default"), 0)
    s.on_worker(W1, worker_hello(credit=1), 0)
    s.on_client(C, p.Submit([spec(0), spec(1)]), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, p.Report([p.Result(lease.id, lease.token, False, error="E: x",
                                       duration_s=0.002)]), 0.5)
    st = s.stats(0.5)
    assert st.submitted_total == 2 and st.finished_total == {"dead": 1}
    assert st.queue_depth == {"default": 1} and st.workers_alive == {"default": 1}
    assert st.supervisors == {"default": "up"}
    assert sum(st.duration_counts) == 1 and st.duration_counts[1] == 1  # 2 ms: <= 5 ms bucket


def test_a_task_that_keeps_killing_its_worker_fails_as_worker_lost():
    s = fresh(max_deliveries=2)
    s.on_client(C, p.Submit([spec(0)]), 0)
    for n, w in enumerate([W1, W2]):
        s.on_worker(w, worker_hello(credit=1), n)
        turn(s, n)
        s.on_worker(SUP, p.Hello(version=1, role="supervisor", pool="default"), n)
        s.on_worker(SUP, p.WorkerExited(w.decode(), -9, True), n)
    assert s.tasks["t0"].state == "dead"
    assert s.tasks["t0"].error.startswith("WorkerLost: ")
    assert s.take_outbox().outcomes[C][0].state == "dead"


def test_a_failed_pool_stays_listed_and_a_silent_supervisor_is_forgotten():
    s = fresh(heartbeat_interval_s=1.0, heartbeat_liveness=3)
    s.on_worker(b"s1", p.Hello(version=1, role="supervisor", pool="broken"), 0)
    s.on_worker(b"s2", p.Hello(version=1, role="supervisor", pool="quiet"), 0)
    s.on_worker(b"s1", p.PoolFailed("import error"), 0)
    s.peer_unreachable(b"s1", 0.5)
    assert s.stats(1).supervisors == {"broken": "failed", "quiet": "up"}
    assert s.stats(4).supervisors == {"broken": "failed", "quiet": "lost"}
    for t in range(1, 32):  # the loop wakes every heartbeat
        turn(s, t)
    assert s.stats(31).supervisors == {"broken": "failed"}


def test_no_two_parts_of_the_state_define_the_same_name():
    # The parts are mixins of one class: a method defined in two would silently be
    # one of them everywhere.
    from actorq.broker.state import BrokerState

    parts = [c for c in BrokerState.__mro__[1:] if c.__module__.startswith("actorq.broker.state")]
    seen: dict[str, str] = {}
    clashes = []
    for part in parts:
        for name, value in vars(part).items():
            if callable(value) and not name.startswith("__"):
                if name in seen:
                    clashes.append(f"{name}: {seen[name]} and {part.__name__}")
                seen[name] = part.__name__
    assert not clashes
