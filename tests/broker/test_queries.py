"""Operators' queries and commands on the pure broker state: listings from indices with
a cursor, a task in full, pause, resume, purge, requeue of dead letters. A fake clock."""

import pytest

from actorq.broker.state import BrokerState
from actorq.broker.state.queries import LIST_SCAN_MIN, BadRequest
from actorq.wire import protocol as p
from tests.broker import fakes
from tests.broker.fakes import C, W1, fresh, turn


def hello(credit: int) -> p.Hello:
    return p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                   queues=["default"], credit=credit, slots=1)


def submit(s: BrokerState, ids, queue="default", name="m:f", **opts) -> None:
    o = p.Options(**opts) if opts else None
    s.on_client(C, p.Submit([p.TaskSpec(i, name, b"\x92\x90\x80", queue, 0, o) for i in ids]), 0)


def page(s: BrokerState, **kw) -> p.TaskPage:
    return s._list_tasks(p.ListTasks(1, **kw))


def test_paging_through_300_tasks_yields_each_once_newest_first():
    s = fresh()
    submit(s, [f"t{i:03d}" for i in range(300)])
    seen, cursor = [], None
    while True:
        got = page(s, limit=70, cursor=cursor)
        seen += [t.id for t in got.tasks]
        cursor = got.next_cursor
        if cursor is None:
            break
    assert seen == [f"t{i:03d}" for i in reversed(range(300))]


def test_filters_by_state_queue_and_name_and_refuses_bad_arguments():
    s = fresh()
    s.on_worker(W1, hello(credit=2), 0)
    submit(s, ["a1", "a2", "a3"], name="m:a")
    submit(s, ["b1"], queue="reports", name="m:b")
    turn(s)
    assert [t.id for t in page(s, state="running").tasks] == ["a2", "a1"]
    assert [t.id for t in page(s, state="queued").tasks] == ["b1", "a3"]
    assert [t.id for t in page(s, queue="reports").tasks] == ["b1"]
    assert [t.id for t in page(s, name="m:a", state="queued").tasks] == ["a3"]
    for kw, field in [(dict(state="bogus"), "state"), (dict(limit=0), "limit"),
                      (dict(cursor="dead:7"), "cursor"), (dict(cursor="all:x"), "cursor")]:
        with pytest.raises(BadRequest, match=field):
            page(s, **kw)


def test_a_page_looks_at_a_bounded_number_of_entries():
    # Given 50,000 tasks of which the only cancelled ones are the oldest few
    s = fresh()
    submit(s, [f"t{i:05d}" for i in range(50_000)])
    for i in range(3):
        s.on_client(C, p.Cancel(2, [f"t{i:05d}"]), 0)
    # Then the cancelled ones come from their own index at once
    assert [t.id for t in page(s, state="cancelled").tasks] == ["t00002", "t00001", "t00000"]
    # And a filter nothing matches stops after its budget, saying where to go on
    got = page(s, name="m:nothing", limit=10)
    assert got.tasks == [] and got.next_cursor == f"all:{50_000 - LIST_SCAN_MIN}"


def test_a_task_in_full_has_its_arguments_result_and_every_attempt():
    s = fresh()
    s.on_worker(W1, hello(credit=1), 0)
    submit(s, ["r1"], retries=1, backoff=0.001, max_backoff=0.001)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, p.Report([p.Result("r1", lease.token, False, None, "ValueError: no")]), 1)
    fakes.with_scheduler(s, 2)
    s.on_worker(fakes.SCHED, p.Due(["r1"]), 2)
    lease = turn(s, 2).dispatch[W1][0]
    s.on_worker(W1, p.Report([p.Result("r1", lease.token, True, b"\x2a")]), 3)
    info = s._detail(s.tasks["r1"])
    assert info.payload is None and info.value == b"\x2a"  # done: its arguments are dropped
    assert [(a.worker, a.outcome) for a in info.history] == [("w1", "ValueError: no"),
                                                             ("w1", "succeeded")]
    assert info.worker == "w1"


def test_pause_holds_work_resume_releases_it_and_purge_cancels_what_waits():
    s = fresh()
    s.on_worker(W1, hello(credit=5), 0)
    assert s._queue_command("default", "pause", 0) == 1
    submit(s, ["p1", "p2", "p3"])
    assert turn(s).dispatch == {}
    assert s._queues_info(0)[0].paused and s._queues_info(0)[0].depth == 3
    assert s._queue_command("default", "resume", 0) == 1
    assert [lease.id for lease in turn(s).dispatch[W1]] == ["p1", "p2", "p3"]
    submit(s, ["p4", "p5"], queue="other")
    assert s._queue_command("other", "purge", 0) == 2
    assert s.tasks["p4"].state == "cancelled" and s.depth["other"] == 0
    with pytest.raises(BadRequest, match="action"):
        s._queue_command("other", "explode", 0)


def test_dead_letters_are_requeued_by_filter_and_workers_are_listed():
    s = fresh()
    s.on_worker(W1, hello(credit=3), 0)
    submit(s, ["d1", "d2"], name="m:a")
    submit(s, ["d3"], name="m:b")
    leases = turn(s).dispatch[W1]
    s.on_worker(W1, p.Report([p.Result(x.id, x.token, False, None, "E: x") for x in leases]), 1)
    assert s._requeue_matching(None, "m:a", 1) == 2
    assert list(s.dead) == ["d3"] and s.tasks["d1"].state == "queued"
    (w,) = s._workers_info(2)
    assert (w.name, w.state, w.done, w.slots) == ("w1", "idle", 3, 1)


def test_registered_names_get_counters_and_made_up_ones_do_not():
    s = fresh()
    s.on_worker(W1, p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                            queues=["default"], credit=5, slots=1, tasks=["m:f"]), 0)
    submit(s, ["n1", "n2"])
    submit(s, ["x1"], name="made:up")
    leases = turn(s).dispatch[W1]
    s.on_worker(W1, p.Report([p.Result(x.id, x.token, x.id != "n2", b"\xc0", "E: x", None, 0.5)
                              for x in leases]), 1)
    stats = s.stats(1)
    assert stats.by_name == {"m:f": p.NameStats(1, 1, 1.0)}
    assert sum(stats.wait_counts) == 3  # every finished attempt waited, named or not


def test_names_have_a_length_limit_and_empty_queues_are_forgotten():
    s = fresh()
    s.on_worker(W1, hello(credit=1), 0)  # consumes "default"
    # Too long a name is refused, naming the limit
    submit(s, ["long"], queue="q" * 201)
    assert s.take_outbox().rejected[C][0].message == \
        "task and queue names are at most 200 characters"
    # A hundred one-task queues, emptied
    for i in range(100):
        submit(s, [f"t{i}"], queue=f"q{i}")
        s.on_client(C, p.Cancel(1, [f"t{i}"]), 0)
    submit(s, ["d1"])  # and the consumed queue, emptied by its worker
    assert len(s.depth) == 101
    # Are forgotten at the next beat, but for the queue a worker consumes
    turn(s, 0.0)
    assert set(s.depth) == {"default"} and set(s.queues) == {"default"}
    assert s.stats(1.0).queue_depth == {"default": 0}
    # And one comes back with its next task
    submit(s, ["again"], queue="q7")
    assert s.depth["q7"] == 1
