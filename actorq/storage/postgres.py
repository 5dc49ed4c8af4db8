"""The PostgreSQL store: `[storage] url = "postgresql://..."`, beside SQLite's `path`.

The same interface as SqliteStore (load, write, commit, close) and the same rows:
`(id, state, rec)` with the record of storage/journal.py, so group commit and
recovery work exactly as with SQLite. One broker per database leads at a time: the
others wait as standbys (storage/leadership.py), and every commit of the leader
checks in its own transaction that it still leads (the fence). Schema versions live
in `actorq_meta`; tables are prefixed `actorq_` so the database may hold other things.

psycopg 3 (the maintained PostgreSQL adapter; its pipeline mode sends a batch's
statements without a round trip each) is imported only by a broker that uses it.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit, urlunsplit

from actorq.storage import leadership
from actorq.storage.journal import Batch, Journal, StoredTask, prepare
from actorq.storage.sqlite import StorageError, _decode_cron, _decode_record
from actorq.wire import protocol as p

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: actorq_leader (the leadership lease), ids in the "C" collation
_META = "CREATE TABLE IF NOT EXISTS actorq_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SCHEMA = [
    leadership.TABLE,
    # Ids compare byte by byte ("C"): they are ASCII, sorted by time, and a locale's
    # collation made every primary-key comparison a strcoll call.
    "CREATE TABLE IF NOT EXISTS actorq_tasks (id TEXT COLLATE \"C\" PRIMARY KEY, "
    "state TEXT NOT NULL, rec BYTEA NOT NULL)",
    # (schema version 1 made the id column with the database's collation)
    "DO $$ BEGIN IF (SELECT collation_name FROM information_schema.columns WHERE "
    "table_name = 'actorq_tasks' AND column_name = 'id' AND table_schema = current_schema()) "
    "IS DISTINCT FROM 'C' THEN ALTER TABLE actorq_tasks ALTER COLUMN id TYPE TEXT "
    "COLLATE \"C\"; END IF; END $$",
    # Room in each page for a task's next version: its update stays on the page and
    # adds no index entry (a HOT update), 7.3 -> 6.2 us a row measured.
    "ALTER TABLE actorq_tasks SET (fillfactor = 70)",
    "CREATE TABLE IF NOT EXISTS actorq_crons (name TEXT PRIMARY KEY, entry BYTEA NOT NULL)",
]
# A batch's rows go through COPY into a temporary table, then one statement upserts
# them all: an INSERT per row cost a round of the adapter and of the server each.
_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS actorq_batch (id TEXT, state TEXT, rec BYTEA) "
          "ON COMMIT DELETE ROWS")
_COPY = "COPY actorq_batch (id, state, rec) FROM STDIN (FORMAT BINARY)"
# Tasks submitted since the last commit have no row yet: they go straight in, at
# less than half the cost of the staging table (2.2 against 5.0 us a row).
_COPY_FRESH = "COPY actorq_tasks (id, state, rec) FROM STDIN (FORMAT BINARY)"
_MERGE = ("INSERT INTO actorq_tasks (id, state, rec) SELECT id, state, rec FROM actorq_batch "
          "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, rec = EXCLUDED.rec")


class Unreachable(StorageError):
    """The database did not answer (it may yet)."""


def redacted(url: str) -> str:
    """The url without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore:
    def __init__(self, url: str, synchronous: str = "full", lease_s: float = 1.0,
                 holder: str | None = None) -> None:
        """`holder`: the name this broker leads by (leadership.holder_name), which its
        session carries."""
        import psycopg

        self.path = redacted(url)  # what logs and errors name, as SqliteStore's path
        self.url = url
        # The lease this broker leads by, once it does: every commit renews it on the
        # condition that its epoch is still this broker's (see leadership.py).
        self.fence: leadership.Lease | None = None
        self.holder = holder or leadership.holder_name()
        try:
            self.db = leadership.connect(url, lease_s, self.holder)
        except psycopg.Error as exc:
            raise Unreachable(f"{self.path}: cannot connect: {exc}") from None
        db = self.db
        # A leader paused inside a transaction must not keep the locks a new leader
        # would wait on for longer than its lease (leadership.py).
        db.execute(f"SET idle_in_transaction_session_timeout = {max(1000, int(lease_s * 1000))}")
        if synchronous == "normal":  # as SQLite's NORMAL: no wait for the WAL flush
            db.execute("SET synchronous_commit = off")
        with db.transaction():
            db.execute(_META)
            row = db.execute("SELECT value FROM actorq_meta WHERE key = 'schema_version'"
                             ).fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:  # before changing anything
                raise StorageError(f"{self.path}: schema version {row[0]} is newer than this "
                                   f"actorq understands ({SCHEMA_VERSION}); upgrade actorq")
            # Older versions lack tables and settings the statements bring.
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT INTO actorq_meta VALUES ('schema_version', %s) ON CONFLICT "
                       "(key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))

    def load(self) -> tuple[list[StoredTask], list[p.CronEntry]]:
        """Every stored task, in id (= creation) order, and the cron table."""
        decode = _decode_record
        cursor = self.db.execute("SELECT id, state, rec FROM actorq_tasks ORDER BY id")
        rows = [(tid, state, decode(rec)) for tid, state, rec in cursor]
        crons = [_decode_cron(r[0]) for r in self.db.execute("SELECT entry FROM actorq_crons")]
        return rows, crons

    def commit(self, journal: Journal, scheduled: dict[str, float]) -> None:
        """Write one turn's changes in one transaction."""
        self.write(prepare(journal, scheduled))

    def write(self, batch: Batch) -> None:
        """Commit a prepared batch in one transaction (on the Committer's thread)."""
        import psycopg

        db = self.db
        rows = batch.rows
        fence = self.fence
        try:
            with db.transaction(), db.cursor() as cur:
                if batch.fresh and not self._insert_fresh(cur, batch.fresh):
                    rows = rows + batch.fresh  # one was there after all: upsert them
                if rows:
                    cur.execute(_STAGE)
                    _copy(cur, _COPY, rows)
                    cur.execute(_MERGE)
                if batch.deleted:
                    cur.execute("DELETE FROM actorq_tasks WHERE id = ANY(%s)",
                                (batch.deleted,))
                if batch.crons is not None:
                    cur.execute("DELETE FROM actorq_crons")
                    cur.executemany("INSERT INTO actorq_crons VALUES (%s, %s)", batch.crons)
                if fence is not None:  # last: the leader row is locked until COMMIT
                    started = time.monotonic()
                    cur.execute(leadership.RENEW, (fence.lease_s, fence.epoch))
                    if cur.fetchone() is None:
                        raise leadership.Deposed(f"{self.path}: epoch {fence.epoch} was taken "
                                                 "over by another broker")
        except psycopg.Error as exc:
            raise StorageError(f"{self.path}: commit failed: {exc}") from exc
        if fence is not None:
            fence.renewed_at = max(fence.renewed_at, started)

    def _insert_fresh(self, cur, rows: list) -> bool:
        """COPY never-written rows into the table; False (and nothing written) if one
        had a row already, which the journal says cannot be: the caller upserts them."""
        import psycopg

        try:
            with self.db.transaction():  # a savepoint: a conflict undoes only this
                _copy(cur, _COPY_FRESH, rows)
        except psycopg.errors.UniqueViolation as exc:
            log.warning("%s: a new task's row existed already (%s); upserting instead",
                        self.path, exc.diag.message_detail)
            return False
        return True

    def close(self) -> None:
        self.db.close()


def _copy(cur, statement: str, rows: list) -> None:
    """COPY flat (id, state, rec) triples in binary."""
    with cur.copy(statement) as copy:
        copy.set_types(["text", "text", "bytea"])
        write = copy.write_row
        for i in range(0, len(rows), 3):
            write((rows[i], rows[i + 1], rows[i + 2]))
