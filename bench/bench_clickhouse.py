"""Monthly settlement query: 500 members × one year of hourly balances in ClickHouse.

The figure is the latency of the billing query (per member and month, over ``FINAL`` so replayed
rows count once); the baseline, measured in the same run on the same data, is the same
aggregation without ``FINAL`` (a plain scan), so the ratio is the price of idempotency.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from datetime import datetime, timedelta

from ioe.clickhouse import client, migrate
from ioe.settings import get_settings

SETTLEMENT = """
SELECT member_id, toStartOfMonth(toDate(toTimeZone(interval_start, 'Europe/Madrid'))) AS month,
       sum(consumption_wh) / 1000, sum(self_consumed_wh) / 1000, sum(surplus_wh) / 1000,
       sum(import_wh) / 1000
FROM {db}.balances {final}
WHERE community_id = 'bench' AND interval_s = 3600
GROUP BY member_id, month
"""


def _rows(members: int, hours: int, duplicate_every: int):
    start = datetime(2025, 12, 31, 23)
    now = datetime(2026, 1, 1)
    for h in range(hours):
        ts = start + timedelta(hours=h)
        solar = max(0.0, 1 - abs((h % 24) - 12) / 6)
        for m in range(members):
            consumption = 300.0 + (m % 7) * 40 + (h % 24) * 5
            assigned = 20000.0 * solar / members
            sc = min(assigned, consumption)
            row = ("bench", f"m{m:03d}", "", ts, 3600, 1 / members, 20000.0 * solar, consumption,
                   assigned, sc, assigned - sc, consumption - sc, "meter", 1, now, 1)
            yield row
            if duplicate_every and (h * members + m) % duplicate_every == 0:
                yield row  # a replayed row: must count once


def run(quick: bool = False) -> dict:
    settings = dataclasses.replace(get_settings(), clickhouse_database="ioe_bench")
    migrate(settings)
    ch = client(settings)
    db = settings.clickhouse_database
    members, hours = (100, 24 * 90) if quick else (500, 8760)
    ch.execute(f"TRUNCATE TABLE {db}.balances")
    t0 = time.perf_counter()
    batch = []
    for row in _rows(members, hours, duplicate_every=50):
        batch.append(row)
        if len(batch) >= 100_000:
            ch.execute(f"INSERT INTO {db}.balances VALUES", batch)
            batch.clear()
    if batch:
        ch.execute(f"INSERT INTO {db}.balances VALUES", batch)
    load_s = time.perf_counter() - t0

    def timed(final: str) -> float:
        samples = []
        for _ in range(3 if quick else 5):
            t = time.perf_counter()
            result = ch.execute(SETTLEMENT.format(db=db, final=final))
            samples.append(time.perf_counter() - t)
        assert len(result) == members * (13 if hours == 8760 else 4) or result
        return statistics.median(samples)

    final_s = timed("FINAL")
    plain_s = timed("")
    ch.execute(f"DROP DATABASE {db}")
    ch.disconnect()
    return {
        "scenario": "clickhouse monthly settlement",
        "figures": [
            {"name": f"settlement query, {members} members × {hours} h (FINAL)",
             "value": final_s * 1000, "baseline": plain_s * 1000, "unit": "ms",
             "baseline_name": "same aggregation without FINAL"},
            {"name": "load of the year of balances", "value": members * hours / load_s,
             "baseline": None, "unit": "rows/s"},
        ],
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
