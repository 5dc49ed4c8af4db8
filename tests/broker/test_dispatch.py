"""Credit, `more`, and stealing leases for idle workers. A fake clock, no sockets."""

from actorq.broker.state import BrokerState
from actorq.broker.state.dispatch import STEAL_EVERY_S
from actorq.wire import protocol as p
from tests.broker.fakes import C, W1, W2, fresh, turn


def hello(credit: int, slots: int = 1) -> p.Hello:
    return p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                   queues=["default"], credit=credit, slots=slots)


def submit(s: BrokerState, ids: range, now: float = 0.0) -> None:
    s.on_client(C, p.Submit([p.TaskSpec(f"t{i}", "m:f", b"\x90") for i in ids]), now)


def test_more_is_said_when_credit_not_work_ran_out():
    s = fresh()
    s.on_worker(W1, hello(credit=2), 0)
    submit(s, range(5))
    out = turn(s)
    assert len(out.dispatch[W1]) == 2 and out.more == {W1}
    # With credit to spare, the broker says nothing more
    s.on_worker(W2, hello(credit=10), 0)
    out = turn(s)
    assert len(out.dispatch[W2]) == 3 and out.more == set()


def test_a_worker_can_take_credit_back_when_its_window_shrinks():
    s = fresh()
    s.on_worker(W1, hello(credit=8), 0)
    s.on_worker(W1, p.Report([], credit=-6), 0)
    assert s.workers[W1].credit == 2
    s.on_worker(W1, p.Report([], credit=-5), 0)
    assert s.workers[W1].credit == 0 and W1 not in s.ready
    submit(s, range(1))
    assert turn(s).dispatch == {}


def test_an_idle_worker_gets_leases_waiting_at_a_busy_one():
    # Given a one-slot worker holding four leases, running the first, and nothing queued
    s = fresh()
    s.on_worker(W1, hello(credit=4), 0)
    submit(s, range(4))
    turn(s)
    # When another worker comes idle
    s.on_worker(W2, hello(credit=2), 0.1)
    out = turn(s, 0.1)
    # Then the busy one is asked for half of what waits there, once per STEAL_EVERY_S
    assert (W1, p.Reclaim(1)) in out.to_workers and s.steals_total == 1
    assert not any(isinstance(m, p.Reclaim) for _, m in turn(s, 0.1).to_workers)
    # And what it hands back runs on the idle worker at once, with no attempt counted
    s.on_worker(W1, p.Release(["t3"]), 0.11)
    out = turn(s, 0.11)
    assert [lease.id for lease in out.dispatch[W2]] == ["t3"]
    assert out.dispatch[W2][0].attempt == 1 and s.leases_returned_total == 1
    # Asked again only after STEAL_EVERY_S, and only while some wait: W1 holds 3 for 1 slot
    s.on_worker(W2, p.Report([p.Result("t3", out.dispatch[W2][0].token, True, b"\xc0")]), 0.12)
    assert not any(isinstance(m, p.Reclaim) for _, m in turn(s, 0.12).to_workers)
    assert (W1, p.Reclaim(1)) in turn(s, 0.11 + STEAL_EVERY_S).to_workers


def test_nobody_is_asked_when_no_worker_is_idle_or_leases_do_not_wait():
    s = fresh()
    s.on_worker(W1, hello(credit=1), 0)
    s.on_worker(W2, hello(credit=1), 0)
    submit(s, range(2))
    out = turn(s)
    assert not any(isinstance(m, p.Reclaim) for _, m in out.to_workers)
    assert s.steals_total == 0
