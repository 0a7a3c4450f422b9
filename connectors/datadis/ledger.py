"""The persistent query ledger, answer cache and checkpoints (SQLite under the state dir).

Datadis refuses the same query repeated within 24 h with HTTP 429, and a failed call counts
too. So every query is written down *before* it is sent (a process killed mid-call still
remembers it asked), its answer is kept (empty answers too: "no data yet" is an answer), and a
query asked less than 24 h ago is answered from here or deferred to a later run, never sent.

Checkpoints record which (CUPS, measurement type, month) were published, and are written only
after Kafka acknowledged every reading of that month.

Imports record the files ``ioe datadis import`` published, by SHA-256 of their content (a member
sends the same download twice, renamed, or a folder is imported again): the same content is
skipped unless ``--force``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DAY_S = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    key TEXT PRIMARY KEY,
    asked_at REAL NOT NULL,
    status TEXT NOT NULL,          -- pending | ok | failed
    body TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS months (
    cups TEXT NOT NULL,
    measurement_type INTEGER NOT NULL,
    month TEXT NOT NULL,           -- YYYY-MM
    rows INTEGER NOT NULL,
    last_ts_ms INTEGER,
    query_at REAL NOT NULL,        -- asked_at of the answer that was published
    published_at REAL NOT NULL,
    PRIMARY KEY (cups, measurement_type, month)
);
CREATE TABLE IF NOT EXISTS imports (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,            -- file name when it was imported
    readings INTEGER NOT NULL,
    imported_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class QueryRecord:
    key: str
    asked_at: float
    status: str
    body: str | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class MonthCheckpoint:
    cups: str
    measurement_type: int
    month: str
    rows: int
    last_ts_ms: int | None
    query_at: float
    published_at: float


@dataclass(frozen=True)
class ImportRecord:
    sha256: str
    name: str
    readings: int
    imported_at: float


class Ledger:
    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "datadis.sqlite"
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- queries ------------------------------------------------------------------------
    def query(self, key: str) -> QueryRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT key, asked_at, status, body, error, attempts FROM queries WHERE key=?",
                (key,)).fetchone()
        return QueryRecord(*row) if row else None

    def fresh(self, key: str) -> QueryRecord | None:
        """The record of ``key`` when it was asked less than 24 h ago (so must not be re-sent)."""
        record = self.query(key)
        if record is None or self.clock() - record.asked_at >= DAY_S:
            return None
        return record

    def begin(self, key: str, *, retry: bool = False) -> None:
        """Write the query down before sending it: a kill mid-call must not forget it."""
        with self._lock:
            if retry:
                self._db.execute("UPDATE queries SET status='pending', attempts=attempts+1 "
                                 "WHERE key=?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO queries(key, asked_at, status, attempts) VALUES(?,?,'pending',1) "
                    "ON CONFLICT(key) DO UPDATE SET asked_at=excluded.asked_at, "
                    "status='pending', body=NULL, error=NULL, attempts=1",
                    (key, self.clock()))

    def succeed(self, key: str, body: str) -> None:
        with self._lock:
            self._db.execute("UPDATE queries SET status='ok', body=?, error=NULL WHERE key=?",
                             (body, key))

    def fail(self, key: str, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE queries SET status='failed', error=? WHERE key=?",
                             (error, key))

    # -- checkpoints --------------------------------------------------------------------
    def month(self, cups: str, measurement_type: int, month: str) -> MonthCheckpoint | None:
        with self._lock:
            row = self._db.execute(
                "SELECT cups, measurement_type, month, rows, last_ts_ms, query_at, published_at "
                "FROM months WHERE cups=? AND measurement_type=? AND month=?",
                (cups, measurement_type, month)).fetchone()
        return MonthCheckpoint(*row) if row else None

    def months(self, cups: str, measurement_type: int) -> list[MonthCheckpoint]:
        with self._lock:
            rows = self._db.execute(
                "SELECT cups, measurement_type, month, rows, last_ts_ms, query_at, published_at "
                "FROM months WHERE cups=? AND measurement_type=? ORDER BY month",
                (cups, measurement_type)).fetchall()
        return [MonthCheckpoint(*r) for r in rows]

    def last_ts_ms(self, cups: str, measurement_type: int) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT max(last_ts_ms) FROM months WHERE cups=? AND measurement_type=?",
                (cups, measurement_type)).fetchone()
        return row[0] if row and row[0] is not None else None

    def checkpoint(self, cups: str, measurement_type: int, month: str, *, rows: int,
                   last_ts_ms: int | None, query_at: float) -> None:
        """Record a published month; call only after Kafka acknowledged all its readings."""
        with self._lock:
            self._db.execute(
                "INSERT INTO months(cups, measurement_type, month, rows, last_ts_ms, query_at, "
                "published_at) VALUES(?,?,?,?,?,?,?) ON CONFLICT(cups, measurement_type, month) "
                "DO UPDATE SET rows=excluded.rows, last_ts_ms=max(coalesce(last_ts_ms, 0), "
                "coalesce(excluded.last_ts_ms, 0)), query_at=excluded.query_at, "
                "published_at=excluded.published_at",
                (cups, measurement_type, month, rows, last_ts_ms, query_at, self.clock()))

    # -- imported files -----------------------------------------------------------------
    def imported(self, sha256: str) -> ImportRecord | None:
        with self._lock:
            row = self._db.execute("SELECT sha256, name, readings, imported_at FROM imports "
                                   "WHERE sha256=?", (sha256,)).fetchone()
        return ImportRecord(*row) if row else None

    def remember_import(self, sha256: str, name: str, readings: int) -> None:
        """Record a file published without problems (call after Kafka acknowledged it)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO imports(sha256, name, readings, imported_at) VALUES(?,?,?,?) "
                "ON CONFLICT(sha256) DO UPDATE SET name=excluded.name, "
                "readings=excluded.readings, imported_at=excluded.imported_at",
                (sha256, name, readings, self.clock()))
