"""Labelled synthetic data set for the anomaly detectors (issue 7).

A community of N households (default 30) and two PV plants with two inverters each, simulated
at 1-minute resolution for D days (default 30), with faults of every detector kind injected at
known times. Labels name the kind, the alarm subject (device, ``member:<cid>:<mid>`` or
``registry:<cid>``), the fault's start and end, and ``also``: kinds that the fault may
legitimately raise as a consequence (a reversed CT also makes the meter's hours disagree with
Datadis), which the evaluation does not count as false positives.

The normal data contains the cases that must NOT fire: clear, partly cloudy and overcast days,
households on holiday with a low, noisy base load, nights (Huawei inverters draw a constant
-3 W asleep; SunSpec ones report 0 W "Sleeping"), appliance peaks near the contracted power.

    python -m bench.anomaly_dataset --days 30 --members 30 --out .local/anomaly-dataset

writes ``community.json``, ``events.jsonl.gz`` (replay order) and ``labels.json``.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ioe.coefficients import CoefficientSchedule
from ioe.reading import Reading
from ioe.registry import Community, Device, Member, Plant
from streams.anomalies.sun import sun_elevation

COMMUNITY_ID = "ce-bench"
LATITUDE, LONGITUDE = 39.47, -0.38
STEP_S = 60
MIN_MS = 60_000
HOUR_MS = 3_600_000
#: Datadis hours enter the replay this long after the hour ends
DATADIS_LAG_MS = 15 * MIN_MS
#: inverters: id, plant, rated W, source, (day status, night status), night power W
INVERTERS = (
    ("inv-1a", "plant-1", 15000.0, "sunspec", ("4", "2"), 0.0),
    ("inv-1b", "plant-1", 15000.0, "huawei-sun2000", ("0x0200", "0xA000"), -3.0),
    ("inv-2a", "plant-2", 10000.0, "sunspec", ("4", "2"), 0.0),
    ("inv-2b", "plant-2", 10000.0, "huawei-sun2000", ("0x0200", "0xA000"), -3.0),
)
FAULT_STATUS = {"sunspec": "7", "huawei-sun2000": "0x0300"}


@dataclass
class Label:
    kind: str
    subject: str
    member_id: str | None
    start_ms: int
    end_ms: int
    also: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fault:
    """How a device's readings are altered in [start_ms, end_ms)."""

    action: str
    device_id: str
    start_ms: int
    end_ms: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    community: Community
    bad_community: Community
    start_ms: int
    end_ms: int
    labels: list[Label]
    faults: list[Fault]
    seed: int
    members: int
    days: float

    def events(self) -> Iterator[tuple[int, str, Any]]:
        """(replay_ts_ms, type, payload) in replay order: type is "registry" (a Community),
        "reading" (a Reading) or "tick" (None, once a minute, after the minute's readings)."""
        return _simulate(self)


def cups_for(index: int) -> str:
    digits = f"0021{index:012d}"
    n = int(digits) % 529
    q, r = divmod(n, 23)
    letters = "TRWAGMYFPDXBNJZSQVHLCKE"
    return f"ES{digits}{letters[q]}{letters[r]}"


def build_community(members: int, *, beta_error: float = 0.0) -> Community:
    member_list = []
    devices = []
    rng = random.Random(7)
    for i in range(1, members + 1):
        mid = f"m{i:02d}"
        member_list.append(Member(id=mid, name=f"Member {i}", cups=cups_for(1000 + i),
                                  contracted_power_kw=rng.choice((3.45, 4.6, 5.75))))
        devices.append(Device(id=f"meter-{mid}", community_id=COMMUNITY_ID, role="consumption",
                              member_id=mid, protocol={"type": "mqtt", "decoder": "shelly-gen2"},
                              expected_interval_s=STEP_S))
    plants = (Plant("plant-1", "Plant 1", None, 30.0, LATITUDE, LONGITUDE),
              Plant("plant-2", "Plant 2", None, 20.0, LATITUDE, LONGITUDE))
    for did, plant, rated, source, _, _ in INVERTERS:
        devices.append(Device(id=did, community_id=COMMUNITY_ID, role="generation",
                              plant_id=plant, protocol={"type": "modbus", "map": source},
                              expected_interval_s=STEP_S, rated_power_w=rated))
    for m in member_list:
        devices.append(Device(id=f"datadis:{m.cups}", community_id=COMMUNITY_ID,
                              role="consumption", member_id=m.id, protocol={"type": "datadis"},
                              expected_interval_s=3600.0))
    base = round(1.0 / members, 6)
    betas = {m.cups: base for m in member_list}
    betas[member_list[-1].cups] = round(1.0 - base * (members - 1), 6)
    betas[member_list[0].cups] = round(betas[member_list[0].cups] - beta_error, 6)
    schedule = CoefficientSchedule("static", betas, source="bench-static")
    return Community(id=COMMUNITY_ID, name="Bench community", cau=None, timezone="Europe/Madrid",
                     latitude=LATITUDE, longitude=LONGITUDE, members=tuple(member_list),
                     plants=plants, devices=tuple(devices), schedules=(schedule,))


# -- fault plan --------------------------------------------------------------------------------
def _local_hour(ts_ms: int) -> float:
    """Approximate local solar-ish hour (UTC+2 in the season the bench defaults to)."""
    return ((ts_ms / HOUR_MS) + 2) % 24


class _Planner:
    """Places faults without overlap per device (with a cool-down so alarms can close)."""

    def __init__(self, rng: random.Random, start_ms: int, end_ms: int) -> None:
        self.rng = rng
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.busy: dict[str, list[tuple[int, int]]] = {}

    def free(self, ids: list[str], start: int, end: int, cooldown_ms: int) -> bool:
        return all(not (start < b + cooldown_ms and a < end + cooldown_ms)
                   for i in ids for a, b in self.busy.get(i, []))

    def place(self, ids: list[str], duration_ms: int, *, hours: tuple[float, float] = (0, 24),
              cooldown_ms: int = 3 * HOUR_MS, daylight: bool = False) -> int | None:
        for _ in range(400):
            start = self.rng.randrange(self.start_ms + 2 * HOUR_MS,
                                       max(self.end_ms - duration_ms - HOUR_MS,
                                           self.start_ms + 2 * HOUR_MS + 1), MIN_MS)
            if start + duration_ms > self.end_ms - HOUR_MS:
                continue
            h0, h1 = _local_hour(start), _local_hour(start + duration_ms)
            if hours[0] <= hours[1]:
                ok = hours[0] <= h0 <= hours[1] and hours[0] <= h1 <= hours[1] and h1 > h0
            else:  # wraps midnight
                ok = (h0 >= hours[0] or h0 <= hours[1]) and (h1 >= hours[0] or h1 <= hours[1])
            if daylight:
                ok = ok and all(sun_elevation(LATITUDE, LONGITUDE, t) > 25
                                for t in (start, start + duration_ms))
            if ok and self.free(ids, start, start + duration_ms, cooldown_ms):
                for i in ids:
                    self.busy.setdefault(i, []).append((start, start + duration_ms))
                return start
        return None


def plan(members: int, days: float, seed: int, start_ms: int) -> Dataset:
    rng = random.Random(seed)
    community = build_community(members)
    bad = build_community(members, beta_error=0.03)
    end_ms = start_ms + int(days * 24 * HOUR_MS)
    planner = _Planner(rng, start_ms, end_ms)
    labels: list[Label] = []
    faults: list[Fault] = []
    member_ids = [m.id for m in community.members]
    inverters = [i[0] for i in INVERTERS]
    scale = max(days * members / 300.0, 0.0)

    def count(per_month: float, minimum: int = 2) -> int:
        return max(minimum, round(per_month * scale))

    def meter(mid: str) -> str:
        return f"meter-{mid}"

    def add(kind: str, subject: str, member: str | None, start: int, end: int,
            fault: Fault | None, also: list[str] | None = None, **detail: Any) -> None:
        labels.append(Label(kind, subject, member, start, end, also or [], detail))
        if fault is not None:
            faults.append(fault)

    for _ in range(count(8)):  # offline meters and inverters
        did = rng.choice([meter(m) for m in member_ids] + inverters)
        dur = rng.randrange(20, 90) * MIN_MS
        start = planner.place([did], dur)
        if start is not None:
            member = did[6:] if did.startswith("meter-") else None
            add("offline", did, member, start, start + dur,
                Fault("drop", did, start, start + dur), ["underperformance"])
    for _ in range(count(5)):  # frozen household meter
        mid = rng.choice(member_ids)
        dur = rng.randrange(180, 300) * MIN_MS
        start = planner.place([meter(mid)], dur)
        if start is not None:
            add("frozen", meter(mid), mid, start, start + dur,
                Fault("freeze", meter(mid), start, start + dur), ["divergence"])
    for _ in range(count(2)):  # frozen inverter around noon
        did = rng.choice(inverters)
        dur = rng.randrange(90, 150) * MIN_MS
        start = planner.place([did], dur, hours=(11.0, 16.5), daylight=True)
        if start is not None:
            add("frozen", did, None, start, start + dur, Fault("freeze", did, start, start + dur),
                ["underperformance"])
    oor_actions = ("sentinel", "overscale", "negative", "gen_overscale")
    for n in range(count(8, minimum=4)):
        action = oor_actions[n % len(oor_actions)]
        if action == "gen_overscale":
            did, member, dur = rng.choice(inverters), None, rng.randrange(20, 40) * MIN_MS
            start = planner.place([did], dur, hours=(10.0, 17.0), daylight=True)
        else:
            member = rng.choice(member_ids)
            did = meter(member)
            dur = {"sentinel": rng.randrange(5, 15), "overscale": rng.randrange(10, 30),
                   "negative": rng.randrange(60, 180)}[action] * MIN_MS
            start = planner.place([did], dur)
        if start is not None:
            params = {"value": rng.choice((65535.0, -32768.0))} if action == "sentinel" else {}
            add("out_of_range", did, member, start, start + dur,
                Fault(action, did, start, start + dur, params),
                ["divergence", "counter_jump", "underperformance"], action=action)
    for n in range(count(6)):
        mid = rng.choice(member_ids)
        action = ("reset", "replace")[n % 2]
        start = planner.place([meter(mid)], 5 * MIN_MS)
        if start is not None:
            add("counter_backwards", meter(mid), mid, start, start + 5 * MIN_MS,
                Fault(action, meter(mid), start, end_ms), [], action=action)
    for _ in range(count(6)):
        did = rng.choice([meter(m) for m in member_ids] + inverters)
        start = planner.place([did], 5 * MIN_MS)
        if start is not None:
            member = did[6:] if did.startswith("meter-") else None
            add("counter_jump", did, member, start, start + 5 * MIN_MS,
                Fault("jump", did, start, end_ms, {"wh": rng.randrange(20_000, 100_000)}))
    for _ in range(count(5)):
        did = rng.choice(inverters)
        dur = rng.randrange(30, 90) * MIN_MS
        start = planner.place([did], dur, hours=(23.0, 4.0))
        if start is not None:
            add("night_generation", did, None, start, start + dur,
                Fault("night", did, start, start + dur, {"w": rng.randrange(300, 1500)}))
    for _ in range(count(6)):
        did = rng.choice(inverters)
        dur = rng.randrange(120, 300) * MIN_MS
        start = planner.place([did], dur, hours=(9.5, 17.5), daylight=True)
        if start is not None:
            add("underperformance", did, None, start, start + dur,
                Fault("derate", did, start, start + dur, {"factor": rng.uniform(0.2, 0.45)}))
    for _ in range(count(6)):
        did = rng.choice(inverters)
        dur = rng.randrange(30, 120) * MIN_MS
        start = planner.place([did], dur, hours=(9.0, 18.0), daylight=True)
        if start is not None:
            add("inverter_fault", did, None, start, start + dur,
                Fault("fault", did, start, start + dur), ["underperformance"])
    for n in range(count(5)):
        mid = rng.choice(member_ids)
        dur = rng.randrange(12, 36) * HOUR_MS
        start = planner.place([meter(mid), f"member:{mid}"], dur)
        if start is not None:
            factor = rng.uniform(0.5, 0.7) if n % 2 == 0 else rng.uniform(1.35, 1.5)
            add("divergence", meter(mid), mid, start, start + dur,
                Fault("scale", meter(mid), start, start + dur, {"factor": factor}),
                factor=round(factor, 3))
    for _ in range(count(2, minimum=1)):
        dur = rng.randrange(6, 24) * HOUR_MS
        start = planner.place(["registry"], dur, cooldown_ms=6 * HOUR_MS)
        if start is not None:
            add("coefficients_sum", f"registry:{COMMUNITY_ID}", None, start, start + dur,
                Fault("registry", "registry", start, start + dur))
    for _ in range(count(3, minimum=1)):
        mid = rng.choice(member_ids)
        dur = rng.randrange(8 * 60, 14 * 60) * MIN_MS
        start = planner.place([meter(mid), f"member:{mid}"], dur, cooldown_ms=8 * HOUR_MS)
        if start is not None:
            add("member_no_data", f"member:{COMMUNITY_ID}:{mid}", mid, start, start + dur,
                Fault("silence", meter(mid), start, start + dur, {"member": mid}))
            add("offline", meter(mid), mid, start, start + dur, None)
    labels.sort(key=lambda label: label.start_ms)
    return Dataset(community, bad, start_ms, end_ms, labels, faults, seed, members, days)


# -- simulation ---------------------------------------------------------------------------------
def _clear_sky(elevation: float) -> float:
    """Normalised AC output under a clear sky (independent of the detectors' own bound)."""
    if elevation <= 0.5:
        return 0.0
    s = math.sin(math.radians(elevation))
    return 0.86 * s * 0.7 ** ((1 / s) ** 0.678) / 0.7 ** 1.0 * 0.97


@dataclass
class _Meter:
    base_w: float
    fridge_phase: int
    cap_w: float
    energy_wh: float
    returned_wh: float = 0.0
    events: list[list[float]] = field(default_factory=list)  # [end_minute, watts]


def _simulate(ds: Dataset) -> Iterator[tuple[int, str, Any]]:
    rng = random.Random(ds.seed + 1)
    community = ds.community
    members = community.members
    meters = {m.id: _Meter(base_w=rng.uniform(80, 250), fridge_phase=rng.randrange(45),
                           cap_w=0.8 * m.contracted_power_kw * 1000,
                           energy_wh=rng.uniform(1e6, 5e6)) for m in members}
    days = int(math.ceil(ds.days)) + 1
    weather = [rng.choices(("clear", "partly", "overcast"), (0.5, 0.3, 0.2))[0]
               for _ in range(days)]
    holidays: dict[str, set[int]] = {}
    for m in members:
        if rng.random() < 0.25:
            first = rng.randrange(days)
            holidays[m.id] = set(range(first, first + rng.randrange(2, 6)))
    inverter_energy = {i[0]: rng.uniform(5e6, 2e7) for i in INVERTERS}
    by_device: dict[str, list[Fault]] = {}
    registry_faults = []
    for fault in ds.faults:
        if fault.action == "registry":
            registry_faults.append(fault)
        else:
            by_device.setdefault(fault.device_id, []).append(fault)
        if fault.action == "silence":
            by_device.setdefault(f"datadis:{community.member(fault.params['member']).cups}",
                                 []).append(fault)
    frozen_value: dict[str, Reading] = {}
    offsets: dict[str, float] = {}
    cloud = 1.0
    hourly_true: dict[str, float] = {m.id: 0.0 for m in members}
    pending_datadis: list[tuple[int, Reading]] = []
    registry_changes = sorted([(f.start_ms, ds.bad_community) for f in registry_faults]
                              + [(f.end_ms, ds.community) for f in registry_faults],
                              key=lambda x: x[0])
    yield ds.start_ms, "registry", community
    minute = 0
    ts = ds.start_ms
    while ts < ds.end_ms:
        while registry_changes and registry_changes[0][0] <= ts:
            yield ts, "registry", registry_changes.pop(0)[1]
        day = (ts - ds.start_ms) // (24 * HOUR_MS)
        local_min = int(((ts / MIN_MS) + 120) % 1440)
        # weather: a shared cloud factor with day-type dynamics
        kind = weather[day]
        if kind == "clear":
            cloud = 0.97 + rng.uniform(-0.02, 0.02)
        elif kind == "partly":
            if rng.random() < 0.08:
                cloud = 1.0 if cloud < 0.7 else rng.uniform(0.25, 0.5)
        else:
            cloud = min(max(cloud * 0.9 + 0.1 * rng.uniform(0.12, 0.4), 0.1), 0.4) \
                if cloud <= 0.4 else 0.25
        elevation = sun_elevation(LATITUDE, LONGITUDE, ts)
        sky = _clear_sky(elevation)
        for did, _plant, rated, source, (day_status, night_status), night_w in INVERTERS:
            true_w = min(rated, rated * sky * cloud * rng.uniform(0.97, 1.03))
            status = day_status if true_w > 0 else night_status
            power = true_w if true_w > 0 else night_w
            reading = _apply(ds, by_device.get(did, ()), did, ts, source, power, status, rated,
                             inverter_energy, frozen_value, offsets, rng, generation=True)
            if reading is not None:
                yield ts, "reading", reading
        for m in members:
            meter = meters[m.id]
            on_holiday = day in holidays.get(m.id, ())
            base = 70.0 if on_holiday else meter.base_w
            fridge = 95.0 if (minute + meter.fridge_phase) % 45 < 15 else 0.0
            if not on_holiday:
                hour = local_min / 60
                rate = 0.04 if 7 <= hour < 9 or 13 <= hour < 15 or 19 <= hour < 23 else 0.008
                if rng.random() < rate:
                    meter.events.append([minute + rng.randrange(5, 60), rng.uniform(400, 2500)])
            meter.events = [e for e in meter.events if e[0] > minute]
            true_w = min(base + fridge + sum(e[1] for e in meter.events) + rng.gauss(0, 4),
                         meter.cap_w)
            hourly_true[m.id] += true_w / 60
            reading = _apply(ds, by_device.get(f"meter-{m.id}", ()), f"meter-{m.id}", ts,
                             "shelly-gen2", true_w, None, None, meters, frozen_value, offsets,
                             rng, generation=False)
            if reading is not None:
                yield ts, "reading", reading
        ts += MIN_MS
        minute += 1
        if ts % HOUR_MS == 0:
            for m in members:
                did = f"datadis:{m.cups}"
                if not _silenced(by_device.get(did, ()), ts - 1):
                    pending_datadis.append((ts + DATADIS_LAG_MS, Reading(
                        device_id=did, ts_ms=ts, source="datadis", community_id=COMMUNITY_ID,
                        interval_s=3600, interval_energy_wh=round(hourly_true[m.id]))))
                hourly_true[m.id] = 0.0
        while pending_datadis and pending_datadis[0][0] <= ts:
            yield pending_datadis[0][0], "reading", pending_datadis.pop(0)[1]
        yield ts, "tick", None


def _silenced(faults: Any, ts: int) -> bool:
    return any(f.action == "silence" and f.start_ms <= ts < f.end_ms for f in faults)


def _apply(ds: Dataset, faults: Any, did: str, ts: int, source: str, power: float,
           status: str | None, rated: float | None, energy: dict[str, Any],
           frozen_value: dict[str, Reading], offsets: dict[str, float], rng: random.Random,
           *, generation: bool) -> Reading | None:
    """Advance the device's true counter, then alter what it reports per the active faults."""
    active = [f for f in faults if f.start_ms <= ts < f.end_ms]
    actions = {f.action: f for f in active}
    reported_power = power
    if "derate" in actions:
        reported_power = power * actions["derate"].params["factor"] if power > 0 else power
    if "fault" in actions:
        reported_power = 0.0
        status = FAULT_STATUS[source]
    if "night" in actions:
        reported_power = actions["night"].params["w"] * rng.uniform(0.9, 1.1)
        status = "4" if source == "sunspec" else "0x0200"
    if "scale" in actions:
        reported_power = power * actions["scale"].params["factor"]
    # the device's own counter integrates what it (believes it) measures
    key = did
    if generation:
        energy[key] += max(reported_power, 0.0) / 60
        counter = energy[key]
    else:
        meter = energy[did[6:]]
        if "negative" in actions:
            meter.returned_wh += abs(reported_power) / 60
        else:
            meter.energy_wh += max(reported_power, 0.0) / 60
        counter = meter.energy_wh
    for fault in faults:  # permanent counter changes from the fault's start on
        if fault.start_ms == ts and fault.action in ("reset", "replace", "jump"):
            base = counter + offsets.get(did, 0.0)
            target = {"reset": 0.0, "replace": rng.uniform(1000, 50_000),
                      "jump": base + fault.params.get("wh", 0)}[fault.action]
            offsets[did] = offsets.get(did, 0.0) + target - base
    counter += offsets.get(did, 0.0)
    if "drop" in actions or "silence" in actions:
        return None
    if "negative" in actions:
        reported_power = -power
    if "overscale" in actions:
        reported_power = power * 1000  # kW/W confusion in a decoder map
    if "gen_overscale" in actions:
        reported_power = (rated or 10000.0) * rng.uniform(1.3, 1.6)
    values: dict[str, Any] = {
        "power_w": round(reported_power, 1), "energy_wh": round(counter, 1),
        "voltage_v": round(230 + rng.gauss(0, 1.5), 1)}
    if not generation:
        values["energy_returned_wh"] = round(energy[did[6:]].returned_wh, 1)
    if "sentinel" in actions:
        values["power_w"] = actions["sentinel"].params["value"]
    if "freeze" in actions:
        previous = frozen_value.get(did)
        if previous is not None and previous.ts_ms >= actions["freeze"].start_ms - MIN_MS:
            return Reading(**{**previous.to_dict(), "ts_ms": ts})
    reading = Reading(device_id=did, ts_ms=ts, source=source, community_id=COMMUNITY_ID,
                      status=status, **values)
    frozen_value[did] = reading
    return reading


# -- files --------------------------------------------------------------------------------------
def write(ds: Dataset, out: Path) -> None:
    """community.json, bad_community.json, labels.json and events.jsonl.gz in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "community.json").write_bytes(ds.community.to_json())
    (out / "bad_community.json").write_bytes(ds.bad_community.to_json())
    (out / "labels.json").write_bytes(orjson.dumps(
        {"seed": ds.seed, "members": ds.members, "days": ds.days, "start_ms": ds.start_ms,
         "end_ms": ds.end_ms, "labels": [asdict(label) for label in ds.labels]},
        option=orjson.OPT_INDENT_2))
    with gzip.open(out / "events.jsonl.gz", "wb", compresslevel=3) as fh:
        for ts, kind, payload in ds.events():
            if kind == "reading":
                fh.write(b'{"t":%d,"reading":%s}\n' % (ts, payload.to_json()))
            elif kind == "registry":
                fh.write(b'{"t":%d,"registry":"%s"}\n' % (
                    ts, b"bad" if payload is ds.bad_community else b"good"))


def default_start_ms() -> int:
    return int(datetime(2026, 5, 3, 22, 0, tzinfo=UTC).timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(".local/anomaly-dataset"))
    args = parser.parse_args(argv)
    ds = plan(args.members, args.days, args.seed, default_start_ms())
    write(ds, args.out)
    kinds: dict[str, int] = {}
    for label in ds.labels:
        kinds[label.kind] = kinds.get(label.kind, 0) + 1
    print(f"wrote {args.out}: {len(ds.labels)} labels {kinds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
