"""The broker's spin-then-sleep poll, on a scripted poller and clock (no sockets)."""

from __future__ import annotations

import pytest

from actorq.spinpoll import BACKOFF_S, SpinPoll


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


def test_a_spin_that_misses_sleeps_out_the_rest_and_rests_before_the_next():
    script = Script([])
    sp = spin_poll(script, spin_us=100)
    assert sp.poll(500.0, answer_near=True) == {"slept": 1}
    spun = script.calls[:-1]
    assert spun and set(spun) == {0} and len(spun) == pytest.approx(10, abs=1)
    assert script.calls[-1] == pytest.approx(500.0 - 0.1, abs=0.02)  # the spin's time is taken off
    # Within BACKOFF_S of the miss, answer near or not, it sleeps at once
    script.calls.clear()
    assert sp.poll(500.0, answer_near=True) == {"slept": 1}
    assert script.calls == [500.0]
    # After it, it spins again
    script.now += BACKOFF_S
    script.calls.clear()
    script.answers = [[("sock", 1)]]
    assert sp.poll(500.0, answer_near=True) == {"sock": 1}
    assert (sp.spins, sp.hits) == (2, 1)


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
