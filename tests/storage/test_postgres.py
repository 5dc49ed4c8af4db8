"""The PostgreSQL store: the same rows, group commit and recovery as SQLite, on a
server of the test's own (Debian's postgresql, started on a free port)."""

from __future__ import annotations

import socket
import uuid

import pytest

from actorq.broker.committer import Committer
from actorq.storage.journal import Journal, prepare
from actorq.storage.postgres import PostgresStore, redacted
from actorq.storage.sqlite import StorageError
from actorq.wire import protocol as p
from tests.storage.stores import (
    C,
    cancel_a_new_task,
    check_every_state,
    recovered,
    submit_every_state,
)


@pytest.fixture
def url(pg) -> str:
    return pg.create_database(f"t{uuid.uuid4().hex[:12]}")


def durable_state(url: str, now: float = 0.0):
    return recovered(PostgresStore(url), now)


def test_every_state_comes_back_as_it_was(url):
    store, s = durable_state(url)
    submit_every_state(s)
    s.journal_leases()
    s.journal_leases()
    committer = Committer(store)  # as the broker writes: on the committer's thread
    committer.start(prepare(s.take_journal(), s.scheduled))
    committer.wait()
    cancel_a_new_task(s)
    store.commit(s.journal, s.scheduled)
    committer.close()
    store.close()
    store, r = durable_state(url, now=10.0)
    check_every_state(r)  # as SQLite gives it back
    store.close()


def test_a_new_task_whose_row_exists_after_all_is_upserted_not_lost(url):
    # New tasks are COPYed straight into the table; should one have a row already
    # (the journal says it cannot), the batch is upserted instead of failing.
    store, s = durable_state(url)
    s.on_client(C, p.Submit([p.TaskSpec("t1", "m:f", b"\x01")]), 0)
    batch = prepare(s.take_journal(), s.scheduled)
    assert len(batch.fresh) == 3 and not batch.rows
    store.write(batch)
    s.tasks["t1"].state = p.TaskState.CANCELLED
    store.write(prepare(Journal(fresh={"t1": s.tasks["t1"]}), s.scheduled))
    store.close()
    store, r = durable_state(url, now=10.0)
    assert r.tasks["t1"].state == "cancelled"
    store.close()


def test_errors_never_show_the_password():
    assert redacted("postgresql://u:s3cret@h:5432/d") == "postgresql://u:***@h:5432/d"
    with socket.socket() as s:  # a free port: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StorageError) as err:
        PostgresStore(f"postgresql://u:s3cret@127.0.0.1:{port}/d")
    assert "s3cret" not in str(err.value)



def test_a_version_1_database_is_migrated(url):
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE actorq_tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
                   "rec BYTEA NOT NULL)")
        db.execute("CREATE TABLE actorq_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO actorq_meta VALUES ('schema_version', '1')")
    PostgresStore(url).close()
    with psycopg.connect(url) as db:
        assert db.execute("SELECT collation_name FROM information_schema.columns WHERE "
                          "table_name = 'actorq_tasks' AND column_name = 'id'").fetchone() == ("C",)
        assert db.execute("SELECT value FROM actorq_meta").fetchone() == ("2",)
        assert db.execute("SELECT count(*) FROM actorq_leader").fetchone() == (0,)
