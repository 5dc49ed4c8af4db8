"""The SQLite store: group commit, recovery into BrokerState, and databases it must refuse."""

import sqlite3

import msgspec
import pytest

from actorq.broker.committer import Committer
from actorq.storage.journal import Journal, prepare
from actorq.storage.sqlite import DiskFull, SqliteStore, StorageError
from actorq.wire import protocol as p
from tests.storage.stores import (
    C,
    W,
    cancel_a_new_task,
    check_every_state,
    recovered,
    submit_every_state,
)


def durable_state(path, now=0.0):
    return recovered(SqliteStore(str(path)), now)


def commit(store, s):
    """What the broker's next two commits write: leases are journaled one commit late."""
    s.journal_leases()
    s.journal_leases()
    store.commit(s.journal, s.scheduled)
    s.journal = Journal()


def test_every_state_comes_back_as_it_was(tmp_path):
    db = tmp_path / "a.db"
    store, s = durable_state(db)
    submit_every_state(s)
    commit(store, s)
    cancel_a_new_task(s)
    commit(store, s)
    store.close()
    # A new broker on the same file
    store, r = durable_state(db, now=10.0)
    check_every_state(r)
    assert r.tasks["t1"].payload == b"\x01"
    r.tick(10.0 + r.claim_window_s - 0.01)
    assert r.tasks["t1"].state == "running"  # its worker may be reconnecting still
    # nobody claimed it: at the next heartbeat it runs again, its attempt counted
    r.tick(10.0 + r.claim_window_s + r.heartbeat_interval_s)
    assert r.tasks["t1"].state == "queued" and r.tasks["t1"].attempts == 1 and r.queued == 2
    store.close()


def recovered_with_leases(tmp_path):
    """A durable broker that leased t1 and t2 (t2's lease not yet committed), then died."""
    db = tmp_path / "leases.db"
    store, s = durable_state(db)
    s.on_worker(W, p.Hello(version=1, role="worker", queues=["default"], credit=2), 0)
    s.on_client(C, p.Submit([p.TaskSpec("t1", "m:f", b""), p.TaskSpec("t2", "m:f", b""),
                             p.TaskSpec("t3", "m:f", b"")]), 0)
    commit(store, s)
    s.dispatch(0)
    leases = {lease.id: lease.token for lease in s.take_outbox().dispatch[W]}
    # only t1's lease reaches the disk before the crash
    s.journal_leases()
    s.journal_leases()
    s.journal.changed = {"t1": s.journal.changed["t1"]}
    commit(store, s)
    store.close()
    store, r = durable_state(db, now=10.0)
    return store, r, leases


def test_a_worker_that_kept_running_claims_its_tasks_after_a_restart(tmp_path):
    store, r, leases = recovered_with_leases(tmp_path)
    assert r.tasks["t1"].state == "running" and r.tasks["t2"].state == "queued"
    holding = [p.Holding(tid, token) for tid, token in leases.items()]
    r.on_worker(W, p.Hello(version=1, role="worker", queues=["default"], credit=0,
                           holding=holding), 10.0)
    for tid in ("t1", "t2"):
        assert r.tasks[tid].state == "running" and r.tasks[tid].worker == W
        assert r.tasks[tid].attempts == 1
    assert r.unclaimed == {} and r.queued == 1  # only t3 waits
    later = 10.0 + r.claim_window_s + 0.5
    r.on_worker(W, p.Heartbeat(), later)
    r.tick(later)
    assert r.tasks["t1"].state == "running"  # claimed: not queued again
    r.on_worker(W, p.Report([p.Result("t1", leases["t1"], True, b"\xc0", None, None, 0.0),
                             p.Result("t2", leases["t2"], True, b"\xc0", None, None, 0.0)]),
                later)
    assert r.tasks["t1"].state == "succeeded" and r.tasks["t2"].state == "succeeded"
    assert r.stale_results_total == 0
    store.close()


def test_a_result_sent_before_the_worker_registers_again_still_counts(tmp_path):
    store, r, leases = recovered_with_leases(tmp_path)
    r.on_worker(W, p.Report([p.Result("t1", leases["t1"], True, b"\xc0", None, None, 0.0)]),
                10.0)
    assert r.tasks["t1"].state == "succeeded" and r.tasks["t1"].value == b"\xc0"
    r.tick(10.0 + r.claim_window_s)
    assert r.tasks["t1"].state == "succeeded" and r.queued == 2  # t2 and t3
    store.close()


@pytest.mark.parametrize("n", [1, 127, 128, 255, 300])
def test_batches_of_any_size_are_written_and_deleted_whole(tmp_path, n):
    """Rows go out in statements of 128, 64, ... 1 rows: no size may drop or repeat one."""
    store, s = durable_state(tmp_path / "n.db")
    s.on_client(C, p.Submit([p.TaskSpec(f"t{i:04d}", "m:f", b"\x01") for i in range(n)]), 0)
    batch = prepare(s.journal, s.scheduled)
    assert len(batch) == n
    store.write(batch)
    assert [tid for tid, _, _ in store.load()[0]] == [f"t{i:04d}" for i in range(n)]
    gone = [f"t{i:04d}" for i in range(0, n, 2)]
    s.journal = Journal(deleted=set(gone))
    store.write(prepare(s.journal, s.scheduled))
    assert [tid for tid, _, _ in store.load()[0]] == [f"t{i:04d}" for i in range(1, n, 2)]
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


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, name TEXT NOT NULL, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, payload BLOB NOT NULL, submitted_at REAL NOT NULL,
    attempts INTEGER NOT NULL, opts BLOB, due REAL, started_at REAL, finished_at REAL,
    value BLOB, error TEXT, traceback TEXT
) WITHOUT ROWID;
CREATE TABLE crons (name TEXT PRIMARY KEY, entry BLOB NOT NULL);
"""


def test_a_version_1_database_is_migrated_in_place(tmp_path):
    db = tmp_path / "v1.db"
    raw = sqlite3.connect(db)
    raw.executescript(V1_SCHEMA)
    opts = msgspec.msgpack.encode(p.Options(not_before=50.0, key="k"))
    raw.executemany("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [
        ("t1", "queued", "m:f", "default", 3, b"\x01", 1.0, 0, None, None, None, None,
         None, None, None),
        ("t2", "scheduled", "m:g", "q2", 0, b"\x02", 2.0, 1, opts, 50.0, 1.5, None, None,
         "E: once", "tb"),
        ("t3", "succeeded", "m:f", "default", 0, b"", 3.0, 1, None, None, 3.1, 3.2, b"\xc0",
         None, None)])
    raw.commit()
    raw.close()
    store, s = durable_state(db, now=10.0)
    version = store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == ("2",)
    assert s.tasks["t1"].state == "queued" and s.tasks["t1"].priority == 3 and s.queued == 1
    t2 = s.tasks["t2"]
    assert s.scheduled == {"t2": 50.0} and s.keys == {(None, "k"): "t2"} and t2.queue == "q2"
    assert t2.attempts == 1 and t2.error == "E: once" and t2.opts.key == "k"
    assert s.tasks["t3"].value == b"\xc0" and s.tasks["t3"].finished_at == 3.2
    store.close()
    assert [tid for tid, _, _ in SqliteStore(str(db)).load()[0]] == ["t1", "t2", "t3"]  # idempotent


def test_the_committer_writes_on_its_thread_and_reports_failure(tmp_path):
    store, s = durable_state(tmp_path / "d.db")
    committer = Committer(store)
    try:
        s.on_client(C, p.Submit([p.TaskSpec("t1", "m:f", b"\x01")]), 0)
        committer.start(prepare(s.journal, s.scheduled))
        committer.wait()
        assert not committer.busy and [tid for tid, _, _ in store.load()[0]] == ["t1"]
        bad = prepare(Journal(), {})
        bad.rows.extend(("t2", "queued", None))  # rec is NOT NULL: the transaction fails
        committer.start(bad)
        with pytest.raises(StorageError, match="commit failed"):
            committer.wait()
        assert [tid for tid, _, _ in store.load()[0]] == ["t1"]  # rolled back, nothing half-done
    finally:
        committer.close()
        store.close()


def test_a_lease_is_written_one_commit_late_unless_the_task_ended_first(tmp_path):
    store, s = durable_state(tmp_path / "late.db")
    s.on_worker(W, p.Hello(version=1, role="worker", queues=["default"], credit=2), 0)
    s.on_client(C, p.Submit([p.TaskSpec("t1", "m:f", b""), p.TaskSpec("t2", "m:f", b"")]), 0)
    s.dispatch(0)
    tokens = {lease.id: lease.token for lease in s.take_outbox().dispatch[W]}
    assert s.journal_leases()  # the first commit after the dispatch: not yet
    assert set(s.journal.fresh) == {"t1", "t2"} and all(
        t.state == "running" for t in s.journal.fresh.values())  # (their submission)
    store.commit(s.journal, s.scheduled)
    s.journal = Journal()
    s.on_worker(W, p.Report([p.Result("t1", tokens["t1"], True, b"\xc0", None, None, 0.0)]), 0)
    assert not s.journal_leases()  # the next: t2 still runs, so its lease is written now
    assert set(s.journal.changed) == {"t1", "t2"}
    store.commit(s.journal, s.scheduled)
    states = {tid: (state, r.attempts) for tid, state, r in store.load()[0]}
    assert states == {"t1": ("succeeded", 1), "t2": ("running", 1)}
    store.close()


def test_a_full_disk_is_named_and_its_batch_can_be_written_once_there_is_room(tmp_path):
    # Given a store that may not grow (SQLite's max_page_count: SQLITE_FULL, as a full
    # disk gives) and a batch bigger than its room
    store, s = durable_state(tmp_path / "full.db")
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
    s.on_client(C, p.Submit([p.TaskSpec(f"t{i}", "m:f", b"x" * 4000) for i in range(50)]), 0)
    s.journal_leases()
    batch = prepare(s.take_journal(), s.scheduled)
    # When it is written through the committer, the error says the disk is full (not
    # "cannot rollback"), and the batch is kept
    committer = Committer(store)
    committer.start(batch)
    with pytest.raises(DiskFull, match="full"):
        committer.wait()
    assert committer.stalled is batch and not committer.busy
    # Then once there is room, the same batch goes
    store.db.execute("PRAGMA max_page_count = 1000000")
    committer.retry()
    committer.wait()
    assert committer.stalled is None
    committer.close()
    store.close()
    store, r = durable_state(tmp_path / "full.db")
    assert len(r.tasks) == 50
    store.close()
