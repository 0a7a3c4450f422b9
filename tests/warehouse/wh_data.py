"""A tiny community worked out by hand, inserted the way at-least-once delivery writes it.

Two members (β m1 = 0.6, m2 = 0.4) and four hours around the Madrid month boundary:

  hour (UTC)        Madrid            G     C m1  C m2   A m1 A m2  SC m1 SC m2  S m1  I m1 I m2
  h0 01-31 21:00    01-31 22:00       0     500   100    0    0     0     0      0     500  100
  h1 01-31 22:00    01-31 23:00       0     400   100    0    0     0     0      0     400  100
  h2 01-31 23:00    02-01 00:00       0     300   200    0    0     0     0      0     300  200
  h3 02-01 11:00    02-01 12:00    1000     200   500  600  400   200   400    400     0  100

Delivery noise the queries must survive: m2·h0 first arrives with a wrong version-1 row
(C = I = 999) and is corrected by version 2; m1·h3 is replayed (same row, separate insert);
a 15-minute row of m1 (interval_s = 900) must not leak into hourly results; a Datadis reading
is replayed. Every insert is separate, so on the current engine rows really are distinct parts
(a single insert block is already deduplicated on insert there, which would hide bugs).
"""

from __future__ import annotations

from calendar import timegm
from dataclasses import dataclass
from typing import Any

from ioe.clickhouse import Engine
from ioe.settings import Settings

CID = "c1"
H0 = timegm((2026, 1, 31, 21, 0, 0))
H1, H2 = H0 + 3600, H0 + 7200
H3 = timegm((2026, 2, 1, 11, 0, 0))
CUPS1, CUPS2 = "ES0021000000000001AA", "ES0021000000000002BB"

BALANCE_COLUMNS = ("community_id", "member_id", "cups", "interval_start", "interval_s",
                   "coefficient", "generation_wh", "consumption_wh", "assigned_wh",
                   "self_consumed_wh", "surplus_wh", "import_wh", "source", "complete",
                   "computed_at", "version")
READING_COLUMNS = ("community_id", "device_id", "ts", "ts_ms", "source", "quality", "power_w",
                   "interval_s", "interval_energy_wh", "version")
ANOMALY_COLUMNS = ("alarm_id", "community_id", "device_id", "member_id", "kind", "severity",
                   "state", "opened_at", "closed_at", "evidence", "updated_at", "version")


def balance(member: str, ts: int, g: float, c: float, a: float, sc: float, s: float, i: float,
            *, interval_s: int = 3600, source: str = "meter", complete: int = 1,
            version: int = 1) -> tuple[Any, ...]:
    beta = {"m1": 0.6, "m2": 0.4}[member]
    cups = {"m1": CUPS1, "m2": CUPS2}[member]
    return (CID, member, cups, ts, interval_s, beta, g, c, a, sc, s, i, source, complete,
            ts + interval_s, version)


# Each inner list is one insert.
BALANCE_INSERTS: list[list[tuple[Any, ...]]] = [
    [balance("m1", H0, 0, 500, 0, 0, 0, 500), balance("m2", H0, 0, 999, 0, 0, 0, 999),
     balance("m1", H1, 0, 400, 0, 0, 0, 400), balance("m2", H1, 0, 100, 0, 0, 0, 100, complete=0)],
    [balance("m1", H2, 0, 300, 0, 0, 0, 300),
     balance("m2", H2, 0, 200, 0, 0, 0, 200, source="datadis"),
     balance("m1", H3, 1000, 200, 600, 200, 400, 0), balance("m2", H3, 1000, 500, 400, 400, 0, 100)],
    [balance("m2", H0, 0, 100, 0, 0, 0, 100, version=2)],  # the correction
    [balance("m1", H3, 1000, 200, 600, 200, 400, 0)],  # a replay
    [balance("m1", H3, 250, 9999, 150, 150, 0, 9849, interval_s=900)],  # 15-min, not hourly
]


def reading(device: str, ts: int, power: float | None = None, energy: float | None = None,
            source: str = "meter", ts_ms: int | None = None) -> tuple[Any, ...]:
    ms = ts * 1000 if ts_ms is None else ts_ms
    return (CID, device, ms // 1000, ms, source, "measured", power,
            3600 if energy is not None else None, energy, ms)


D1 = f"datadis:{CUPS1}"
MARCH_29 = timegm((2026, 3, 29, 10, 0, 0))  # a 23-hour Madrid day
READING_INSERTS: list[list[tuple[Any, ...]]] = [
    [reading(D1, H0, energy=500, source="datadis"), reading(D1, H1, energy=400, source="datadis"),
     reading(D1, H2, energy=310, source="datadis"), reading(D1, H3, energy=240, source="datadis")],
    [reading(D1, H3, energy=240, source="datadis")],  # replayed
    [reading("shelly-m1:0", 0, 999.0, ts_ms=(H2 + 5) * 1000),
     reading("shelly-m1:0", 0, 999.0, ts_ms=(H2 + 1800) * 1000),
     reading("shelly-m1:0", 0, 999.0, ts_ms=timegm((2026, 2, 1, 5, 10, 0)) * 1000),
     reading("shelly-m1:0", 0, 430.0, ts_ms=(H3 + 3540) * 1000)],
    [reading("shelly-m1:0", MARCH_29, 100.0)],
]

ALARM_INSERTS: list[list[tuple[Any, ...]]] = [
    [("a1", CID, "shelly-m1:0", "m1", "device_offline", "critical", "open", H0, None, "{}", H0, 1),
     ("a2", CID, "shelly-m2:0", "m2", "device_offline", "warning", "open", H1, None, "{}", H1, 1),
     ("a3", CID, "inv-1", "", "device_offline", "warning", "open", H1, None, "{}", H1, 1),
     ("a4", CID, "shelly-m1:0", "m1", "frozen_counter", "warning", "open", H3, None, "{}", H3, 1)],
    [("a3", CID, "inv-1", "", "device_offline", "warning", "closed", H1, H1 + 1800, "{}",
      H1 + 1800, 2)],
]


def load(warehouse: Any) -> None:
    """Insert everything, one insert per inner list (``warehouse`` is the tests' Warehouse)."""
    for rows in BALANCE_INSERTS:
        warehouse.insert("balances", BALANCE_COLUMNS, rows)
    for rows in READING_INSERTS:
        warehouse.insert("readings", READING_COLUMNS, rows)
    for rows in ALARM_INSERTS:
        warehouse.insert("anomalies", ANOMALY_COLUMNS, rows)


@dataclass
class Warehouse:
    """An engine with a private, migrated database (``settings`` only for the server)."""

    engine: Engine
    db: str
    settings: Settings | None

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.engine.execute(sql.replace("{db}", self.db), params)

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        self.engine.insert(f"{self.db}.{table}", columns, rows)
