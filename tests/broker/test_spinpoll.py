"""The broker's spin-then-sleep poll, on a scripted poller and clock (no sockets)."""

from __future__ import annotations

import pytest

from actorq.broker.spinpoll import MISS_BURST_S, MISS_SHARE, SpinPoll


class Script:
    """A poller whose poll(0) answers come from a list, and a clock that moves 10 us
    per poll(0): a spin's length in time is its count of polls."""

    def __init__(self, answers: list[list]) -> None:
        self.answers = answers
        self.calls: list[float] = []  # every timeout asked for
        self.now = 100.0

    def poll(self, timeout_ms: float) -> list:
        self.calls.append(timeout_ms)
        if timeout_ms == 0:
            self.now += 10e-6
            return self.answers.pop(0) if self.answers else []
        return [("slept", 1)]

    def clock(self) -> float:
        return self.now


def spin_poll(script: Script, spin_us: float = 100) -> SpinPoll:
    return SpinPoll(script, spin_us / 1e6, clock=script.clock)


def test_no_spin_unless_an_answer_is_near():
    script = Script([[("sock", 1)]])
    assert spin_poll(script).poll(500.0, answer_near=False) == {"slept": 1}
    assert script.calls == [500.0]


def test_a_spin_returns_what_arrives_while_it_spins_without_sleeping():
    script = Script([[], [], [("sock", 1)]])
    sp = spin_poll(script)
    assert sp.poll(500.0, answer_near=True) == {"sock": 1}
    assert script.calls == [0, 0, 0]
    assert (sp.spins, sp.hits) == (1, 1)


def test_a_spin_that_misses_sleeps_out_the_rest_of_the_timeout():
    script = Script([])
    sp = spin_poll(script, spin_us=100)
    assert sp.poll(500.0, answer_near=True) == {"slept": 1}
    spun = script.calls[:-1]
    assert spun and set(spun) == {0} and len(spun) == pytest.approx(10, abs=1)
    assert script.calls[-1] == pytest.approx(500.0 - 0.1, abs=0.02)  # the spin's time is taken off
    assert (sp.spins, sp.hits) == (1, 0)


def miss(sp: SpinPoll, script: Script) -> bool:
    """One poll with an answer near and none coming; True if it spun."""
    script.calls.clear()
    sp.poll(500.0, answer_near=True)
    return script.calls[0] == 0


def test_misses_are_paid_from_a_budget_that_refills_at_a_share_of_the_time():
    script = Script([])
    sp = spin_poll(script, spin_us=100)
    # A burst of misses, back to back, is allowed: MISS_BURST_S of spinning
    burst = 0
    while miss(sp, script):
        burst += 1
        assert burst < 1000
    assert burst == pytest.approx(MISS_BURST_S / 100e-6, rel=0.1)
    # Then it sleeps at once, until the time passed pays for one more whole spin
    assert not miss(sp, script)
    script.now += 100e-6 / MISS_SHARE / 2
    assert not miss(sp, script)
    script.now += 100e-6 / MISS_SHARE
    assert miss(sp, script)
    assert not miss(sp, script)
    # So sparse traffic, every spin missing, costs at most MISS_SHARE of a core
    spun_s, start = 0.0, script.now
    for _ in range(2000):
        script.now += 1e-3  # an answer near every millisecond, never coming in time
        before = script.now
        if miss(sp, script):
            spun_s += script.now - before
    assert spun_s / (script.now - start) <= MISS_SHARE * 1.05


def test_spins_that_find_their_answer_cost_nothing_from_the_budget():
    script = Script([])
    sp = spin_poll(script, spin_us=100)
    while miss(sp, script):  # an empty budget
        pass
    script.now += 100e-6 / MISS_SHARE  # enough for one spin
    for _ in range(500):  # a stream of round trips, each answered within the spin
        script.answers = [[], [], [("sock", 1)]]
        assert sp.poll(500.0, answer_near=True) == {"sock": 1}
    assert sp.hits == 500
    assert miss(sp, script)  # the one spin it had is still there


def test_a_spin_never_outlasts_the_timeout_and_zero_turns_it_off():
    script = Script([])
    spin_poll(script, spin_us=1000).poll(0.05, answer_near=True)  # 50 us to the next timer
    assert len(script.calls) <= 7 and script.calls[-1] < 0.01
    script.calls.clear()
    spin_poll(script, spin_us=1000).poll(0, answer_near=True)  # a turn due at once
    assert script.calls == [0]
    script.calls.clear()
    spin_poll(script, spin_us=0).poll(500.0, answer_near=True)
    assert script.calls == [500.0]
