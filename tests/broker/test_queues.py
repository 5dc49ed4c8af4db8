from dataclasses import dataclass

from actorq.broker.state.queues import TaskQueue


@dataclass
class Item:
    name: str
    priority: int = 0
    live: bool = True


def make() -> TaskQueue[Item]:
    return TaskQueue(lambda item: item.live)


def test_fifo_within_a_priority():
    q = make()
    for n in "abc":
        q.push(Item(n))
    assert [q.pop().name for _ in range(3)] == ["a", "b", "c"]
    assert q.pop() is None


def test_higher_priority_first_even_when_pushed_later():
    q = make()
    q.push(Item("low1", 0))
    q.push(Item("low2", 0))
    q.push(Item("high", 9))
    q.push(Item("mid", 5))
    assert [q.pop().name for _ in range(4)] == ["high", "mid", "low1", "low2"]


def test_push_front_goes_ahead_of_its_priority_only():
    q = make()
    q.push(Item("a", 1))
    q.push(Item("top", 7))
    q.push_front(Item("requeued", 1))
    assert [q.pop().name for _ in range(3)] == ["top", "requeued", "a"]


def test_dead_entries_are_skipped_and_do_not_hide_priority():
    q = make()
    dead = Item("dead", 9)
    q.push(dead)
    q.push(Item("alive", 1))
    dead.live = False
    assert q.peek_priority() == 1
    assert q.pop().name == "alive"
    assert q.pop() is None
    assert q.peek_priority() is None


def test_levels_are_released_when_empty():
    q = make()
    for prio in range(256):
        q.push(Item(str(prio), prio))
    assert [q.pop().priority for _ in range(256)] == list(range(255, -1, -1))
    assert q.pop() is None  # empty levels are released lazily, on the next look
    assert q.entries() == 0 and q._order == [] and q._levels == {}


def test_pop_many_takes_what_pop_would_in_the_same_order_skipping_dead_entries():
    def filled() -> TaskQueue[Item]:
        q = make()
        for name, prio, live in [("a", 1, True), ("b", 1, False), ("c", 5, True),
                                 ("d", 1, True), ("e", 5, False), ("f", 0, True)]:
            q.push(Item(name, prio, live))
        return q

    one_by_one = filled()
    expected = [one_by_one.pop().name for _ in range(4)]
    assert expected == ["c", "a", "d", "f"]
    q = filled()
    assert [i.name for i in q.pop_many(3)] == ["c", "a", "d"]  # across levels, dead skipped
    assert [i.name for i in q.pop_many(10)] == ["f"]  # fewer than asked: all there is
    assert q.pop_many(10) == [] and q.pop() is None
    assert filled().pop_many(0) == []
