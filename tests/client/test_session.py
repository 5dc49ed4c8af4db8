"""The client's sans-IO session: validation, batching, and what a broker restart means."""

import msgspec
import pytest

from actorq import BrokerUnavailable, RequestRejected, SubmitRejected, TaskFailed, TaskNotFound
from actorq.client.handles import HandleBase
from actorq.client.session import SUBMIT_BATCH, Session
from actorq.wire import protocol as p

dec = p.decoder(p.ClientToBroker)


def sent(session: Session, now: float = 0.0) -> list:
    return [dec.decode(b) for b in session.take_messages(now)]


def welcomed(instance="one", max_payload=1024 * 1024) -> Session:
    s = Session("tcp://x")
    s.on_message(p.Welcome(version=1, instance=instance, max_payload_bytes=max_payload,
                           heartbeat_interval_s=1.0), 0)
    return s


def submit(s: Session, name="m:f", args=(1,), **kw) -> HandleBase:
    spec = s.build(name, args, None, {"queue": kw.get("queue", "default"), "priority": kw.get("priority", 0)})
    h = HandleBase(spec.id)
    s.add(spec, h)
    return h


def test_ids_are_unique_and_sort_by_creation_time():
    s = Session("tcp://x")
    ids = [s.new_id() for _ in range(1000)] + [t.id for t in s.specs([(("m:f", "q", 0, None), b"")] * 1000)]
    assert len(set(ids)) == 2000
    assert all(len(i) <= 31 for i in ids)
    assert [i.split("-")[0] for i in ids] == sorted(i.split("-")[0] for i in ids)


def test_ids_reveal_nothing_of_the_client_and_cannot_be_guessed():
    a, b = Session("tcp://x"), Session("tcp://x")
    assert a.identity != b.identity
    ids = [a.new_id() for _ in range(1000)]
    assert not any(a.identity.decode()[2:][:8] in i for i in ids)
    # The random part of consecutive ids shares nothing a guesser could extend.
    tails = [i.split("-")[1] for i in ids]
    assert len(set(tails)) == 1000 and all(len(t) == 12 for t in tails)


@pytest.mark.parametrize("name, args, queue, priority, error", [
    ("nocolon", (), "default", 0, SubmitRejected),
    ("m:f", (), "", 0, SubmitRejected),
    ("m:f", (), "default", -1, SubmitRejected),
    ("m:f", (), "default", True, SubmitRejected),
    ("m:f", "not a tuple", "default", 0, TypeError),
    ("m:f", (object(),), "default", 0, TypeError),
])
def test_bad_submissions_raise_before_anything_is_queued(name, args, queue, priority, error):
    s = welcomed()
    with pytest.raises(error):
        s.build(name, args, None, {"queue": queue, "priority": priority})
    assert not s.outbox


def test_payload_over_the_brokers_limit_is_refused_locally():
    s = welcomed(max_payload=100)
    with pytest.raises(SubmitRejected) as err:
        s.build("m:f", ("x" * 200,), None, {})
    assert err.value.code == "too_large"


@pytest.mark.parametrize("bad, error, code", [
    (("m:f", (object(),)), TypeError, None),
    (("m:f", ("x" * 200,)), SubmitRejected, "too_large"),
    (("m:f", "not a tuple"), TypeError, None),
    (["m:f", ()], TypeError, None),
    (("nocolon", ()), SubmitRejected, "bad_option"),
])
def test_a_bad_item_of_a_batch_raises_naming_it_and_nothing_is_queued(bad, error, code):
    s = welcomed(max_payload=100)
    items = [("m:f", (1,)), ("m:f", [2], {"k": 3}), ("m:f", (4,)), bad, ("m:f", (5,))]
    with pytest.raises(error, match="item 3") as err:
        s.build_many(items, {})
    assert code is None or err.value.code == code
    assert not s.outbox and not s.unacked


def test_batch_items_encode_as_single_submissions_do():
    s = welcomed()
    items = [("m:f", (1, "a")), ("m:f", [2]), ("m:f", (3,), {"k": 4}), ("m:f",)]
    batch = [spec.payload for spec in s.build_many(items, {})]
    one_by_one = [s.build(*item[:1], item[1] if len(item) > 1 else (),
                          item[2] if len(item) > 2 else None, {}).payload for item in items]
    assert batch == one_by_one


def test_submissions_are_batched_by_count_and_by_bytes_and_go_before_requests():
    s = welcomed(max_payload=1024 * 1024)
    for _ in range(SUBMIT_BATCH + 5):
        submit(s)
    s.request(lambda req: p.Query(req, ["x"]))
    msgs = sent(s)
    assert [type(m).__name__ for m in msgs] == ["Submit", "Submit", "Hello", "Query", "Ping"]
    assert [len(m.tasks) for m in msgs[:2]] == [SUBMIT_BATCH, 5]
    s = welcomed(max_payload=10_000)
    for _ in range(10):
        submit(s, args=("y" * 3000,))
    sizes = [len(m.tasks) for m in sent(s, 0.5) if isinstance(m, p.Submit)]
    assert sizes == [3, 3, 3, 1]  # each message stays under the payload limit


def test_outcomes_settle_handles():
    s = welcomed()
    ok, bad, gone = submit(s), submit(s), submit(s)
    s.on_message(p.Accepted([ok.id, bad.id, gone.id], "one"), 0)
    s.on_message(p.Outcomes([p.Outcome(ok.id, "succeeded", msgspec.msgpack.encode(7)),
                             p.Outcome(bad.id, "failed", None, "E: no", "tb"),
                             p.Outcome(gone.id, "unknown")]), 0)
    assert ok._value() == 7
    with pytest.raises(TaskFailed) as err:
        bad._value()
    assert err.value.traceback == "tb"
    with pytest.raises(TaskNotFound):
        gone._value()
    assert not s.handles and not s.unacked


def test_a_restarted_broker_fails_acked_tasks_and_resends_unacked_ones():
    s = welcomed("one")
    acked, unacked = submit(s), submit(s)
    sent(s)
    s.on_message(p.Accepted([acked.id], "one"), 0)
    _, slot = s.request(lambda req: p.GetStats(req))
    # the new broker answers a ping: it is a different instance
    s.on_message(p.Pong("two"), 1)
    with pytest.raises(BrokerUnavailable, match="restarted"):
        acked._value()
    assert isinstance(slot.error, BrokerUnavailable)
    assert not unacked.done
    resent = [m for m in sent(s, 2) if isinstance(m, p.Submit)]
    assert [t.id for t in resent[0].tasks] == [unacked.id]


def test_a_silent_broker_fails_waits_after_the_limit():
    s = welcomed()
    h = submit(s)
    s.check_silence(10)
    assert not h.done
    s.check_silence(31)
    with pytest.raises(BrokerUnavailable, match="no answer"):
        h._value()


def test_public_api_is_pinned():
    import actorq

    assert sorted(actorq.__all__) == sorted([
        "ActorqError", "AsyncChainHandle", "AsyncClient", "AsyncGroupHandle", "AsyncTaskHandle",
        "BrokerUnavailable", "ChainHandle", "Client", "ConfigError", "GroupHandle",
        "RequestRejected", "ResultTimeout", "SubmitRejected", "TaskCancelled", "TaskError", "TaskExpired",
        "TaskFailed", "TaskHandle", "TaskInfo", "TaskNotFound", "TaskState", "progress", "task",
        "__version__"])
    assert issubclass(actorq.ResultTimeout, TimeoutError)
    assert issubclass(actorq.BrokerUnavailable, ConnectionError)
    assert issubclass(actorq.TaskNotFound, KeyError)
    for name in actorq.__all__:
        obj = getattr(actorq, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, actorq.ActorqError)


def test_task_defaults_apply_unless_the_submit_overrides_them():
    from actorq import task

    @task(queue="reports", priority=7)
    def report():
        return None

    s = welcomed()
    by_function = s.build(report, (), None, {})
    assert by_function.name == report.actorq_name
    assert (by_function.queue, by_function.priority) == ("reports", 7)
    overridden = s.build(report.actorq_name, (), None, {"queue": "urgent", "priority": 0})
    assert (overridden.queue, overridden.priority) == ("urgent", 0)
    unknown_here = s.build("elsewhere:f", (), None, {})
    assert (unknown_here.queue, unknown_here.priority) == ("default", 0)


def test_a_request_the_wire_cannot_carry_fails_its_caller_and_nothing_else():
    # A 2**70 from a hostile HTTP body once wedged the gateway's client: every later
    # send failed at encode. It is now refused where it is made.
    s = Session("tcp://127.0.0.1:1")
    with pytest.raises(RequestRejected, match="cannot be encoded"):
        s.request(lambda req: p.Scale(req, "default", 2**70, 0))
    s.request(lambda req: p.GetStats(req))
    sent = [msgspec.msgpack.decode(m, type=p.ClientToBroker) for m in s.take_messages(0.0)]
    assert p.GetStats(2) in sent and not any(isinstance(m, p.Scale) for m in sent)
