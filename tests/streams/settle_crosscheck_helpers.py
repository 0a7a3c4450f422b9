"""Data for the worker ↔ ``ioe settle`` cross-check (test_worker_vs_settle.py).

One simulated local day (25 hours: 26 October 2025, the autumn clock change in Europe/Madrid)
of a 10-member community, written out three ways from the *same* numbers:

* a registry YAML and an hourly official coefficient file (for ``ioe registry`` / the worker);
* readings with cumulative Wh counters every 5 minutes of event time, including one exactly at
  every hour bound, so the energy of an hour is a plain counter difference (for the worker);
* Datadis-convention hourly CSVs (local end-of-hour labels, ``24:00``, the two ``03:00``) of
  those same counter differences (for ``ioe settle``).

The labels and hours of the year are computed here with ``zoneinfo`` alone, not with the
project's own helpers, so a clock-change mistake in either path shows up as a mismatch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from stdnum.es.cups import calc_check_digits

from ioe.coefficients import CoefficientSchedule, write_file
from ioe.reading import Reading

TZ = ZoneInfo("Europe/Madrid")
HOUR = 3_600_000
STEP = 300_000  # one reading every 5 minutes of event time (12 per hour: the bounds included)
DAY_START = int(datetime(2025, 10, 25, 22, 0, tzinfo=UTC).timestamp() * 1000)  # 26 Oct 00:00
HOURS = 25  # 26 October 2025: 02:00–03:00 happens twice (CEST, then CET)
DAY_END = DAY_START + HOURS * HOUR
TAIL = 30 * 60_000  # readings after the day, so the watermark passes the last hour + lateness
YEAR = 2025
YEAR_START = int(datetime(YEAR, 1, 1, tzinfo=TZ).timestamp() * 1000)
CID = "ce-crosscheck"
MEMBERS = 10

#: three coefficient sets (each sums to exactly 1 with 6 decimals)
BETAS_A = (0.05, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.12, 0.13, 0.13)
BETAS_B = tuple(reversed(BETAS_A))
BETAS_C = (0.2, 0.02, 0.03, 0.05, 0.1, 0.1, 0.15, 0.15, 0.1, 0.1)


def make_cups(n: int, distributor: str = "0021") -> str:
    digits = f"ES{distributor}{n:012d}"
    return digits + calc_check_digits(digits)


def hour_of_year(start_ms: int) -> int:
    """1-based hour of the year of the hour starting at ``start_ms`` (elapsed hours since
    1 January 00:00 local time, DESIGN.md §1)."""
    return (start_ms - YEAR_START) // HOUR + 1


#: the first 03:00 of the day (02:00–03:00 CEST) keeps set A; the second (02:00–03:00 CET)
#: already uses set B; from local 12:00 (CET, 11:00 UTC: mid-morning sun) set C
CHANGE_TO_B = hour_of_year(DAY_START + 3 * HOUR)
CHANGE_TO_C = hour_of_year(int(datetime(2025, 10, 26, 11, 0, tzinfo=UTC).timestamp() * 1000))


def betas_for_hour(hour: int) -> tuple[float, ...]:
    if hour >= CHANGE_TO_C:
        return BETAS_C
    if hour >= CHANGE_TO_B:
        return BETAS_B
    return BETAS_A


def datadis_label(end_ms: int) -> tuple[str, str]:
    """Datadis ``(YYYY/MM/DD, HH:00)`` of the hour ending at ``end_ms``: the local wall clock
    at the start of the hour, plus one hour (so ``24:00`` and both October ``03:00``)."""
    start = datetime.fromtimestamp((end_ms - HOUR) / 1000, TZ)
    return start.strftime("%Y/%m/%d"), f"{start.hour + 1:02d}:00"


@dataclass
class SimulatedDay:
    """Counters per device: ``samples[device] = [(ts_ms, power_w, forward_wh, returned_wh)]``."""

    plant_cups: str
    member_cups: list[str]
    samples: dict[str, list[tuple[int, float, float, float]]] = field(default_factory=dict)

    @property
    def cau(self) -> str:
        return f"{self.plant_cups}A001"

    @staticmethod
    def inverter() -> str:
        return f"{CID}-inv1"

    @staticmethod
    def meter(index: int) -> str:
        return f"{CID}-m{index + 1:02d}"

    def counter_at(self, device: str, ts_ms: int) -> tuple[float, float]:
        for ts, _p, forward, returned in self.samples[device]:
            if ts == ts_ms:
                return forward, returned
        raise KeyError((device, ts_ms))

    def hour_wh(self, device: str, start_ms: int) -> float:
        """Net energy of an hour: forward minus returned counter difference at the bounds."""
        f0, r0 = self.counter_at(device, start_ms)
        f1, r1 = self.counter_at(device, start_ms + HOUR)
        return (f1 - f0) - (r1 - r0)


def simulate(seed: int = 26) -> SimulatedDay:
    rng = random.Random(seed)
    day = SimulatedDay(plant_cups=make_cups(9000) + "1F",
                       member_cups=[make_cups(1000 + i) for i in range(MEMBERS)])

    def inverter_power(ts: int) -> float:
        utc_hour = (ts - DAY_START) / HOUR - 2  # hours since 26 Oct 00:00 UTC
        if 6.5 < utc_hour < 17.0:  # daylight in Valencia in late October
            return 14_000 * math.sin(math.pi * (utc_hour - 6.5) / 10.5) * (0.7 + 0.3 * rng.random())
        return -6.0 - rng.random() * 4  # standby draw at night: net generation below zero

    def member_power(index: int) -> Any:
        base = 120 + 40 * index

        def power(ts: int) -> float:
            utc_hour = (ts - DAY_START) / HOUR - 2
            if index == 9 and 0.0 <= utc_hour < 6.0:  # an empty flat: zero-consumption hours
                return 0.0
            evening = 1500 if 17 <= utc_hour <= 21 else 0
            return base + 700 * rng.random() + evening * rng.random()
        return power

    profiles = {day.inverter(): inverter_power}
    profiles.update({day.meter(i): member_power(i) for i in range(MEMBERS)})
    for device, power_of in profiles.items():
        forward = 2_000_000.0 + rng.random() * 1000
        returned = 1000.0
        samples = []
        previous: tuple[int, float] | None = None
        for ts in range(DAY_START, DAY_END + TAIL + 1, STEP):
            power = power_of(ts)
            if previous is not None:  # the previous power held until now
                energy = previous[1] * (ts - previous[0]) / HOUR
                forward += max(energy, 0.0)
                returned += max(-energy, 0.0)
            samples.append((ts, round(power, 3), round(forward, 3), round(returned, 3)))
            previous = (ts, power)
        day.samples[device] = samples
    return day


def readings(day: SimulatedDay) -> list[Reading]:
    """Every sample as a reading (the inverter also reports its returned counter), in event
    time order."""
    out = []
    for device, samples in day.samples.items():
        is_inverter = device == day.inverter()
        for ts, power, forward, returned in samples:
            out.append(Reading(device_id=device, ts_ms=ts, source="test", community_id=CID,
                               power_w=power, energy_wh=forward,
                               energy_returned_wh=returned if is_inverter else None))
    return sorted(out, key=lambda r: (r.ts_ms, r.device_id))


# -- registry and coefficients ------------------------------------------------------------------
def coefficient_schedule(day: SimulatedDay) -> CoefficientSchedule:
    hours = 8760
    by_cups = {cups: [betas_for_hour(h)[i] for h in range(1, hours + 1)]
               for i, cups in enumerate(day.member_cups)}
    return CoefficientSchedule("hourly", by_cups, year=YEAR)


def write_coefficients(day: SimulatedDay, directory: Path,
                       swap: tuple[int, int, int] | None = None) -> Path:
    """``<CAU>_2025.txt``; ``swap=(hour, i, j)`` exchanges members i and j in one hour (to see
    the cross-check fail)."""
    schedule = coefficient_schedule(day)
    if swap is not None:
        hour, i, j = swap
        by_cups = {c: list(v) for c, v in schedule.by_cups.items()}  # type: ignore[arg-type]
        ci, cj = day.member_cups[i], day.member_cups[j]
        by_cups[ci][hour - 1], by_cups[cj][hour - 1] = by_cups[cj][hour - 1], by_cups[ci][hour - 1]
        schedule = CoefficientSchedule("hourly", by_cups, year=YEAR)
    path = directory / f"{day.cau}_{YEAR}.txt"
    write_file(schedule, path)
    return path


def write_registry(day: SimulatedDay, directory: Path) -> Path:
    coefficients = write_coefficients(day, directory)
    document = {"communities": [{
        "id": CID, "name": "Cross-check community", "cau": day.cau,
        "timezone": "Europe/Madrid", "location": {"latitude": 39.47, "longitude": -0.38},
        "plants": [{"id": "plant-1", "name": "roof", "cups": day.plant_cups,
                    "peak_power_kw": 15}],
        "members": [{"id": f"m{i + 1:02d}", "name": f"member {i + 1}", "cups": cups,
                     "contracted_power_kw": 4.6} for i, cups in enumerate(day.member_cups)],
        "devices": [{"id": day.inverter(), "role": "generation", "plant": "plant-1",
                     "rated_power_w": 15000, "expected_interval_s": 300}]
        + [{"id": day.meter(i), "role": "consumption", "member": f"m{i + 1:02d}",
            "expected_interval_s": 300} for i in range(MEMBERS)],
        "coefficients": [{"effective_from": "2025-01-01", "file": coefficients.name}],
    }]}
    path = directory / "registry.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


# -- Datadis CSVs for ioe settle ----------------------------------------------------------------
def hour_starts() -> list[int]:
    return list(range(DAY_START, DAY_END, HOUR))


def _kwh(wh: float) -> str:
    return f"{wh / 1000:.6f}"


def write_datadis_csvs(day: SimulatedDay, directory: Path) -> tuple[Path, Path]:
    """Consumption (per CUPS, chronological, as Datadis exports it) and plant generation."""
    consumption = ["cups;date;time;consumption_kwh"]
    for i, cups in enumerate(day.member_cups):
        for start in hour_starts():
            date, time = datadis_label(start + HOUR)
            consumption.append(f"{cups};{date};{time};{_kwh(day.hour_wh(day.meter(i), start))}")
    generation = ["cups;date;time;generation_kwh"]
    for start in hour_starts():
        date, time = datadis_label(start + HOUR)
        generation.append(f"{day.plant_cups};{date};{time};"
                          f"{_kwh(day.hour_wh(day.inverter(), start))}")
    paths = directory / "consumption.csv", directory / "generation.csv"
    for path, lines in zip(paths, (consumption, generation), strict=True):
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return paths


def read_settled(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(";")
    return [dict(zip(header, line.split(";"), strict=True)) for line in lines[1:]]


# -- the comparison -----------------------------------------------------------------------------
#: (ClickHouse column, settle column, scale to Wh)
COMPARED = (("consumption_wh", "consumption_kwh", 1000.0),
            ("assigned_wh", "assigned_kwh", 1000.0),
            ("self_consumed_wh", "self_consumed_kwh", 1000.0),
            ("surplus_wh", "surplus_kwh", 1000.0),
            ("import_wh", "grid_import_kwh", 1000.0))
CH_COLUMNS = ("cups", "interval_start_s", "coefficient", "generation_wh", "consumption_wh",
              "assigned_wh", "self_consumed_wh", "surplus_wh", "import_wh", "source",
              "complete")


def iso_z(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def differences(settled: Sequence[dict[str, str]], stored: Iterable[dict[str, Any]],
                tolerance_wh: float = 1.0) -> list[str]:
    """Every member-hour where the two paths disagree (missing rows included), described."""
    by_key = {(r["cups"], iso_z((int(r["interval_start_s"]) + 3600) * 1000)): r for r in stored}
    seen: set[tuple[str, str]] = set()
    bad = []
    for row in settled:
        key = (row["cups"], row["hour_end_utc"])
        seen.add(key)
        got = by_key.get(key)
        if got is None:
            bad.append(f"{key}: in settle, missing in ClickHouse; settle {row}")
            continue
        diffs = [f"{ch}={got[ch]!r} vs {col}={float(row[col]) * scale:.3f} Wh"
                 for ch, col, scale in COMPARED
                 if abs(float(got[ch]) - float(row[col]) * scale) > tolerance_wh]
        if abs(float(got["coefficient"]) - float(row["coefficient"])) > 5e-7:
            diffs.append(f"coefficient {got['coefficient']} vs {row['coefficient']}")
        if not got["complete"] or got["source"] != "meter":
            diffs.append(f"complete={got['complete']} source={got['source']}")
        if diffs:
            bad.append(f"{key} {row['date']} {row['time']}: " + "; ".join(diffs)
                       + f"\n    settle: {row}\n    clickhouse: {got}")
    bad += [f"{key}: in ClickHouse, missing in settle; {row}" for key, row in by_key.items()
            if key not in seen]
    return bad
