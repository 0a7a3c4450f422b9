"""ClickHouse queries of the dashboards (blocking; the app runs them in a thread pool).

Every query reads with ``FINAL`` (the sink tables are ReplacingMergeTree(version): a replayed or
re-versioned row must count once) and compares times as epoch seconds (``toDateTime(n)``),
so the server's own timezone never shifts a bound. A client per call: clickhouse-driver
clients are not thread-safe and a local connection is cheap next to the query.
"""

from __future__ import annotations

from typing import Any

import orjson

from dashboards.history import HourRow
from ioe.clickhouse import client
from ioe.settings import Settings

_BALANCE_COLUMNS = ("toUInt32(interval_start), coefficient, generation_wh, consumption_wh, "
                    "assigned_wh, self_consumed_wh, surplus_wh, import_wh, source, complete")


class Store:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.clickhouse_database

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        ch = client(self.settings, database=self.db)
        try:
            return ch.execute(sql, params)  # type: ignore[no-any-return]
        finally:
            ch.disconnect()

    def member_hours(self, community_id: str, member_id: str, start: int,
                     end: int) -> list[HourRow]:
        rows = self._query(
            f"SELECT {_BALANCE_COLUMNS} FROM {self.db}.balances FINAL "
            "WHERE community_id = %(c)s AND member_id = %(m)s AND interval_s = 3600 "
            "AND interval_start >= toDateTime(%(a)s) AND interval_start < toDateTime(%(b)s) "
            "ORDER BY interval_start",
            {"c": community_id, "m": member_id, "a": int(start), "b": int(end)})
        return [HourRow(ts=int(r[0]), coefficient=float(r[1]), generation_wh=float(r[2]),
                        consumption_wh=float(r[3]), assigned_wh=float(r[4]),
                        self_consumed_wh=float(r[5]), surplus_wh=float(r[6]),
                        import_wh=float(r[7]), source=str(r[8]), complete=bool(r[9]))
                for r in rows]

    def member_cups(self, community_id: str, member_id: str, start: int, end: int) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT cups FROM {self.db}.balances FINAL WHERE community_id = %(c)s "
            "AND member_id = %(m)s AND interval_s = 3600 "
            "AND interval_start >= toDateTime(%(a)s) AND interval_start < toDateTime(%(b)s)",
            {"c": community_id, "m": member_id, "a": int(start), "b": int(end)})
        return [str(r[0]) for r in rows]

    def community_hours(self, community_id: str, start: int, end: int
                        ) -> list[tuple[int, float, float, float, float, float, float]]:
        """Per hour: (ts, G, ΣC, ΣA, ΣSC, ΣS, ΣI); G is the same on every member's row."""
        rows = self._query(
            "SELECT toUInt32(interval_start) AS t, max(generation_wh), sum(consumption_wh), "
            "sum(assigned_wh), sum(self_consumed_wh), sum(surplus_wh), sum(import_wh) "
            f"FROM {self.db}.balances FINAL WHERE community_id = %(c)s AND interval_s = 3600 "
            "AND interval_start >= toDateTime(%(a)s) AND interval_start < toDateTime(%(b)s) "
            "GROUP BY t ORDER BY t",
            {"c": community_id, "a": int(start), "b": int(end)})
        return [(int(r[0]), *(float(v) for v in r[1:])) for r in rows]  # type: ignore[misc]

    def last_readings(self, community_id: str, since: int) -> dict[str, tuple[int, float | None]]:
        """device_id → (last ts_ms, its power_w) among readings since ``since`` (epoch s)."""
        rows = self._query(
            "SELECT device_id, max(ts_ms), argMax(power_w, ts_ms) "
            f"FROM {self.db}.readings WHERE community_id = %(c)s "
            "AND ts >= toDateTime(%(a)s) GROUP BY device_id",
            {"c": community_id, "a": int(since)})
        return {str(r[0]): (int(r[1]), None if r[2] is None else float(r[2])) for r in rows}

    def alarms(self, community_id: str, since: int, member_id: str | None = None,
               limit: int = 200) -> list[dict[str, Any]]:
        """Open alarms and those opened since ``since`` (epoch s), newest first."""
        member_filter = "AND member_id = %(m)s " if member_id is not None else ""
        rows = self._query(
            "SELECT alarm_id, device_id, member_id, kind, severity, state, "
            "toUInt32(opened_at), toUInt32(closed_at), evidence, toUInt32(updated_at) "
            f"FROM {self.db}.anomalies FINAL WHERE community_id = %(c)s {member_filter}"
            "AND (state = 'open' OR opened_at >= toDateTime(%(a)s)) "
            "ORDER BY opened_at DESC LIMIT %(n)s",
            {"c": community_id, "m": member_id or "", "a": int(since), "n": int(limit)})
        return [{"alarm_id": r[0], "community_id": community_id, "device_id": r[1],
                 "member_id": r[2] or None, "kind": r[3], "severity": r[4], "state": r[5],
                 "opened_at_ms": int(r[6]) * 1000,
                 "closed_at_ms": None if r[7] is None else int(r[7]) * 1000,
                 "evidence": _evidence(r[8]), "updated_at_ms": int(r[9]) * 1000} for r in rows]


def _evidence(raw: str) -> Any:
    """The alarm's evidence object (stored as JSON text); the raw text if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
