"""Leadership of a shared PostgreSQL store: one broker leads, the others wait.

The lease is one row of `actorq_leader`: the epoch, the holder's name and when the
lease expires. Expiry is the server's clock (`clock_timestamp()`), so the brokers'
clocks never have to agree. A standby takes the lease only once it has expired, and a takeover
adds one to the epoch. The leader renews it every `lease_s / 4` from a thread of
its own, on a connection of its own, so a long load or a big commit never lets it
lapse; and every commit of the leader renews it in the same transaction, on the
condition that the epoch is still its own (storage/postgres.py). A deposed leader
that wakes up (paused, partitioned) therefore can neither commit nor acknowledge:
the row lock orders its commit against the takeover, and the loser finds out.
The check comes last in the transaction, so the leader row is locked only for the
moment before COMMIT; and a leader paused inside a transaction (holding locks a new
leader would wait on) loses its session to `idle_in_transaction_session_timeout`,
set to the lease. A leader cut off in the middle of a commit is not idle but gone,
and the server only finds out after TCP's minutes: the broker that takes over ends
every session of a holder whose lease lapsed (they carry its name, `session_name`).

A leader that has not renewed for `lease_s` on its own clock stops serving: by
then a standby may lead, and clients should find that one (wire/leader.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from actorq.storage.sqlite import StorageError

log = logging.getLogger(__name__)

TABLE = ("CREATE TABLE IF NOT EXISTS actorq_leader (id INT PRIMARY KEY CHECK (id = 1), "
         "epoch BIGINT NOT NULL, holder TEXT NOT NULL, expires TIMESTAMPTZ NOT NULL)")
_FIRST = ("INSERT INTO actorq_leader VALUES (1, 1, %s, clock_timestamp() + make_interval(secs => %s)) "
          "ON CONFLICT (id) DO NOTHING RETURNING epoch")
_TAKE = ("WITH old AS (SELECT holder FROM actorq_leader WHERE id = 1) "
         "UPDATE actorq_leader SET epoch = epoch + 1, holder = %s, "
         "expires = clock_timestamp() + make_interval(secs => %s) WHERE id = 1 AND expires < clock_timestamp() "
         "RETURNING epoch, (SELECT holder FROM old)")
# The fence: a renewal that also says the lease is still this epoch's.
RENEW = ("UPDATE actorq_leader SET expires = clock_timestamp() + make_interval(secs => %s) "
         "WHERE id = 1 AND epoch = %s RETURNING 1")
_RELEASE = ("UPDATE actorq_leader SET expires = clock_timestamp() WHERE id = 1 "
            "AND epoch = %s")
_WHO = ("SELECT epoch, holder, EXTRACT(EPOCH FROM expires - clock_timestamp()) "
        "FROM actorq_leader WHERE id = 1")
_LAPSED = "SELECT holder FROM actorq_leader WHERE id = 1 AND expires < clock_timestamp()"
_END_SESSIONS = ("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND application_name = %s "
                 "AND pid <> pg_backend_pid()")
POLL_S = 0.1  # how often a standby looks whether the lease has expired
# How long a take waits for the leader row's lock: a live leader holds it for the
# moment before its COMMIT; one cut off mid-commit holds it until its session ends.
TAKE_LOCK_WAIT_MS = 100


class Deposed(StorageError):
    """Another broker took the lease: this one must stop without acknowledging more."""


def holder_name() -> str:
    """This broker's name as a holder of the lease: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def session_name(holder: str) -> str:
    """The application_name of a holder's sessions, by which a broker that takes over
    ends them (PostgreSQL keeps the first 63 bytes)."""
    return f"actorq broker {holder}"[:63]


def connect(url: str, lease_s: float, holder: str | None = None):
    """A connection that gives up on a silent server (a partition) within about a
    lease, instead of TCP's minutes, so a cut-off leader's threads do not hang.
    Named after its `holder`, it shows as such in pg_stat_activity."""
    import psycopg

    timeout_ms = max(1000, int(lease_s * 2000))
    named = {} if holder is None else {"application_name": session_name(holder)}
    return psycopg.connect(url, autocommit=True, connect_timeout=max(2, int(lease_s * 4)),
                           keepalives=1, keepalives_idle=1, keepalives_interval=1,
                           keepalives_count=max(2, int(lease_s * 2)),
                           tcp_user_timeout=timeout_ms, **named)


class Lease:
    """This broker's claim on the store's leadership, and the thread that keeps it."""

    def __init__(self, url: str, name: str, lease_s: float, path: str) -> None:
        """A claim on the lease of the store at `url`, whose schema (PostgresStore)
        holds actorq_leader. It connects when it first needs to, and again after a
        failure: a database out of reach makes this broker wait, never exit."""
        self.url, self.name, self.lease_s, self.path = url, name, lease_s, path
        self.epoch = 0
        self.renewed_at = 0.0  # monotonic start of the last renewal that held
        self.deposed = False
        self.fd, self._poke = os.pipe()  # readable once deposed: the loop wakes for it
        os.set_blocking(self.fd, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db = None
        self._cannot_end: str | None = None  # why ending others' sessions failed, said once

    @property
    def db(self):
        if self._db is None:
            self._db = connect(self.url, self.lease_s, self.name)
        return self._db

    def holder(self) -> tuple[int, str, float] | None:
        """(epoch, holder, seconds left) of the lease as the database has it."""
        row = self.db.execute(_WHO).fetchone()
        return None if row is None else (int(row[0]), row[1], float(row[2]))

    def try_take(self) -> bool:
        """Take the lease if nobody holds it or it has expired; True if taken. A
        database that cannot be reached is logged, and the answer is no."""
        import psycopg

        started = time.monotonic()
        try:
            with self.db.transaction():
                self.db.execute(f"SET LOCAL lock_timeout = {TAKE_LOCK_WAIT_MS}")
                row = self.db.execute(_FIRST, (self.name, self.lease_s)).fetchone()
                if row is None:
                    row = self.db.execute(_TAKE, (self.name, self.lease_s)).fetchone()
        except psycopg.errors.LockNotAvailable:
            # Waiting longer would count against our own lease once taken. A holder
            # whose lease lapsed while it held the row is ended; the next poll takes.
            self._end_if_lapsed()
            return False
        except psycopg.Error as exc:
            log.warning("standby: %s: %s; trying again", self.path, exc)
            self._reconnect()
            return False
        if row is None:
            return False
        self.epoch = int(row[0])
        self.renewed_at = started
        if len(row) > 1 and row[1] is not None:
            self._end_sessions(row[1])
        return True

    def _end_if_lapsed(self) -> None:
        import psycopg

        try:
            lapsed = self.db.execute(_LAPSED).fetchone()
        except psycopg.Error:
            return  # the next try_take says what is wrong
        if lapsed is not None:
            self._end_sessions(lapsed[0])

    def _end_sessions(self, holder: str) -> None:
        """End every session of a holder whose lease lapsed. One cut off in the middle
        of a commit keeps its locks (the rows it wrote, the leader row) until the
        server notices it is gone, which TCP takes minutes for; and a session waiting
        for COPY data is not idle, so idle_in_transaction_session_timeout misses it."""
        import psycopg

        try:
            ended = self.db.execute(_END_SESSIONS, (session_name(holder),)).fetchone()[0]
        except psycopg.Error as exc:  # a role that may not end others' sessions
            if self._cannot_end is None:
                self._cannot_end = str(exc)
                log.warning("%s: cannot end the sessions of %s, whose lease lapsed (%s); "
                            "their locks last until the server drops them", self.path,
                            holder, str(exc).strip())
            return
        if ended:
            log.info("ended %d session(s) of %s, whose lease lapsed", ended, holder)

    def wait(self, stopping) -> bool:
        """Wait as a standby until the lease is ours (True) or `stopping()` (False)."""
        import psycopg

        said = None
        while not stopping():
            if self.try_take():
                return True
            try:
                who = self.holder()
            except psycopg.Error:
                who = None  # try_take says what is wrong
            if who is not None and who[:2] != said:
                said = who[:2]
                log.info("standby: %s leads (epoch %d); waiting for its lease to lapse",
                         who[1], who[0])
            time.sleep(POLL_S)
        return False

    def keep(self) -> None:
        """Renew the lease every lease_s / 4 from now on, on a thread of its own."""
        self._thread = threading.Thread(target=self._keep, name="actorq-lease", daemon=True)
        self._thread.start()

    def valid(self, now: float) -> bool:
        """Whether this broker may still serve: renewed within a lease, not deposed."""
        return not self.deposed and now - self.renewed_at < self.lease_s

    def _keep(self) -> None:
        # Renew at once: the take may have waited on the network for part of a lease.
        while self._renew():
            if self._stop.wait(self.lease_s / 4):
                return

    def _renew(self) -> bool:
        """Renew the lease once; False once deposed."""
        import psycopg

        started = time.monotonic()
        try:
            held = self.db.execute(RENEW, (self.lease_s, self.epoch)).fetchone()
        except psycopg.Error as exc:
            log.warning("leader: cannot renew the lease: %s", exc)
            self._reconnect()
            return True
        if held is None:
            self.deposed = True
            os.write(self._poke, b"x")
            return False
        self.renewed_at = max(self.renewed_at, started)
        return True

    def _reconnect(self) -> None:
        """Drop a connection that failed: the next use connects afresh."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def close(self, release: bool = False) -> None:
        """Stop renewing; with `release`, end the lease now so that a standby takes
        over at once (a leader stopping in order) instead of after it lapses."""
        if self._stop.is_set():
            return  # closed already
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.lease_s)
        try:
            if release and not self.deposed and self._db is not None:
                self._db.execute(_RELEASE, (self.epoch,))
        except Exception:  # noqa: BLE001 (a connection cut off mid-call; it lapses anyway)
            pass
        self._reconnect()
        if self._thread is None or not self._thread.is_alive():  # else it may still poke
            os.close(self.fd)
            os.close(self._poke)
