"""The fault suite's quick tier: one round of each scenario of benchmarks/chaos.py
against real nodes. Every task must end ok: none lost, duplicated or wrong; poison
tasks dead, their pool up. The long tier is `bin/chaos --rounds N`."""

from __future__ import annotations

import random

import pytest

from benchmarks.chaos import SCENARIOS


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_one_round(scenario, tmp_path):
    r = SCENARIOS[scenario](tmp_path, random.Random(f"quick {scenario}"))
    assert r.counts["ok"] > 0, r
    assert (r.counts["lost"], r.counts["duplicated"], r.counts["wrong"]) == (0, 0, 0), r
    if scenario == "poison tasks":
        assert r.counts["poison dead"] == 10 and not r.counts["pool down"], r
    if "worker SIGKILL" in scenario:
        assert all(s < 5 for s in r.recovery_s), r
