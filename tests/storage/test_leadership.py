"""Leadership of a shared PostgreSQL store (storage/leadership.py): one lease, an
epoch that grows with every takeover, and commits fenced by it."""

from __future__ import annotations

import time
import uuid

import pytest

from actorq.storage.journal import Batch
from actorq.storage.leadership import RENEW, Deposed, Lease, session_name
from actorq.storage.postgres import PostgresStore
from actorq.testing import wait_until

LEASE_S = 0.4


@pytest.fixture
def url(pg) -> str:
    url = pg.create_database(f"l{uuid.uuid4().hex[:12]}")
    PostgresStore(url).close()  # the schema, actorq_leader with it, as a broker makes it
    return url


@pytest.fixture
def leases(url):
    made: list[Lease] = []

    def make(name: str) -> Lease:
        lease = Lease(url, name, LEASE_S, "db")
        made.append(lease)
        return lease

    yield make
    for lease in made:
        lease.close()


def lapse(lease: Lease) -> None:
    """Wait until the database has the lease expired (nobody renews it)."""
    wait_until(lambda: lease.holder()[2] < 0, 10 * LEASE_S, message="the lease lapsed")


def one_row(tid: str) -> Batch:
    return Batch(rows=[tid, "queued", b"x"], deleted=[], crons=None)


def test_one_broker_leads_and_a_standby_takes_over_only_after_the_lease_lapses(leases):
    a, b = leases("a"), leases("b")
    assert a.try_take() and a.epoch == 1
    assert not b.try_take()
    assert b.holder()[:2] == (1, "a")
    lapse(b)  # a never renewed
    assert b.try_take() and b.epoch == 2
    assert not a.try_take()


def test_a_kept_lease_is_never_taken_over(leases):
    a, b = leases("a"), leases("b")
    assert a.try_take()
    a.keep()
    deadline = time.monotonic() + 3 * LEASE_S
    while time.monotonic() < deadline:
        assert not b.try_take()
        assert a.valid(time.monotonic())
        time.sleep(0.05)


def test_a_deposed_leader_can_neither_commit_nor_keep_serving(url, leases):
    old_store = PostgresStore(url, lease_s=LEASE_S)
    old = leases("old")
    assert old.try_take()
    old_store.fence = old
    old_store.write(one_row("t1"))  # committed while it leads
    lapse(old)  # paused past its lease
    new = leases("new")
    assert new.try_take() and new.epoch == 2
    with pytest.raises(Deposed, match="epoch 1"):
        old_store.write(one_row("t2"))
    assert not old.valid(time.monotonic())
    new_store = PostgresStore(url, lease_s=LEASE_S)
    new_store.fence = new
    new_store.write(one_row("t3"))
    rows = new_store.db.execute("SELECT id FROM actorq_tasks ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["t1", "t3"]  # the deposed leader's commit is not there
    old_store.close()
    new_store.close()


def test_the_keeper_notices_a_takeover(leases):
    a = leases("a")
    assert a.try_take()
    a.keep()
    # Force a takeover the way a standby would find the lease after a pause.
    a.db.execute("UPDATE actorq_leader SET expires = now() - interval '1 second'")
    b = leases("b")
    assert b.try_take()
    deadline = time.monotonic() + 5 * LEASE_S
    while not a.deposed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a.deposed and not a.valid(time.monotonic())


def test_a_database_out_of_reach_is_a_no_not_an_error(pg):
    import socket

    with socket.socket() as s:  # a free port: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lease = Lease(f"postgresql://postgres@127.0.0.1:{port}/x", "a", LEASE_S, "db")
    assert not lease.try_take()
    lease.close()


def test_a_leader_stopping_in_order_hands_over_at_once(leases):
    a, b = leases("a"), leases("b")
    assert a.try_take()
    a.close(release=True)
    assert b.try_take() and b.epoch == 2


def test_a_standby_ends_the_sessions_of_a_leader_gone_in_the_middle_of_a_commit(url, leases):
    """A leader cut off between its fence and its COMMIT keeps the leader row locked
    until the server notices, which TCP takes minutes for. The standby must neither
    wait on that lock (the wait would eat its own lease) nor wait for the server."""
    import psycopg

    a, b = leases("a"), leases("b")
    assert a.try_take()
    # a's commit transaction, fenced, and never committed: its host went silent.
    stuck = psycopg.connect(url, application_name=session_name("a"))
    stuck.execute(RENEW, (LEASE_S, 1))
    started = time.monotonic()
    assert not b.try_take()
    assert time.monotonic() - started < LEASE_S  # it did not wait for the lock
    assert not stuck.closed and stuck.execute("SELECT 1").fetchone() == (1,)  # a still leads
    lapse(a)
    deadline = time.monotonic() + 10 * LEASE_S
    assert b.wait(lambda: time.monotonic() > deadline)
    assert b.epoch == 2 and b.valid(time.monotonic())
    with pytest.raises(psycopg.OperationalError):
        stuck.execute("SELECT 1")  # ended by b
    stuck.close()


def test_a_lock_held_by_a_session_not_of_the_holder_is_waited_out_not_ended(url, leases):
    import psycopg

    a, b = leases("a"), leases("b")
    assert a.try_take()
    other = psycopg.connect(url, application_name="someone else")
    other.execute("SELECT 1 FROM actorq_leader WHERE id = 1 FOR UPDATE")
    lapse(a)  # the row still locked by another
    assert not b.try_take()
    assert other.execute("SELECT 1").fetchone() == (1,)  # not ended
    other.rollback()
    other.close()
    assert b.try_take() and b.epoch == 2


def test_a_standby_whose_role_may_not_end_the_sessions_says_so_and_waits(url, leases, caplog):
    """Ending another role's superuser sessions is refused: the standby logs it once,
    takes nothing while the row stays locked, and takes over once it is free."""
    import psycopg

    role = f"r{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE ON actorq_leader TO {role}")
    a = leases("a")
    assert a.try_take()
    stuck = psycopg.connect(url, application_name=session_name("a"))  # a superuser's
    stuck.execute(RENEW, (LEASE_S, 1))
    b = Lease(url.replace("postgresql://postgres@", f"postgresql://{role}@"), "b", LEASE_S,
              "db")
    try:
        lapse(a)
        with caplog.at_level("WARNING", logger="actorq.storage.leadership"):
            assert not b.try_take()
            assert not b.try_take()
        said = [r for r in caplog.records if "cannot end the sessions of a" in r.getMessage()]
        assert len(said) == 1, caplog.text
        assert stuck.execute("SELECT 1").fetchone() == (1,)  # still there
        stuck.rollback()
        assert b.try_take() and b.epoch == 2
    finally:
        stuck.close()
        b.close()
