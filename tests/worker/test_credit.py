"""The adaptive credit window: grows while slots wait on round trips with work queued,
shrinks when leases wait behind long calls, stays within its bounds. Pure."""

from actorq.worker.credit import MAX_CREDIT, CreditWindow


def test_a_one_slot_window_starts_by_holding_the_next_task():
    w = CreditWindow(slots=1)
    assert w.size == 2 and w.hello_credit(held=0) == 2


def test_it_doubles_while_idle_slots_wait_on_a_broker_with_more_queued():
    w = CreditWindow(slots=1)
    sizes = []
    for _ in range(10):
        w.starved(idle_slots=1, more=True)
        sizes.append(w.size)
    assert sizes == [4, 8, 16, 32, 64, 128, 256, 256, 256, 256]
    assert w.size == MAX_CREDIT


def test_it_does_not_grow_when_slots_were_busy_or_the_broker_had_nothing_more():
    w = CreditWindow(slots=2)
    assert not w.starved(idle_slots=0, more=True)  # tasks long enough: slots never waited
    assert not w.starved(idle_slots=2, more=False)  # idle because there was no work
    assert w.size == 2


def test_it_halves_when_leases_wait_behind_long_calls_down_to_a_lease_per_slot():
    w = CreditWindow(slots=3)
    for _ in range(5):
        w.starved(idle_slots=1, more=True)
    assert w.size == 96
    sizes = []
    for _ in range(7):
        w.stalled()
        sizes.append(w.size)
    assert sizes == [48, 24, 12, 6, 3, 3, 3]


def test_a_fixed_prefetch_never_moves():
    w = CreditWindow(slots=1, prefetch=16)
    assert not w.starved(idle_slots=1, more=True) and not w.stalled()
    assert w.size == 16


def test_updates_bring_the_brokers_credit_to_the_window():
    w = CreditWindow(slots=1)
    assert w.hello_credit(held=0) == 2
    w.dispatched(2)  # the broker sent 2 leases: it holds no more credit for us
    # One result while holding 1: one credit back, as without adapting
    assert w.update(held=1, results=1) == 0 and w.announced == 1
    # The window grew to 4 while holding 1: three credits, two of them extra
    w.dispatched(1)
    w.starved(idle_slots=1, more=True)
    assert w.update(held=1, results=0) == 3
    # Shrunk to 2 while the broker holds 3 for us and 2 results come: it holds 1
    w.stalled()
    assert w.update(held=1, results=2) == 1 - (3 + 2)
