"""What the store tests share: a broker state recovered from a store, as a broker
starting on it would have it."""

from actorq.broker.state import BrokerState
from actorq.storage.journal import Journal
from actorq.wire import protocol as p

C, W = b"c", b"w"  # a client and a worker


def recovered(store, now: float = 0.0):
    """(store, state): the state loaded from the store, journaling its changes."""
    s = BrokerState(now=now, instance="x")
    rows, crons = store.load()
    s.recover(rows, crons, now)
    s.journal = Journal()
    return store, s


def submit_every_state(s) -> None:
    """Tasks in every state a store must bring back: t1 running, t2 queued, t3
    scheduled with an idempotency key, t4 pending on t3."""
    s.on_worker(W, p.Hello(version=1, role="worker", queues=["default"], credit=1), 0)
    s.on_client(C, p.Submit([
        p.TaskSpec("t1", "m:f", b"\x01"), p.TaskSpec("t2", "m:f", b"\x02"),
        p.TaskSpec("t3", "m:f", b"\x03", opts=p.Options(not_before=50.0, key="k")),
        p.TaskSpec("t4", "m:f", b"\x04", opts=p.Options(depends_on=["t3"]))]), 0)
    s.dispatch(0)  # t1 runs


def cancel_a_new_task(s) -> None:
    """t5, submitted and cancelled since the last commit."""
    s.on_client(C, p.Submit([p.TaskSpec("t5", "m:f", b"\x05")]), 1)
    s.on_client(C, p.Cancel(1, ["t5"]), 1)


def check_every_state(r) -> None:
    """What a broker recovering after submit_every_state and cancel_a_new_task has."""
    # t1 was running: its worker may still have it and claim it when it says hello
    assert r.tasks["t1"].state == "running" and r.unclaimed == {"t1": None}
    assert r.tasks["t2"].state == "queued" and r.queued == 1
    # Its key is still its submitter's, who is still the owner of every task
    assert r.scheduled == {"t3": 50.0} and r.keys == {(C, "k"): "t3"}
    assert {t.owner for t in r.tasks.values()} == {C}
    assert r.tasks["t4"].state == "pending" and r.waiting == {"t4": 1}
    assert r.tasks["t5"].state == "cancelled"
    assert list(r.tasks) == ["t1", "t2", "t3", "t4", "t5"]  # id order
