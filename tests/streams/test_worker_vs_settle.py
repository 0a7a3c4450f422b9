"""Two independent paths, one answer: ``ioe worker`` (Kafka → Faust → ClickHouse) against
``ioe settle`` (CSV in, CSV out, no servers) on the same simulated day (issue 6).

The day is 26 October 2025 in Europe/Madrid — 25 hours, 02:00–03:00 twice — for a 10-member
community with one inverter (net generation below zero at night: standby draw) and an hourly
coefficient file whose coefficients change at two hour bounds, one of them between the two
``03:00`` hours. The worker gets readings with cumulative counters every 5 minutes (one at every
hour bound); ``ioe settle`` gets the Datadis-style hourly CSVs of the same counter differences.
Every member-hour must agree within 1 Wh (consumption, assigned, self-consumed, surplus,
import) and use the same coefficient. See settle_crosscheck_helpers.py for the data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from settle_crosscheck_helpers import (
    CH_COLUMNS,
    DAY_END,
    DAY_START,
    HOURS,
    MEMBERS,
    SimulatedDay,
    differences,
    read_settled,
    readings,
    simulate,
    write_coefficients,
    write_datadis_csvs,
    write_registry,
)
from worker_helpers import WorkerProcess, query, send_readings, wait_until

from ioe.cli import main
from ioe.commands.registry import publish
from ioe.kafka import make_producer
from ioe.settings import Settings
from ioe.topics import READINGS

pytestmark = pytest.mark.stack

WORKER_OPTIONS = ("--lateness-s", "60", "--emit-min-s", "0", "--live-interval-s", "5")


def clickhouse_hours(settings: Settings) -> list[dict]:
    rows = query(settings, f"""
        SELECT cups, toUnixTimestamp(interval_start), coefficient, generation_wh,
               consumption_wh, assigned_wh, self_consumed_wh, surplus_wh, import_wh, source,
               complete
        FROM {{db}}.balances FINAL
        WHERE interval_s = 3600 AND interval_start >= toDateTime({DAY_START // 1000})
          AND interval_start < toDateTime({DAY_END // 1000})""")
    return [dict(zip(CH_COLUMNS, row, strict=True)) for row in rows]


def run_settle(day: SimulatedDay, directory: Path, coefficients: Path) -> list[dict[str, str]]:
    consumption, generation = write_datadis_csvs(day, directory)
    out = directory / "settled.csv"
    code = main(["settle", "--coefficients", str(coefficients), "--consumption",
                 str(consumption), "--generation", str(generation), "--out", str(out)])
    assert code == 0
    return read_settled(out)


def stream_through_workers(settings: Settings, day: SimulatedDay, directory: Path,
                           names: tuple[str, ...] = ("w1", "w2"), *extra: str,
                           restart_midway: bool = False) -> list[dict]:
    """Registry + readings to the private topics, the workers ``names``, until every
    member-hour of the day is complete in ClickHouse; the workers are stopped before the rows
    are returned. ``restart_midway``: half the readings, the workers stopped gracefully once
    the first hours are stored, started again on the same data directories, then the rest."""
    registry = write_registry(day, directory)
    assert publish(registry, settings) == ["ce-crosscheck"]

    def start() -> list[WorkerProcess]:
        return [WorkerProcess(settings, directory, name, *WORKER_OPTIONS, *extra)
                for name in names]

    def complete_hours() -> int:
        return int(query(settings, f"""
            SELECT count() FROM {{db}}.balances FINAL
            WHERE interval_s = 3600 AND complete = 1
              AND interval_start >= toDateTime({DAY_START // 1000})
              AND interval_start < toDateTime({DAY_END // 1000})""")[0][0])

    def wait_for_hours(count: int, workers: list[WorkerProcess]) -> None:
        try:
            wait_until(lambda: complete_hours() >= count or None, 150,
                       f"{count} member-hours in ClickHouse", 2.0)
        except AssertionError:
            tails = "\n".join(f"--- {w.name}\n{w.log_text()[-3000:]}" for w in workers)
            raise AssertionError(f"balances incomplete: {len(clickhouse_hours(settings))} "
                                 f"rows\n{tails}") from None

    every = readings(day)
    half = len(every) // 2 if restart_midway else len(every)
    workers = start()
    producer = make_producer(settings)
    try:
        sent = send_readings(producer, settings.topic(READINGS), every[:half])
        if restart_midway:
            wait_for_hours(MEMBERS * 6, workers)  # the night hours are stored
            for worker in workers:
                worker.stop()
            workers = start()
            sent += send_readings(producer, settings.topic(READINGS), every[half:])
        assert sent == (MEMBERS + 1) * len(day.samples[day.inverter()])
        wait_for_hours(MEMBERS * HOURS, workers)
    finally:
        producer.close()
        for worker in workers:
            worker.stop()
    return clickhouse_hours(settings)


def test_worker_balances_equal_settle_on_october_clock_change_day(stack_settings, tmp_path):
    day = simulate()
    stored = stream_through_workers(stack_settings, day, tmp_path)
    settled = run_settle(day, tmp_path, write_coefficients(day, tmp_path))

    assert len(settled) == MEMBERS * HOURS == 250
    assert len(stored) == MEMBERS * HOURS
    # the October day as Datadis labels it: two 03:00 per member, kept apart in UTC, and 24:00
    first = [r for r in settled if r["cups"] == day.member_cups[0]]
    assert [r["time"] for r in first][:5] == ["01:00", "02:00", "03:00", "03:00", "04:00"]
    assert [r["hour_end_utc"] for r in first][2:4] == ["2025-10-26T01:00:00Z",
                                                       "2025-10-26T02:00:00Z"]
    assert (first[-1]["date"], first[-1]["time"], first[-1]["hour_end_utc"]) == (
        "2025/10/26", "24:00", "2025-10-26T23:00:00Z")
    # the data exercise what they should: coefficients differ between the two 03:00, there
    # are sunny hours with surplus and with import, night hours with negative generation
    assert first[2]["coefficient"] != first[3]["coefficient"]
    assert {r["coefficient"] for r in first} == {"0.050000", "0.130000", "0.200000"}
    assert any(float(r["surplus_kwh"]) > 0.1 for r in settled)
    assert any(float(r["assigned_kwh"]) > 0.1 and float(r["grid_import_kwh"]) > 0.1
               for r in settled)
    assert any(r["generation_wh"] < 0 for r in stored)
    assert any(float(r["consumption_kwh"]) == 0 for r in settled)

    bad = differences(settled, stored)
    assert not bad, (f"{len(bad)} member-hours differ between ioe worker (ClickHouse) and "
                     "ioe settle; first ones:\n" + "\n".join(bad[:5]))
    # and the totals of the day agree too (no hour counted twice on either side)
    for cups in day.member_cups:
        ch = sum(r["self_consumed_wh"] for r in stored if r["cups"] == cups)
        st = sum(float(r["self_consumed_kwh"]) * 1000 for r in settled if r["cups"] == cups)
        assert abs(ch - st) < HOURS * 1.0


def test_a_rocksdb_worker_restarted_midway_still_equals_settle(stack_settings, tmp_path):
    """``--store rocksdb``: the tables on disk, a graceful restart half way through the day
    (the restarted worker finds its state in RocksDB, not only in the changelog), and every
    member-hour still equals ``ioe settle``."""
    day = simulate()
    stored = stream_through_workers(stack_settings, day, tmp_path, ("r1",), "--store",
                                    "rocksdb", restart_midway=True)
    settled = run_settle(day, tmp_path, write_coefficients(day, tmp_path))
    assert len(stored) == len(settled) == MEMBERS * HOURS
    assert list((tmp_path / "r1").rglob("*.sst")) or list((tmp_path / "r1").rglob("CURRENT")), \
        "no RocksDB database under the worker's data directory"
    bad = differences(settled, stored)
    assert not bad, f"{len(bad)} member-hours differ from ioe settle:\n" + "\n".join(bad[:5])


def as_stored(settled: list[dict[str, str]]) -> list[dict]:
    """Settle rows in the shape of the ClickHouse rows (to check the comparison itself)."""
    out = []
    for r in settled:
        end = datetime.strptime(r["hour_end_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        out.append({"cups": r["cups"], "interval_start_s": int(end.timestamp()) - 3600,
                    "coefficient": float(r["coefficient"]), "generation_wh": 0.0,
                    "consumption_wh": float(r["consumption_kwh"]) * 1000,
                    "assigned_wh": float(r["assigned_kwh"]) * 1000,
                    "self_consumed_wh": float(r["self_consumed_kwh"]) * 1000,
                    "surplus_wh": float(r["surplus_kwh"]) * 1000,
                    "import_wh": float(r["grid_import_kwh"]) * 1000, "source": "meter",
                    "complete": 1})
    return out


def test_the_cross_check_can_fail(tmp_path):
    """No servers: the comparison above flags swapped coefficients and a missing hour."""
    day = simulate()
    good = run_settle(day, tmp_path, write_coefficients(day, tmp_path))
    (tmp_path / "swapped").mkdir()
    swapped = run_settle(day, tmp_path / "swapped",
                         write_coefficients(day, tmp_path / "swapped", swap=(7166, 2, 3)))
    assert differences(good, as_stored(good)) == []
    bad = differences(swapped, as_stored(good))
    assert len(bad) == 2 and all("2025-10-26T13:00:00Z" in b and "coefficient" in b
                                 for b in bad)
    missing = differences(good, as_stored(good)[:-1])
    assert len(missing) == 1 and "missing in ClickHouse" in missing[0]
