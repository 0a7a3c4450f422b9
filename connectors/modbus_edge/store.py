"""The durable queue of store-and-forward: SQLite in WAL mode on the edge's own disk.

Every reading is committed here *before* anything is sent, and deleted only after Kafka has
acknowledged it, so a crash, a SIGKILL or a power cut at any moment loses nothing that was
polled and committed (at worst a message is sent twice; downstream dedups by
``(device_id, ts_ms)``). Rows keep the exact bytes that will be sent: a replayed reading is
byte-for-byte the original. The disk budget bounds the queue after days offline: the oldest
rows are dropped first, and counted, because the newest data is the most useful when the
uplink returns.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: per-row bookkeeping on top of key + value (rowid, topic, b-tree), for the budget estimate
ROW_OVERHEAD = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key   BLOB,
    value BLOB NOT NULL,
    size  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    seq: int
    topic: str
    key: bytes | None
    value: bytes


class Outbox:
    """A FIFO of (topic, key, value) rows with a byte budget; safe to share between threads."""

    def __init__(self, path: str | Path, *, budget_bytes: int = 200 * 1024 * 1024,
                 synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])

    # -- producer side -------------------------------------------------------------------
    def put_many(self, items: Sequence[tuple[str, bytes | None, bytes]]) -> int:
        """Append rows in one transaction; returns how many old rows the budget dropped."""
        if not items:
            return 0
        rows = [(t, k, v, len(v) + len(k or b"") + ROW_OVERHEAD) for t, k, v in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox(topic, key, value, size) VALUES (?, ?, ?, ?)", rows)
                self._count += len(rows)
                self._bytes += sum(r[3] for r in rows)
                dropped = self._enforce_budget()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload()
                raise
        return dropped

    def _enforce_budget(self) -> int:
        dropped = 0
        while self._bytes > self.budget_bytes and self._count > 1:
            excess = self._bytes - self.budget_bytes
            victims = self._db.execute(
                "SELECT seq, size FROM outbox ORDER BY seq LIMIT ?",
                (max(1, min(self._count - 1, excess // ROW_OVERHEAD + 1)),)).fetchall()
            freed, last = 0, None
            for seq, size in victims:
                if freed >= excess:
                    break
                freed += size
                last = seq
                dropped += 1
            if last is None:
                break
            removed = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (last,)).rowcount
            self._count -= removed
            self._bytes -= freed
        if dropped:
            self._db.execute(
                "INSERT INTO meta(name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (dropped,))
        return dropped

    def _reload(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])

    # -- consumer side -------------------------------------------------------------------
    def peek(self, limit: int) -> list[Row]:
        """The oldest rows, in the order they were polled."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value FROM outbox ORDER BY seq LIMIT ?",
                (limit,)).fetchall()
        return [Row(int(s), str(t), bytes(k) if k is not None else None, bytes(v))
                for s, t, k, v in rows]

    def delete(self, seqs: Sequence[int]) -> None:
        """Forget rows Kafka acknowledged."""
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                total = 0
                removed = 0
                for chunk in range(0, len(seqs), 500):
                    part = list(seqs[chunk:chunk + 500])
                    marks = ",".join("?" * len(part))
                    size = self._db.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox "
                        f"WHERE seq IN ({marks})", part).fetchone()
                    self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", part)
                    removed += int(size[0])
                    total += int(size[1])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= removed
            self._bytes -= total

    # -- state -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def dropped_total(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'dropped'").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
