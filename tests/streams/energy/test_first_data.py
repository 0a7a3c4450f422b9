"""Balance rows exist from a community's first data on (issue 16, item 13), checked by hand.

Before, the first sample of a new community's first device looked 6 h back for an earlier
sample, found none, and made every quarter and hour of those 6 h due: a 0 Wh, ``complete=0``
row for every member and hour 04:00–09:00 when the first reading came at 10:20, which billing
queries had to filter. Now nothing is emitted for an interval that ends at or before the quarter
of the first data, while a gap *after* it still gives ``complete=0`` rows (the one "no data"
state of a row, docs/design-notes.md).

The engine runs on plain dicts as its tables (as the worker's Faust tables, without Kafka); a
"restart" re-reads the tables through the changelog codec of :mod:`streams.state`.

The day (2026-06-15, UTC): an inverter (6000 W), m01's meter (1200 W) and m02's meter
(3000 W), all cumulative counters sampled every 5 minutes from 10:20 to 17:00, and all three
silent from 13:40 to 15:20 (no sample strictly in between). β: m01 0.25, m02 0.75.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stdnum.es import cups as stdnum_cups

from ioe.coefficients import CoefficientSchedule
from ioe.messages import Balance
from ioe.reading import Reading
from ioe.registry import Community, Device, Member, Plant
from streams.balances import BalanceConfig, BalanceEngine
from streams.state import Watermark, decode, encode

CID = "ce-first"
MIN = 60_000
HOUR = 60 * MIN
DAY = int(datetime(2026, 6, 15, tzinfo=UTC).timestamp() * 1000)
FIRST = DAY + 10 * HOUR + 20 * MIN          # 10:20, the community's first reading
SILENT = (DAY + 13 * HOUR + 40 * MIN, DAY + 15 * HOUR + 20 * MIN)  # no sample strictly inside
LAST = DAY + 17 * HOUR
WATTS = {f"{CID}-inv": 6000.0, f"{CID}-m01": 1200.0, f"{CID}-m02": 3000.0}


def _cups(n: int) -> str:
    body = f"0021{n:012d}"
    return f"ES{body}{stdnum_cups.calc_check_digits(body)}"


def _community() -> Community:
    members = (Member("m01", "m01", _cups(1), 4.6), Member("m02", "m02", _cups(2), 4.6))
    plant = Plant("plant-1", "roof", None, 30.0, 39.5, -0.4)
    devices = (Device(f"{CID}-inv", CID, "generation", plant_id="plant-1"),  # type: ignore[arg-type]
               Device(f"{CID}-m01", CID, "consumption", member_id="m01"),  # type: ignore[arg-type]
               Device(f"{CID}-m02", CID, "consumption", member_id="m02"))  # type: ignore[arg-type]
    schedule = CoefficientSchedule("static", {_cups(1): 0.25, _cups(2): 0.75})
    return Community(id=CID, name=CID, cau=None, timezone="Europe/Madrid", latitude=39.5,
                     longitude=-0.4, members=members, plants=(plant,), devices=devices,
                     schedules=(schedule,))


COMMUNITY = _community()


def day_readings() -> list[Reading]:
    """Every device every 5 min from 10:20 to 17:00 except inside the silence, in time order;
    each counter grows at its constant power (Wh = W × elapsed hours), silence included."""
    out = []
    for ts in range(FIRST, LAST + 1, 5 * MIN):
        if SILENT[0] < ts < SILENT[1]:
            continue
        for device, watts in WATTS.items():
            out.append(Reading(device_id=device, ts_ms=ts, source="t",
                               energy_wh=1000.0 + watts * (ts - FIRST) / HOUR))
    return out


def engine(watermarks: dict[str, Any] | None = None) -> BalanceEngine:
    return BalanceEngine(slots={}, official={}, pending={}, emitted={},
                         watermarks={} if watermarks is None else watermarks,
                         config=BalanceConfig(lateness_ms=0))


def run(eng: BalanceEngine, readings: list[Reading]) -> dict[tuple[int, int, str], Balance]:
    """Feed the readings one by one, emitting after each (as the worker does): the last
    published row of every (interval_s, start, member)."""
    published: dict[tuple[int, int, str], Balance] = {}
    for reading in readings:
        eng.add(COMMUNITY, COMMUNITY.device(reading.device_id), reading)  # type: ignore[arg-type]
        for row in eng.emit_due(COMMUNITY):
            published[(row.interval_s, row.interval_start_ms, row.member_id)] = row
    return published


def numbers(row: Balance) -> tuple[float, ...]:
    return (row.generation_wh, row.consumption_wh, row.assigned_wh, row.self_consumed_wh,
            row.surplus_wh, row.import_wh, float(row.complete))


def at(hh: int, mm: int = 0) -> int:
    return DAY + hh * HOUR + mm * MIN


# Worked out by hand from the powers (Wh = W × minutes / 60; A = β·G; SC = min(A, C);
# S = A − SC; I = C − SC). 40 observed minutes: G 4000, C 800 / 2000.
PARTIAL = {"m01": (4000.0, 800.0, 1000.0, 800.0, 200.0, 0.0, 0.0),
           "m02": (4000.0, 2000.0, 3000.0, 2000.0, 1000.0, 0.0, 0.0)}
FULL = {"m01": (6000.0, 1200.0, 1500.0, 1200.0, 300.0, 0.0, 1.0),
        "m02": (6000.0, 3000.0, 4500.0, 3000.0, 1500.0, 0.0, 1.0)}
NO_DATA = {m: (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0) for m in ("m01", "m02")}
HOURS = {
    10: PARTIAL,   # 10:20–11:00 observed, nothing before the first reading: incomplete
    11: FULL, 12: FULL,
    13: PARTIAL,   # 13:00–13:40, then the silence
    14: NO_DATA,   # inside the silence: the 100-min pairs are gaps, nothing invented
    15: PARTIAL,   # 15:20–16:00
    16: FULL,      # bracketed by the samples at 16:00 and 17:00
}


def test_no_rows_before_the_first_reading_and_a_later_gap_is_complete_0():
    published = run(engine(), day_readings())
    hours = {(start, member): row for (s, start, member), row in published.items() if s == 3600}
    # exactly the hours 10:00…16:00 (17:00–18:00 is not over yet), none of 04:00–09:00
    assert sorted({start for start, _ in hours}) == [at(h) for h in range(10, 17)]
    assert not [k for k in published if k[1] < at(10, 15) and k[0] == 900]
    assert not [k for k in published if k[1] < at(10) and k[0] == 3600]
    for hour, expected in HOURS.items():
        for member in ("m01", "m02"):
            assert numbers(hours[(at(hour), member)]) == expected[member], (hour, member)
    # quarters: every one from 10:15 (the quarter of the first reading) to 16:45, none before
    quarters = sorted({start for s, start, _ in published if s == 900})
    assert quarters == list(range(at(10, 15), at(17), 15 * MIN))
    first = {m: numbers(published[(900, at(10, 15), m)]) for m in ("m01", "m02")}
    # 10:20–10:30 observed: G 1000; C 200 / 500; A 250 / 750
    assert first == {"m01": (1000.0, 200.0, 250.0, 200.0, 50.0, 0.0, 0.0),
                     "m02": (1000.0, 500.0, 750.0, 500.0, 250.0, 0.0, 0.0)}
    # inside the silence a quarter is the same "no data" row as its hour
    assert numbers(published[(900, at(14, 30), "m01")]) == NO_DATA["m01"]


def test_readings_out_of_order_give_the_same_rows():
    """Whatever the arrival order, the first data is the earliest reading ever seen: when an
    older reading moves it back, the intervals in between exist again and are emitted (the
    first arrival may be the 17:00 reading: its look-back must not be lost)."""
    reference = run(engine(), day_readings())
    for seed in range(5):
        readings = day_readings()
        random.Random(seed).shuffle(readings)
        got = run(engine(), readings)
        assert got.keys() == reference.keys(), seed
        for key, row in got.items():
            assert numbers(row) == numbers(reference[key]), (seed, key)


def test_an_older_reading_arriving_after_a_newer_one_reopens_the_look_back():
    """The inverter's 17:00 reading arrives first (the community's first data, for now: its
    6 h look-back 11:00–16:45 is dropped), then m01's reading of 10:20. m01's own forward walk
    stops 6 h on, at 16:15; the quarters 16:30 and 16:45 lie after the first data and exist
    only because moving the first data back re-marks the dropped look-back. Every row is the
    "no data" row: one sample per device, no pair, nothing measured."""
    eng = engine()
    newer = Reading(device_id=f"{CID}-inv", ts_ms=LAST, source="t", energy_wh=50.0)
    older = Reading(device_id=f"{CID}-m01", ts_ms=FIRST, source="t", energy_wh=10.0)
    published = run(eng, [newer])
    assert published == {}  # nothing due yet, nothing before 17:00 exists
    assert eng.windows.first_data(CID) == LAST
    published = run(eng, [older])
    assert eng.windows.first_data(CID) == FIRST
    quarters = sorted({start for s, start, _ in published if s == 900})
    assert quarters == list(range(at(10, 15), at(17), 15 * MIN))  # 27 quarters
    assert sorted({start for s, start, _ in published if s == 3600}) == [
        at(h) for h in range(10, 17)]
    assert {numbers(row) for row in published.values()} == {NO_DATA["m01"]}


def test_the_first_data_survives_a_restart_through_the_changelog_codec():
    """The first-data time lives in the watermarks table (a :class:`Watermark`), written at
    once. The inverter's 10:20 reading, then a restart (every table read back through the
    changelog codec, the engine's caches gone), then m01's first reading at 12:00: its 6 h
    look-back (06:15–11:45) must give the quarters from 10:15 and the hour 11:00 — they lie
    after the first data — and nothing before. A worker that lost the first-data time would
    take 12:00 as the first data and drop them; the release before emitted 06:00–09:00 too."""
    eng = engine()
    first = run(eng, [Reading(device_id=f"{CID}-inv", ts_ms=FIRST, source="t",
                              energy_wh=10.0)])
    assert first == {}  # nothing is due at 10:20
    assert eng.windows.watermarks[CID] == Watermark(FIRST, FIRST)
    assert encode(eng.windows.watermarks[CID]) == f'[1,"w",{FIRST},{FIRST}]'.encode()

    def restored(table: dict[str, Any]) -> dict[str, Any]:
        return {key: decode(encode(value)) for key, value in table.items()}

    again = BalanceEngine(slots=restored(eng.slots), official={},
                          pending=restored(eng.pending), emitted=restored(eng.emitted),
                          watermarks=restored(eng.windows.watermarks),
                          config=BalanceConfig(lateness_ms=0))
    assert again.windows.first_data(CID) == FIRST
    published = run(again, [Reading(device_id=f"{CID}-m01", ts_ms=at(12), source="t",
                                    energy_wh=20.0)])
    assert sorted({start for s, start, _ in published if s == 900}) == list(
        range(at(10, 15), at(12), 15 * MIN))
    assert sorted({start for s, start, _ in published if s == 3600}) == [at(10), at(11)]
    assert {numbers(row) for row in published.values()} == {NO_DATA["m01"]}


def test_a_watermark_of_the_release_before_drops_nothing():
    """A ``watermarks`` value written before first-data times were kept is a plain number:
    that community had data before, so the look-back is emitted as it always was — here the
    0 Wh, complete=0 hours 04:00–09:00 that the new code drops (so this test also shows the
    first one can fail)."""
    legacy = decode(encode(FIRST - 3 * HOUR))  # what the release before wrote: a number
    assert legacy == FIRST - 3 * HOUR
    published = run(engine({CID: legacy}), day_readings())
    early = sorted({start for s, start, _ in published if s == 3600 and start < at(10)})
    assert early == [at(h) for h in range(4, 10)]  # the 6 h look-back of 10:20: 04:20 → 04:00
    assert {numbers(published[(3600, at(6), m)]) for m in ("m01", "m02")} == {NO_DATA["m01"]}


def test_watermark_codec_forms():
    """Tag ``w`` of state version 1: both fields, the first-data time unknown (None), and a
    value without the field (decoded as None)."""
    assert decode(encode(Watermark(5, 3))) == Watermark(5, 3)
    assert decode(encode(Watermark(5))) == Watermark(5, None)
    assert decode(b'[1,"w",7]') == Watermark(7, None)
    assert encode(Watermark(5, 3)) == b'[1,"w",5,3]'


def test_official_data_counts_from_the_start_of_its_interval():
    """A Datadis hour ending at 10:00 is data from 09:00: the hour 09:00 exists, 08:00 not."""
    eng = engine()
    cups = COMMUNITY.members[0].cups
    hour = Reading(device_id=f"datadis:{cups}", ts_ms=at(10), source="datadis",
                   interval_s=3600, interval_energy_wh=700.0)
    community = replace(COMMUNITY, devices=(*COMMUNITY.devices, Device(
        f"datadis:{cups}", CID, "consumption", member_id="m01",  # type: ignore[arg-type]
        protocol={"type": "datadis"})))
    eng.add(community, community.device(hour.device_id), hour)  # type: ignore[arg-type]
    assert eng.windows.first_data(CID) == at(9)
    late = Reading(device_id=f"{CID}-m01", ts_ms=at(11), source="t", energy_wh=5.0)
    eng.add(community, community.device(late.device_id), late)  # type: ignore[arg-type]
    rows = eng.emit_due(community)
    starts = {(r.interval_s, r.interval_start_ms) for r in rows}
    assert (3600, at(9)) in starts and (3600, at(8)) not in starts
    m01 = next(r for r in rows if r.interval_s == 3600 and r.interval_start_ms == at(9)
               and r.member_id == "m01")
    # C from Datadis; the row is incomplete only because the plant sent nothing for 09:00
    assert (m01.consumption_wh, m01.generation_wh, str(m01.source)) == (700.0, 0.0, "datadis")
    assert m01.complete is False
