import msgspec
import pytest

from actorq.wire import protocol as p


def test_every_client_message_round_trips():
    dec = p.decoder(p.ClientToBroker)
    spec = p.TaskSpec("id1", "m:f", b"\x92\x90\x80", "q", 3)
    for msg in [p.Hello(version=1, role="client"), p.Submit([spec]), p.Watch(["a"]),
                p.Query(1, ["a"]), p.Cancel(2, ["a"]), p.GetStats(3), p.Ping()]:
        assert dec.decode(p.encode(msg)) == msg


def test_every_worker_message_round_trips():
    dec = p.decoder(p.WorkerToBroker)
    for msg in [p.Report([p.Result("a", 1, True, b"\xc0", duration_s=0.5)]), p.Heartbeat(),
                p.Release(["a", "b"]), p.Goodbye(["a"]), p.WorkerExited("w", -9, True),
                p.PoolFailed("why"),
                p.Hello(version=1, role="worker", pool="x", queues=["q"], credit=4)]:
        assert dec.decode(p.encode(msg)) == msg


def test_a_welcome_from_a_broker_that_predates_release_means_no_release():
    # An older broker's Welcome has no takes_release field; a newer one's extra field
    # is ignored by an older worker (msgspec skips unknown fields).
    old = msgspec.msgpack.encode({"type": "Welcome", "version": 1, "instance": "i",
                                  "max_payload_bytes": 10, "heartbeat_interval_s": 1.0})
    assert not p.decoder(p.BrokerToWorker).decode(old).takes_release


def test_a_message_for_another_actor_fails_at_decode():
    with pytest.raises(msgspec.ValidationError):
        p.decoder(p.ClientToBroker).decode(p.encode(p.Report([])))


@pytest.mark.parametrize("junk", [b"", b"\xff\xfe", b"not msgpack", p.encode({"type": "Nope"})])
def test_junk_is_a_decode_error(junk):
    with pytest.raises(msgspec.DecodeError):
        p.decoder(p.ClientToBroker).decode(junk)


def test_batched_values_encode_as_arrays():
    # Array-like values are the bulk of every batch: no field names on the wire.
    data = p.encode(p.TaskSpec("id", "m:f", b"", "default", 0))
    assert b"name" not in data and b"queue" not in data
