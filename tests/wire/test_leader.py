"""Which broker a peer given several addresses follows (wire/leader.py): the one that
answered under the highest epoch, never a deposed one, never on a tie."""

from actorq.wire.leader import FRESH_S, LeaderFinder, addresses

A, B, C = "tcp://a:1", "tcp://b:1", "tcp://c:1"


def finder(*heard: tuple[str, int, float]) -> LeaderFinder:
    f = LeaderFinder([A, B, C], lambda address: None)
    for address, epoch, when in heard:
        f.heard[address] = (epoch, when)
    return f


def test_nobody_answered_yet_means_stay():
    assert finder().choose(10.0) is None


def test_the_current_address_a_standby_means_move_to_the_one_that_answers():
    assert finder((B, 3, 10.0)).choose(10.0) == B  # A never answered: a standby


def test_a_higher_epoch_elsewhere_means_move():
    assert finder((A, 3, 10.0), (B, 4, 10.0)).choose(10.0) == B


def test_a_deposed_leader_answering_is_never_followed():
    assert finder((A, 4, 10.0), (B, 3, 10.0)).choose(10.0) is None


def test_a_tie_keeps_the_current_broker():
    assert finder((A, 0, 10.0), (B, 0, 10.0)).choose(10.0) is None


def test_old_answers_do_not_count():
    assert finder((B, 9, 10.0)).choose(10.0 + FRESH_S + 0.1) is None


def test_addresses_takes_one_or_many():
    assert addresses(A) == [A]
    assert addresses([A, B]) == [A, B]
