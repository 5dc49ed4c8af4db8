"""[broker] max_queued and max_queued_bytes: what the broker holds is bounded, and a
submission past a bound is refused with queue_full naming it."""

from actorq.wire import protocol as p

from .fakes import C, W1, fresh, turn


def specs(start: int, n: int, payload: bytes = b"\x90", **opts):
    o = p.Options(**opts) if opts else None
    return [p.TaskSpec(f"t{i}", "m:f", payload, "default", 0, o) for i in range(start, start + n)]


def worker(credit: int) -> p.Hello:
    return p.Hello(version=p.PROTOCOL_VERSION, role="worker", pool="default",
                   queues=["default"], credit=credit, slots=credit)


def held(s) -> tuple[int, int]:
    """What the broker's counters should say: unfinished tasks and their bytes."""
    live = [t for t in s.tasks.values() if t.state not in p.FINAL_STATES]
    return len(live), sum(len(t.payload) for t in live)


def test_past_max_queued_a_submission_is_refused_naming_the_limit():
    s = fresh(max_queued=3)
    s.on_client(C, p.Submit(specs(0, 5)), 0)
    out = turn(s)
    assert out.accepted[C] == ["t0", "t1", "t2"]
    assert [r.code for r in out.rejected[C]] == ["queue_full", "queue_full"]
    assert "max_queued = 3" in out.rejected[C][0].message
    # When a worker finishes one, there is room for one more
    s.on_worker(W1, worker(1), 0)
    lease = turn(s).dispatch[W1][0]
    s.on_worker(W1, p.Report([p.Result(lease.id, lease.token, True, b"\xc0")]), 0)
    s.on_client(C, p.Submit(specs(5, 2)), 0)
    out = turn(s)
    assert out.accepted[C] == ["t5"] and [r.code for r in out.rejected[C]] == ["queue_full"]
    assert (s.live, s.live_bytes) == held(s) == (3, 3)


def test_past_max_queued_bytes_a_submission_is_refused_naming_the_limit():
    s = fresh(max_queued_bytes=250)
    s.on_client(C, p.Submit(specs(0, 3, b"x" * 100)), 0)
    out = turn(s)
    assert out.accepted[C] == ["t0", "t1"]
    (r,) = out.rejected[C]
    assert r.code == "queue_full" and "max_queued_bytes = 250" in r.message
    # A smaller one still fits
    s.on_client(C, p.Submit(specs(3, 1, b"x" * 50)), 0)
    assert turn(s).accepted[C] == ["t3"]


def test_the_counts_follow_every_way_a_task_ends_or_comes_back():
    s = fresh()
    s.on_worker(W1, worker(2), 0)
    s.on_client(C, p.Submit(specs(0, 3, b"ab") + specs(3, 1, b"abc", retries=0)
                            + specs(4, 1, b"a", not_before=100.0)
                            + specs(5, 1, b"z", depends_on=["t4"])), 0)
    out = turn(s)
    assert (s.live, s.live_bytes) == held(s) == (6, 11)
    leases = out.dispatch[W1]
    s.on_worker(W1, p.Report([p.Result(leases[0].id, leases[0].token, True, b"\xc0"),
                              p.Result(leases[1].id, leases[1].token, False, None, "E")]), 1)
    turn(s, 1)
    s.on_client(C, p.Cancel(1, ["t4"]), 1)  # and t5, which depends on it
    turn(s, 1)
    assert (s.live, s.live_bytes) == held(s)
    dead = [t.id for t in s.tasks.values() if t.state == "dead"]
    assert dead and s._requeue_dead(dead[0], 2)
    assert (s.live, s.live_bytes) == held(s)
