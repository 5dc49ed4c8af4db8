"""Where the broker keeps its state: in memory (the default) or in SQLite.

The broker's logic (state.py) never talks to a store. When a store is durable,
the state notes which tasks changed in a `Journal` as it goes; once per loop turn
the broker hands that journal to `Store.commit`, one transaction for everything
the turn did, and only then sends the acknowledgements and results that turn
produced (group commit). `Store.load` gives back what was committed, for recovery.

SQLite runs in WAL mode with `synchronous` FULL (default) or NORMAL, and holds an
exclusive lock for the broker's lifetime, so a second broker on the same file
stops with a clear error instead of corrupting it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from . import protocol as p

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# version -> SQL taking a database from that version to the next. Empty while there
# is only version 1; a schema change adds its step here and bumps SCHEMA_VERSION.
MIGRATIONS: dict[int, str] = {}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, name TEXT NOT NULL, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, payload BLOB NOT NULL, submitted_at REAL NOT NULL,
    attempts INTEGER NOT NULL, opts BLOB, due REAL, started_at REAL, finished_at REAL,
    value BLOB, error TEXT, traceback TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS crons (name TEXT PRIMARY KEY, entry BLOB NOT NULL);
"""

_UPSERT = ("INSERT OR REPLACE INTO tasks (id, state, name, queue, priority, payload, "
           "submitted_at, attempts, opts, due, started_at, finished_at, value, error, "
           "traceback) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")

_encode = msgspec.msgpack.Encoder().encode
_decode_opts = msgspec.msgpack.Decoder(p.Options).decode
_decode_cron = msgspec.msgpack.Decoder(p.CronEntry).decode


class StorageError(Exception):
    """The database cannot be used: corrupt, locked by another broker, or too new."""


@dataclass
class Journal:
    """What changed since the last commit: tasks by id (latest version wins),
    ids to delete, and whether the cron table changed."""

    changed: dict[str, Any] = field(default_factory=dict)  # id -> Task
    deleted: set[str] = field(default_factory=set)
    crons: dict[str, p.CronEntry] | None = None

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted or self.crons is not None)


@dataclass
class Row:
    """A task as stored."""

    id: str
    state: str
    name: str
    queue: str
    priority: int
    payload: bytes
    submitted_at: float
    attempts: int
    opts: p.Options | None
    due: float | None
    started_at: float
    finished_at: float
    value: bytes | None
    error: str | None
    traceback: str | None


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
            log.warning("migrating %s from schema version %d", self.path, version)
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
            version += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    # ---- recovery --------------------------------------------------------------------

    def load(self) -> tuple[list[Row], list[p.CronEntry]]:
        """Every stored task, in id (= creation) order, and the cron table."""
        rows = []
        for r in self.db.execute("SELECT * FROM tasks ORDER BY id"):
            rows.append(Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                            _decode_opts(r[8]) if r[8] is not None else None, r[9],
                            r[10] or 0.0, r[11] or 0.0, r[12], r[13], r[14]))
        crons = [_decode_cron(r[0]) for r in self.db.execute("SELECT entry FROM crons")]
        return rows, crons

    # ---- group commit ----------------------------------------------------------------

    def commit(self, journal: Journal, scheduled: dict[str, float]) -> None:
        """Write one turn's changes in one transaction."""
        rows = []
        for t in journal.changed.values():
            o = t.opts
            rows.append((t.id, t.state, t.name, t.queue, t.priority, t.payload, t.submitted_at,
                         t.attempts, _encode(o) if o is not None else None,
                         scheduled.get(t.id), t.started_at, t.finished_at, t.value, t.error,
                         t.traceback))
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                db.executemany(_UPSERT, rows)
            if journal.deleted:
                db.executemany("DELETE FROM tasks WHERE id = ?", [(i,) for i in journal.deleted])
            if journal.crons is not None:
                db.execute("DELETE FROM crons")
                db.executemany("INSERT INTO crons VALUES (?, ?)",
                               [(n, _encode(e)) for n, e in journal.crons.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


def open_store(path: str, synchronous: str) -> SqliteStore:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, synchronous)
