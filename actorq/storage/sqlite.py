"""The SQLite store: the embedded default for `[storage] path = "..."`.

`SqliteStore.write` runs a prepared Batch (storage/journal.py) in one transaction
on the Committer's thread; `SqliteStore.load` gives back what was committed, for
recovery.

SQLite runs in WAL mode with `synchronous` FULL (default) or NORMAL, and holds an
exclusive lock for the broker's lifetime, so a second broker on the same file
stops with a clear error instead of corrupting it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from actorq.storage.journal import Batch, Journal, Record, StoredTask, _encode, prepare
from actorq.wire import protocol as p

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# Version 2 keeps each task as one msgpack record beside its id and state: binding
# fifteen columns per row cost more than SQLite's own work (7.3 us a row against
# 3.7 us, measured on the development machine), and each task is written three
# times. `state` stays a column so that an operator can still ask
# `SELECT state, count(*) FROM tasks GROUP BY state`.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, rec BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS crons (name TEXT PRIMARY KEY, entry BLOB NOT NULL);
"""

_UPSERT = "INSERT OR REPLACE INTO tasks (id, state, rec) VALUES (?, ?, ?)"

# A commit writes its rows with statements of many rows each: executemany's per-row
# round through the sqlite3 module cost more than SQLite's own work (4.0-5.3 us a row
# against 2.4-3.2 with 128-row statements, measured on the development machine).
# Sizes are powers of two so that a batch of any length takes at most eight distinct
# statements, all of them staying in the connection's statement cache.
_CHUNKS = (128, 64, 32, 16, 8, 4, 2, 1)
_UPSERT_N = {n: "INSERT OR REPLACE INTO tasks (id, state, rec) VALUES "
                + ",".join(["(?,?,?)"] * n) for n in _CHUNKS}
_DELETE_N = {n: "DELETE FROM tasks WHERE id IN (" + ",".join(["?"] * n) + ")" for n in _CHUNKS}


def _write_chunked(db: sqlite3.Connection, statements: dict[int, str], params: list,
                   width: int) -> None:
    """Run `statements[n]` over flat `params` (`width` values a row), n rows at a time."""
    rows, at = len(params) // width, 0
    for n in _CHUNKS:
        step = n * width
        while rows >= n:
            db.execute(statements[n], params[at:at + step])
            at += step
            rows -= n


_decode_record = msgspec.msgpack.Decoder(Record).decode
_decode_opts = msgspec.msgpack.Decoder(p.Options).decode
_decode_cron = msgspec.msgpack.Decoder(p.CronEntry).decode


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Version 1 had a column per field; fold them into the record."""
    db.execute("ALTER TABLE tasks RENAME TO tasks_v1")
    db.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, "
               "rec BLOB NOT NULL) WITHOUT ROWID")
    rows = db.execute("SELECT id, state, name, queue, priority, payload, submitted_at, "
                      "attempts, opts, due, started_at, finished_at, value, error, traceback "
                      "FROM tasks_v1")
    while batch := rows.fetchmany(10_000):
        db.executemany(_UPSERT, [
            (r[0], r[1], _encode(Record(
                r[2], r[3], r[4], r[5], r[6], r[7],
                _decode_opts(r[8]) if r[8] is not None else None, r[9], r[10] or 0.0,
                r[11] or 0.0, r[12], r[13], r[14])))
            for r in batch])
    db.execute("DROP TABLE tasks_v1")


# version -> the step taking a database from that version to the next, run inside
# the transaction that opens the store. A schema change adds its step here and bumps
# SCHEMA_VERSION; a database is never rebuilt from scratch.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}


class StorageError(Exception):
    """The database cannot be used: corrupt, locked by another broker, or too new."""


class DiskFull(StorageError):
    """A commit found no room on the disk: it wrote nothing, and may be tried again."""


class SqliteStore:
    def __init__(self, path: str, synchronous: str = "full") -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                      timeout=0.5)
            db = self.db
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"{path}: cannot switch to WAL mode (got {mode})")
            db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StorageError(f"{path}: database is corrupt: {check}")
            # The first write takes the exclusive lock, kept for the broker's lifetime
            # (locking_mode EXCLUSIVE): a second broker on this file fails right here.
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            self._migrate()
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StorageError(f"{path}: locked by another broker ({exc})") from None
            raise StorageError(f"{path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: not a usable database: {exc}") from None

    def _migrate(self) -> None:
        db = self.db
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        if version > SCHEMA_VERSION:
            raise StorageError(f"{self.path}: schema version {version} is newer than this "
                               f"actorq understands ({SCHEMA_VERSION}); upgrade actorq")
        while version < SCHEMA_VERSION:
            log.warning("migrating %s from schema version %d to %d", self.path, version,
                        version + 1)
            MIGRATIONS[version](db)
            version += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    # ---- recovery --------------------------------------------------------------------

    def load(self) -> tuple[list[StoredTask], list[p.CronEntry]]:
        """Every stored task, in id (= creation) order, and the cron table."""
        decode = _decode_record
        cursor = self.db.execute("SELECT id, state, rec FROM tasks ORDER BY id")
        rows = [(tid, state, decode(rec)) for tid, state, rec in cursor]
        crons = [_decode_cron(r[0]) for r in self.db.execute("SELECT entry FROM crons")]
        return rows, crons

    # ---- group commit ----------------------------------------------------------------

    def commit(self, journal: Journal, scheduled: dict[str, float]) -> None:
        """Write one turn's changes in one transaction."""
        self.write(prepare(journal, scheduled))

    def write(self, batch: Batch) -> None:
        """Commit a prepared batch. Safe on another thread than the one that prepared it
        (the broker's Committer does so): it touches no broker state."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            _write_chunked(db, _UPSERT_N, batch.rows, 3)
            _write_chunked(db, _UPSERT_N, batch.fresh, 3)
            _write_chunked(db, _DELETE_N, batch.deleted, 1)
            if batch.crons is not None:
                db.execute("DELETE FROM crons")
                db.executemany("INSERT INTO crons VALUES (?, ?)", batch.crons)
            db.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls back by itself on some errors (a full disk among them): a
            # ROLLBACK then would fail and hide the error that matters.
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                raise DiskFull(f"{self.path}: {exc}") from exc
            raise

    def close(self) -> None:
        self.db.close()


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "disk is full" in str(exc))


class Store(Protocol):
    """What the broker needs of a store: SqliteStore, or postgres.PostgresStore."""

    path: str

    def load(self) -> tuple[list[StoredTask], list[p.CronEntry]]: ...
    def write(self, batch: Batch) -> None: ...
    def commit(self, journal: Journal, scheduled: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def open_store(path: str, synchronous: str, url: str = "", lease_s: float = 1.0) -> Store:
    """SQLite at `path`, or PostgreSQL at `url` ([storage] names one of them)."""
    if url:
        from actorq.storage.postgres import PostgresStore

        return PostgresStore(url, synchronous, lease_s)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, synchronous)
