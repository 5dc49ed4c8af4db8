"""The SQLite store: group commit, recovery into BrokerState, and databases it must refuse."""

import sqlite3

import pytest

from actorq import protocol as p
from actorq.state import BrokerState
from actorq.storage import Journal, SqliteStore, StorageError

C, W = b"c", b"w"


def durable_state(path, now=0.0):
    store = SqliteStore(str(path))
    s = BrokerState(now=now, instance="x")
    rows, crons = store.load()
    s.recover(rows, crons, now)
    s.journal = Journal()
    return store, s


def commit(store, s):
    store.commit(s.journal, s.scheduled)
    s.journal = Journal()


def test_every_state_comes_back_as_it_was(tmp_path):
    db = tmp_path / "a.db"
    store, s = durable_state(db)
    s.on_worker(W, p.Hello(version=1, role="worker", queues=["default"], credit=1), 0)
    s.on_client(C, p.Submit([
        p.TaskSpec("t1", "m:f", b"\x01"), p.TaskSpec("t2", "m:f", b"\x02"),
        p.TaskSpec("t3", "m:f", b"\x03", opts=p.Options(not_before=50.0, key="k")),
        p.TaskSpec("t4", "m:f", b"\x04", opts=p.Options(depends_on=["t3"]))]), 0)
    s.dispatch(0)  # t1 runs
    commit(store, s)
    s.on_client(C, p.Submit([p.TaskSpec("t5", "m:f", b"\x05")]), 1)
    s.on_client(C, p.Cancel(1, ["t5"]), 1)
    commit(store, s)
    store.close()
    # A new broker on the same file
    store, r = durable_state(db, now=10.0)
    assert r.tasks["t1"].state == "queued" and r.tasks["t1"].attempts == 1  # was running
    assert r.tasks["t2"].state == "queued" and r.queued == 2
    assert r.scheduled == {"t3": 50.0} and r.keys == {"k": "t3"}
    assert r.tasks["t4"].state == "pending" and r.waiting == {"t4": 1}
    assert r.tasks["t5"].state == "cancelled"
    assert r.tasks["t1"].payload == b"\x01"
    store.close()


def test_purged_tasks_are_deleted(tmp_path):
    store, s = durable_state(tmp_path / "b.db")
    s.result_ttl_s = 1.0
    s.on_client(C, p.Submit([p.TaskSpec("t1", "m:f", b"")]), 0)
    s.on_client(C, p.Cancel(1, ["t1"]), 0)
    commit(store, s)
    s.tick(5.0)
    commit(store, s)
    assert store.load()[0] == []
    store.close()


def test_a_second_broker_a_corrupt_file_and_a_newer_schema_are_refused(tmp_path):
    db = tmp_path / "c.db"
    first = SqliteStore(str(db))
    with pytest.raises(StorageError, match="locked by another broker"):
        SqliteStore(str(db))
    first.close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="schema version 99 is newer"):
        SqliteStore(str(db))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match="not a usable database"):
        SqliteStore(str(junk))
    assert junk.read_bytes() == b"this is not a database" * 100  # never replaced
