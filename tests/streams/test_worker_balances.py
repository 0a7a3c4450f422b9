"""``ioe worker`` balances end to end: a simulated day of two 10-member communities streamed
through two worker processes into ClickHouse, with a worker SIGKILLed mid-stream, an edge
outage replayed late and a Datadis correction; the hourly and 15-minute balances in ClickHouse
(FINAL) must equal an independent, simpler computation written here, within 1 Wh.

The day is compressed: one reading every 5 simulated minutes per device, sent as fast as
Kafka takes them. Counters are computed here from a known power profile, so the expected
energy at a bound is the counter interpolated between the two samples around it; one member's
meter reports only power (trapezoidal integration in the expected values as well).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest
from kafka.partitioner.default import murmur2
from worker_helpers import (
    WorkerProcess,
    make_community,
    publish_registry,
    query,
    send_readings,
    wait_until,
)

from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.topics import READINGS

pytestmark = pytest.mark.stack

DAY = int(datetime(2026, 6, 14, 22, 0, tzinfo=UTC).timestamp() * 1000)  # 15 June, local 00:00
STEP = 300_000
HOUR = 3_600_000
BETAS = [0.05, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.12, 0.13, 0.13]
OUTAGE = (DAY + 13 * HOUR, DAY + 15 * HOUR)  # the inverter's edge is offline, replays later
DATADIS_HOUR = DAY + 11 * HOUR  # member m03's official hour (start)


def community_ids(count: int, partitions: int) -> list[str]:
    """Community ids landing on different partitions (so both workers have work)."""
    found: dict[int, str] = {}
    for i in range(100):
        cid = f"ce-day{i}"
        found.setdefault((murmur2(cid.encode()) & 0x7FFFFFFF) % partitions, cid)
        if len(found) == count:
            break
    return sorted(found.values())


# -- the simulated day ---------------------------------------------------------------------
def day_samples(cid: str, seed: int) -> dict[str, list[tuple[int, float, float]]]:
    """device id -> [(ts_ms, power_w, counter_wh)]; each device has its own phase offset."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[int, float, float]]] = {}
    devices = [f"{cid}-inv1"] + [f"{cid}-m{i + 1:02d}-1" for i in range(len(BETAS))]
    for index, device in enumerate(devices):
        offset = 7_000 + index * 13_000  # not aligned on the 15-min bounds
        counter = 1_000_000.0 + rng.random() * 1000
        samples = []
        previous_ts = None
        for k in range(-4, 12 * 24 + 4):  # 20 minutes before the day to 20 after it
            ts = DAY + k * STEP + offset
            hour = (ts - DAY) / HOUR
            if device.endswith("inv1"):
                power = max(0.0, 25_000 * math.sin(math.pi * (hour - 6.5) / 14)) * (
                    0.8 + 0.2 * rng.random())
            else:
                power = 150 + 900 * rng.random() + (1200 if 19 <= hour <= 22 else 0)
            if previous_ts is not None:
                counter += power * (ts - previous_ts) / HOUR  # power held since last sample
            samples.append((ts, power, counter))
            previous_ts = ts
        out[device] = samples
    return out


def interp(points: list[tuple[int, float]], t: int) -> float:
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    raise ValueError(t)


def energy(samples: list[tuple[int, float, float]], start: int, end: int, *,
           power_only: bool) -> float:
    """Independent interval energy: counter difference, or trapezoids of power."""
    if not power_only:
        counter = [(ts, c) for ts, _p, c in samples]
        return interp(counter, end) - interp(counter, start)
    power = [(ts, p) for ts, p, _c in samples]
    grid = [start] + [ts for ts, _ in power if start < ts < end] + [end]
    return sum((interp(power, a) + interp(power, b)) / 2 * (b - a) / HOUR
               for a, b in zip(grid, grid[1:], strict=False))


def expected_rows(cid: str, samples: dict, interval_s: int, datadis: dict[int, float]
                  ) -> dict[tuple[str, int], tuple[float, ...]]:
    step = interval_s * 1000
    rows = {}
    for start in range(DAY, DAY + 24 * HOUR, step):
        g = energy(samples[f"{cid}-inv1"], start, start + step, power_only=False)
        for i, beta in enumerate(BETAS):
            mid = f"m{i + 1:02d}"
            c = energy(samples[f"{cid}-{mid}-1"], start, start + step,
                       power_only=(mid == "m10"))
            if interval_s == 3600 and mid == "m03" and start in datadis:
                c = datadis[start]
            a = beta * max(g, 0.0)
            rows[(mid, start)] = (g, c, a, min(a, c), max(a - c, 0.0), max(c - a, 0.0))
    return rows


def readings_for(cid: str, samples: dict) -> list[Reading]:
    out = []
    for device, points in samples.items():
        power_only = device.endswith("m10-1")
        for ts, p, c in points:
            out.append(Reading(device_id=device, ts_ms=ts, source="test", community_id=cid,
                               power_w=round(p, 3),
                               energy_wh=None if power_only else round(c, 4)))
    return out


def datadis_reading(community, member_id: str, hour_start: int, wh: float) -> Reading:
    cups = community.member(member_id).cups
    return Reading(device_id=f"datadis:{cups}", ts_ms=hour_start + HOUR, source="datadis",
                   community_id=community.id, interval_s=3600, interval_energy_wh=wh)


def clickhouse_balances(settings, interval_s: int) -> dict:
    rows = query(settings, f"""
        SELECT community_id, member_id, toUnixTimestamp(interval_start) * 1000, generation_wh,
               consumption_wh, assigned_wh, self_consumed_wh, surplus_wh, import_wh, source,
               complete
        FROM {{db}}.balances FINAL WHERE interval_s = {interval_s}""")
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def mismatches(settings, cids, expected_by_cid, interval_s: int) -> list[str]:
    got = clickhouse_balances(settings, interval_s)
    bad = []
    for cid in cids:
        for (mid, start), exp in expected_by_cid[cid].items():
            row = got.get((cid, mid, start))
            if row is None:
                bad.append(f"{cid} {mid} {start}: missing")
                continue
            if any(abs(a - b) > 1.0 for a, b in zip(row[:6], exp, strict=True)) or not row[7]:
                bad.append(f"{cid} {mid} {start}: got {row} expected {exp}")
    return bad


def test_simulated_day_two_workers_kill_outage_datadis(stack_settings, tmp_path):
    settings = stack_settings
    cids = community_ids(2, settings.partitions)
    communities = {cid: make_community(cid, BETAS, cups_base=1000 + 100 * n)
                   for n, cid in enumerate(cids)}
    publish_registry(settings, communities.values())
    samples = {cid: day_samples(cid, seed=n) for n, cid in enumerate(cids)}
    readings = sorted((r for cid in cids for r in readings_for(cid, samples[cid])),
                      key=lambda r: r.ts_ms)
    outage_cid = cids[0]
    late = [r for r in readings if r.device_id == f"{outage_cid}-inv1"
            and OUTAGE[0] <= r.ts_ms < OUTAGE[1]]
    on_time = [r for r in readings if r not in late]
    # Datadis: a first delivery, then a correction of the same member-hour (SET semantics)
    datadis_first = datadis_reading(communities[cids[1]], "m03", DATADIS_HOUR, 4321.0)
    datadis_fixed = datadis_reading(communities[cids[1]], "m03", DATADIS_HOUR, 1234.5)

    options = ("--lateness-s", "600", "--emit-min-s", "0", "--live-interval-s", "5")
    workers = [WorkerProcess(settings, tmp_path, "w1", *options),
               WorkerProcess(settings, tmp_path, "w2", *options)]
    producer = make_producer(settings)
    topic = settings.topic(READINGS)
    try:
        third = len(on_time) // 3
        send_readings(producer, topic, on_time[:third])
        wait_until(lambda: query(settings, "SELECT count() FROM {db}.balances")[0][0] > 0,
                   120, "the first balances in ClickHouse")
        # SIGKILL each worker in turn while it is busy with a burst of readings (no clean
        # shutdown, no final commit), and restart it with the same app id
        send_readings(producer, topic, on_time[third:2 * third])
        workers[0].kill()
        workers[0] = WorkerProcess(settings, tmp_path, "w1", *options)
        send_readings(producer, topic, [datadis_first])
        send_readings(producer, topic, on_time[2 * third:])
        workers[1].kill()
        workers[1] = WorkerProcess(settings, tmp_path, "w2b", *options)
        send_readings(producer, topic, late + [datadis_fixed])  # older than the watermark
        send_readings(producer, topic, on_time[:500])  # a connector replaying what it sent
        # one more reading per community so the late intervals' re-emission is triggered
        ticks = [Reading(device_id=f"{cid}-m01-1", ts_ms=DAY + 24 * HOUR + 41 * 60_000,
                         source="test", community_id=cid, power_w=100.0) for cid in cids]
        send_readings(producer, topic, ticks)

        expected = {cid: expected_rows(cid, samples[cid], 3600,
                                       {DATADIS_HOUR: 1234.5} if cid == cids[1] else {})
                    for cid in cids}
        expected_q = {cid: expected_rows(cid, samples[cid], 900, {}) for cid in cids}

        def wrong() -> list[str]:
            return (mismatches(settings, cids, expected, 3600)
                    + mismatches(settings, cids, expected_q, 900))

        try:
            wait_until(lambda: not wrong(), 180, "exact balances", interval_s=3)
        except AssertionError:
            bad = wrong()
            raise AssertionError(f"{len(bad)} wrong member-intervals, e.g. {bad[:5]}") from None
        hourly = clickhouse_balances(settings, 3600)
        assert hourly[(cids[1], "m03", DATADIS_HOUR)][6] == "datadis"
        assert hourly[(cids[1], "m03", DATADIS_HOUR - HOUR)][6] == "meter"
        # totals per member over the day: no double counting anywhere
        totals = query(settings, f"""
            SELECT community_id, member_id, sum(consumption_wh), sum(self_consumed_wh), count()
            FROM {{db}}.balances FINAL WHERE interval_s = 3600
              AND interval_start >= toDateTime({DAY // 1000})
              AND interval_start < toDateTime({(DAY + 24 * HOUR) // 1000})
            GROUP BY community_id, member_id""")
        for cid, mid, consumption, self_consumed, hours in totals:
            exp = [v for (m, _s), v in expected[cid].items() if m == mid]
            assert hours == 24
            assert abs(consumption - sum(v[1] for v in exp)) < 24
            assert abs(self_consumed - sum(v[3] for v in exp)) < 24
        assert len(totals) == 2 * len(BETAS)
        distinct = len({(r.device_id, r.ts_ms) for r in readings + ticks + [datadis_fixed]})
        wait_until(lambda: query(settings, "SELECT count() FROM {db}.readings FINAL")[0][0]
                   == distinct, 60, "every reading once in ClickHouse")
    finally:
        producer.close()
        for worker in workers:
            worker.stop()
