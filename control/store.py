"""The command log in ClickHouse: every command (sent, refused, dry-run) and every result.

Why the issuer stores its own commands: a refused or dry-run command never reaches the topic,
yet "who asked what, and why it was refused" is exactly what the log is for. Results are
stored by whoever receives them (``ioe control send``, ``ioe control run``); both tables are
``ReplacingMergeTree`` on the command id, so a row stored twice is one row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from control.commands import Issued
from ioe.clickhouse import client
from ioe.messages import (
    COMMAND_COLUMNS,
    COMMAND_RESULT_TABLE_COLUMNS,
    CommandResult,
    column_names,
    command_result_row,
    row,
)
from ioe.settings import Settings

COMMAND_TABLE_COLUMNS = (*column_names(COMMAND_COLUMNS), "status", "refusal", "issued_at",
                         "version")
RESULT_TABLE_COLUMNS = COMMAND_RESULT_TABLE_COLUMNS


def command_rows(issued: Iterable[Issued]) -> list[tuple[Any, ...]]:
    return [(*row(i.command, COMMAND_COLUMNS), i.status, i.refusal,
             i.command.issued_at_ms // 1000, i.command.issued_at_ms) for i in issued]


def result_rows(results: Iterable[CommandResult]) -> list[tuple[Any, ...]]:
    return [command_result_row(r) for r in results]


@dataclass(frozen=True)
class Hold:
    """A manual override in force on one point."""

    requested_by: str
    reason: str
    until_ms: int


class CommandLog:
    """Insert into and read the two tables of migration 0004."""

    def __init__(self, settings: Settings) -> None:
        self.db = settings.clickhouse_database
        self.ch = client(settings)

    def add_commands(self, issued: Iterable[Issued]) -> None:
        rows = command_rows(issued)
        if rows:
            self.ch.execute(f"INSERT INTO {self.db}.commands "
                            f"({', '.join(COMMAND_TABLE_COLUMNS)}) VALUES", rows)

    def add_results(self, results: Iterable[CommandResult]) -> None:
        rows = result_rows(results)
        if rows:
            self.ch.execute(f"INSERT INTO {self.db}.command_results "
                            f"({', '.join(RESULT_TABLE_COLUMNS)}) VALUES", rows)

    def manual_sent_ms(self, device_id: str, since_ms: int) -> list[int]:
        """Issue times of the manual (operator, member) commands for ``device_id`` that were
        sent since ``since_ms``: the history :class:`control.commands.RateLimit` counts. From
        the log, so every ``ioe control send`` process sees the others' commands."""
        rows = self.ch.execute(
            f"SELECT issued_at_ms FROM {self.db}.commands FINAL "
            "WHERE device_id = %(device)s AND status = 'sent' AND issued_at_ms >= %(since)s "
            "AND (startsWith(requested_by, 'operator:') OR startsWith(requested_by, "
            "'member:')) ORDER BY issued_at_ms", {"device": device_id, "since": int(since_ms)})
        return [int(r[0]) for r in rows]

    def manual_holds(self, community_id: str, now_ms: int) -> dict[tuple[str, str], Hold]:
        """The manual overrides in force in a community: (device, key) -> the latest manual
        command sent for it whose ``revert_s`` has not yet run out. While one holds a point,
        the rules on that point pause (an operator's override beats a rule until it ends)."""
        rows = self.ch.execute(
            f"SELECT device_id, key, argMax(requested_by, issued_at_ms), "
            f"argMax(reason, issued_at_ms), max(issued_at_ms + revert_s * 1000) "
            f"FROM {self.db}.commands FINAL "
            "WHERE community_id = %(community)s AND status = 'sent' AND revert_s > 0 "
            "AND (startsWith(requested_by, 'operator:') OR startsWith(requested_by, "
            "'member:')) AND issued_at_ms + revert_s * 1000 > %(now)s "
            "GROUP BY device_id, key", {"community": community_id, "now": int(now_ms)})
        return {(str(d), str(k)): Hold(str(who), str(why), int(until))
                for d, k, who, why, until in rows}

    def recent(self, community_id: str | None = None, device_id: str | None = None,
               limit: int = 20) -> list[dict[str, Any]]:
        """The last commands, newest first, each with its latest result (or none yet)."""
        where, params = [], {"limit": int(limit)}
        if community_id:
            where.append("community_id = %(community)s")
            params["community"] = community_id  # type: ignore[assignment]
        if device_id:
            where.append("device_id = %(device)s")
            params["device"] = device_id  # type: ignore[assignment]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"""
            SELECT command_id, community_id, device_id, key, value, requested_by, reason,
                   rule_id, dry_run, status, refusal, issued_at_ms, deadline, result_status,
                   readback, detail, executor, executed_at_ms, written, revert_s
            FROM (SELECT command_id, community_id, device_id, key, value, requested_by,
                         reason, rule_id, dry_run, status, refusal, issued_at_ms, deadline,
                         revert_s
                  FROM {self.db}.commands FINAL {clause}
                  ORDER BY issued_at_ms DESC LIMIT %(limit)s)
            ANY LEFT JOIN (SELECT command_id, status AS result_status, readback, detail,
                                  executor, executed_at_ms, written
                           FROM {self.db}.command_results FINAL)
            USING command_id
            ORDER BY issued_at_ms DESC"""
        names = ("command_id", "community_id", "device_id", "key", "value", "requested_by",
                 "reason", "rule_id", "dry_run", "status", "refusal", "issued_at_ms",
                 "deadline", "result", "readback", "detail", "executor", "executed_at_ms",
                 "written", "revert_s")
        return [dict(zip(names, r, strict=True)) for r in self.ch.execute(sql, params)]

    def close(self) -> None:
        self.ch.disconnect()
