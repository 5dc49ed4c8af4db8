"""The supervisor's scaling decisions: grow on a backlog with every slot busy, one
decision at a time; drain idle workers down to the minimum; follow new bounds. Pure."""

from actorq.wire.values import WorkerLoad
from actorq.worker.scaling import Scaler


def busy(n: int) -> list[WorkerLoad]:
    return [WorkerLoad(f"w{i}", 2, 1, 0.0) for i in range(n)]


def test_a_backlog_with_every_slot_busy_doubles_the_pool_up_to_max():
    s = Scaler(1, 1, 8, 30.0)
    sizes = []
    running = 1
    while (d := s.decide(running, 0, 500, busy(running))) is not None:
        assert d.direction == "up" and "500 task(s) queued" in d.reason
        running += d.count
        sizes.append(running)
    assert sizes == [2, 4, 8] and s.target == 8 and s.ups == 3


def test_one_decision_at_a_time_and_none_without_need():
    s = Scaler(2, 1, 8, 30.0)
    assert s.decide(2, 2, 500, busy(2)) is None  # two still starting
    assert s.decide(2, 0, 0, busy(2)) is None  # nothing queued
    loads = [WorkerLoad("w0", 2, 1, 0.0), WorkerLoad("w1", 0, 1, 0.5)]
    assert s.decide(2, 0, 500, loads) is None  # a slot is free: it will take the backlog


def test_idle_workers_are_drained_down_to_min_longest_idle_first():
    s = Scaler(5, 2, 8, 30.0)
    loads = [WorkerLoad("w0", 0, 1, 31.0), WorkerLoad("w1", 0, 1, 45.0),
             WorkerLoad("w2", 0, 1, 10.0), WorkerLoad("w3", 1, 1, 0.0),
             WorkerLoad("w4", 0, 1, 40.0)]
    d = s.decide(5, 0, 0, loads)
    assert (d.direction, d.workers) == ("down", ["w1", "w4", "w0"]) and s.target == 2
    assert s.decide(2, 3, 0, loads) is None  # still draining
    assert s.decide(2, 0, 0, [WorkerLoad("w2", 0, 1, 99.0), WorkerLoad("w3", 0, 1, 99.0)]) is None
    assert s.downs == 1


def test_no_drain_while_work_is_queued():
    s = Scaler(3, 1, 8, 30.0)
    loads = [WorkerLoad("w0", 0, 1, 60.0), WorkerLoad("w1", 1, 1, 0.0), WorkerLoad("w2", 1, 1, 0)]
    assert s.decide(3, 0, 5, loads) is None


def test_new_bounds_are_followed():
    s = Scaler(2, 2, 2, 30.0)  # a fixed pool
    s.set_bounds(4, 6)
    d = s.decide(2, 0, 0, busy(2))
    assert (d.direction, d.count) == ("up", 2) and "below min_workers 4" in d.reason
    s.set_bounds(1, 2)
    loads = [WorkerLoad("w0", 3, 1, 0.0), WorkerLoad("w1", 0, 1, 0.2), WorkerLoad("w2", 1, 1, 0),
             WorkerLoad("w3", 1, 1, 0.0)]
    d = s.decide(4, 0, 0, loads)
    assert (d.direction, d.workers) == ("down", ["w1", "w2"]) and "above max_workers 2" in d.reason
