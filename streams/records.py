"""Wire formats the worker produces, and the ClickHouse rows the sink writes.

Kept apart from the stream logic so the formats of ``docs/internal-conventions.md`` live in one
place: the live and balance builders, the table keys of the worker's state, and the mapping of
Kafka messages to ClickHouse rows (DateTime columns in UTC *seconds*: ClickHouse 18.16 has no
DateTime64, so the millisecond timestamps travel in their own UInt64 columns or in ``version``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ioe.reading import Reading

QUARTER_S = 900
HOUR_S = 3600
INTERVALS_S = (QUARTER_S, HOUR_S)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def rnd(value: float | None, digits: int = 3) -> float | None:
    """Round published numbers: float noise (1e-13 W) must not count as a change."""
    return None if value is None else round(float(value), digits)


# -- keys of the worker's tables (strings: readable in the changelog topics) ------------------
def slot_key(device_id: str, slot_start_ms: int) -> str:
    return f"{device_id}|{slot_start_ms}"


def official_key(device_id: str, interval_s: int, end_ms: int) -> str:
    return f"{device_id}|{interval_s}|{end_ms}"


def interval_key(community_id: str, interval_s: int, start_ms: int) -> str:
    return f"{community_id}|{interval_s}|{start_ms}"


def parse_interval_key(key: str) -> tuple[str, int, int]:
    cid, interval_s, start = key.rsplit("|", 2)
    return cid, int(interval_s), int(start)


# -- ClickHouse rows ------------------------------------------------------------------------
READING_COLUMNS = (
    "community_id", "device_id", "ts", "ts_ms", "source", "quality", "power_w", "energy_wh",
    "energy_returned_wh", "interval_s", "interval_energy_wh", "interval_energy_returned_wh",
    "voltage_v", "current_a", "frequency_hz", "power_factor", "status", "version",
)
BALANCE_COLUMNS = (
    "community_id", "member_id", "cups", "interval_start", "interval_s", "coefficient",
    "generation_wh", "consumption_wh", "assigned_wh", "self_consumed_wh", "surplus_wh",
    "import_wh", "source", "complete", "computed_at", "version",
)
ANOMALY_COLUMNS = (
    "alarm_id", "community_id", "device_id", "member_id", "kind", "severity", "state",
    "opened_at", "closed_at", "evidence", "updated_at", "version",
)


def reading_row(reading: Reading, community_id: str) -> tuple[Any, ...]:
    """A reading's row; ``version = ts_ms`` so a replayed reading replaces itself."""
    r = reading
    return (
        community_id, r.device_id, r.ts_ms // 1000, r.ts_ms, r.source, r.quality, r.power_w,
        r.energy_wh, r.energy_returned_wh, r.interval_s, r.interval_energy_wh,
        r.interval_energy_returned_wh, r.voltage_v, r.current_a, r.frequency_hz,
        r.power_factor, r.status, r.ts_ms,
    )


def balance_row(msg: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        msg["community_id"], msg["member_id"], msg.get("cups") or "",
        int(msg["interval_start_ms"]) // 1000, int(msg["interval_s"]),
        float(msg["coefficient"]), float(msg["generation_wh"]), float(msg["consumption_wh"]),
        float(msg["assigned_wh"]), float(msg["self_consumed_wh"]), float(msg["surplus_wh"]),
        float(msg["import_wh"]), str(msg["source"]), 1 if msg["complete"] else 0,
        int(msg["computed_at_ms"]) // 1000, int(msg["version"]),
    )


def anomaly_row(msg: Mapping[str, Any]) -> tuple[Any, ...]:
    closed = msg.get("closed_at_ms")
    return (
        str(msg["alarm_id"]), str(msg["community_id"]), str(msg.get("device_id") or ""),
        str(msg.get("member_id") or ""), str(msg["kind"]), str(msg["severity"]),
        str(msg["state"]), int(msg["opened_at_ms"]) // 1000,
        None if closed is None else int(closed) // 1000,
        orjson.dumps(msg.get("evidence") or {}).decode(), int(msg["updated_at_ms"]) // 1000,
        int(msg["version"]),
    )
