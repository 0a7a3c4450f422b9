"""ClickHouse queries of the dashboards (blocking; the app runs them in a thread pool).

Column lists come from the message definitions (``ioe.messages.BALANCE_COLUMNS``,
``ALARM_COLUMNS``), and alarms come back as :class:`ioe.messages.Alarm` messages. Every query reads
with ``FINAL`` (the sink tables are ReplacingMergeTree(version): a replayed or
re-versioned row must count once) and compares times as epoch seconds (``toDateTime(n)``),
so the server's own timezone never shifts a bound. A client per call: clickhouse-driver
clients are not thread-safe and a local connection is cheap next to the query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from dashboards.history import HourRow
from ioe.clickhouse import client
from ioe.messages import ALARM_COLUMNS, BALANCE_COLUMNS, Alarm, Column
from ioe.settings import Settings


def _is_time(column: Column) -> bool:
    """A ``DateTime`` column (UTC seconds) holding an epoch-ms field of the message."""
    return column.field.endswith("_ms") and column.name != column.field


def _select(columns: tuple[Column, ...]) -> str:
    """The SELECT list of ``columns``: times as epoch seconds (no server timezone involved)."""
    return ", ".join(f"toUInt32({c.name})" if _is_time(c) else c.name for c in columns)


def _ms(value: Any) -> int | None:
    return None if value is None else int(value) * 1000


#: the message field of each column back from its ClickHouse value (the inverse of the
#: conversions in ``ioe.messages``; fields not listed come back as they are)
_FROM_CLICKHOUSE: dict[str, Callable[[Any], Any]] = {
    "evidence": lambda raw: _evidence(raw), "member_id": lambda v: v or None,
    "complete": bool, "severity": str, "state": str, "source": str,
}


def _fields(columns: tuple[Column, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """A ClickHouse row selected with :func:`_select` as the message's field values."""
    out = {}
    for column, value in zip(columns, row, strict=True):
        convert = _ms if _is_time(column) else _FROM_CLICKHOUSE.get(column.field, _same)
        out[column.field] = convert(value)
    return out


def _same(value: Any) -> Any:
    return value


#: the hourly history: interval start and energies, named after the ``Balance`` fields
_HOUR_FIELDS = ("interval_start_ms", "coefficient", "generation_wh", "consumption_wh",
                "assigned_wh", "self_consumed_wh", "surplus_wh", "import_wh", "source",
                "complete")
_HOUR_COLUMNS = tuple(c for f in _HOUR_FIELDS for c in BALANCE_COLUMNS if c.field == f)


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
            f"SELECT {_select(_HOUR_COLUMNS)} FROM {self.db}.balances FINAL "
            "WHERE community_id = %(c)s AND member_id = %(m)s AND interval_s = 3600 "
            "AND interval_start >= toDateTime(%(a)s) AND interval_start < toDateTime(%(b)s) "
            "ORDER BY interval_start",
            {"c": community_id, "m": member_id, "a": int(start), "b": int(end)})
        hours = []
        for r in rows:
            f = _fields(_HOUR_COLUMNS, r)
            hours.append(HourRow(
                ts=int(f["interval_start_ms"]) // 1000, coefficient=float(f["coefficient"]),
                generation_wh=float(f["generation_wh"]),
                consumption_wh=float(f["consumption_wh"]), assigned_wh=float(f["assigned_wh"]),
                self_consumed_wh=float(f["self_consumed_wh"]),
                surplus_wh=float(f["surplus_wh"]), import_wh=float(f["import_wh"]),
                source=f["source"], complete=f["complete"]))
        return hours

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

    def member_sources(self, community_id: str, start: int, end: int
                       ) -> list[tuple[str, str, int, float, int]]:
        """Per member and balance source (``meter`` | ``datadis``) of the hours in
        [start, end): (member_id, source, hours, consumption Wh, incomplete hours)."""
        rows = self._query(
            "SELECT member_id, source, count(), sum(consumption_wh), countIf(complete = 0) "
            f"FROM {self.db}.balances FINAL WHERE community_id = %(c)s AND interval_s = 3600 "
            "AND interval_start >= toDateTime(%(a)s) AND interval_start < toDateTime(%(b)s) "
            "GROUP BY member_id, source ORDER BY member_id, source",
            {"c": community_id, "a": int(start), "b": int(end)})
        return [(str(r[0]), str(r[1]), int(r[2]), float(r[3]), int(r[4])) for r in rows]

    def alarm_counts(self, community_id: str, kind: str, start: int, end: int
                     ) -> dict[str, int]:
        """member_id → alarms of ``kind`` opened in [start, end)."""
        rows = self._query(
            f"SELECT member_id, count() FROM {self.db}.anomalies FINAL "
            "WHERE community_id = %(c)s AND kind = %(k)s "
            "AND opened_at >= toDateTime(%(a)s) AND opened_at < toDateTime(%(b)s) "
            "GROUP BY member_id",
            {"c": community_id, "k": kind, "a": int(start), "b": int(end)})
        return {str(r[0]): int(r[1]) for r in rows}

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
        """Open alarms and those opened since ``since`` (epoch s), newest first, as their
        ``ioe.anomalies`` messages (``Alarm.to_message()``: the same object the websocket
        carries in its alarm updates)."""
        member_filter = "AND member_id = %(m)s " if member_id is not None else ""
        rows = self._query(
            f"SELECT {_select(ALARM_COLUMNS)} "
            f"FROM {self.db}.anomalies FINAL WHERE community_id = %(c)s {member_filter}"
            "AND (state = 'open' OR opened_at >= toDateTime(%(a)s)) "
            "ORDER BY opened_at DESC LIMIT %(n)s",
            {"c": community_id, "m": member_id or "", "a": int(since), "n": int(limit)})
        return [Alarm(**_fields(ALARM_COLUMNS, r)).to_message() for r in rows]

    def alarm(self, community_id: str, alarm_id: str) -> Alarm | None:
        """The latest state of one alarm of the community (None if it has none there)."""
        rows = self._query(
            f"SELECT {_select(ALARM_COLUMNS)} FROM {self.db}.anomalies FINAL "
            "WHERE community_id = %(c)s AND alarm_id = %(a)s "
            "ORDER BY updated_at DESC, version DESC LIMIT 1",
            {"c": community_id, "a": alarm_id})
        return Alarm(**_fields(ALARM_COLUMNS, rows[0])) if rows else None


def _evidence(raw: str) -> dict[str, Any]:
    """The alarm's evidence object (stored as JSON text); kept as ``{"raw": text}`` when the
    text is not a JSON object, so an odd row is still shown."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"raw": value}
