"""Hand-built communities and reading series for the anomaly detector tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ioe.coefficients import CoefficientSchedule
from ioe.reading import Reading
from ioe.registry import Community, Device, Member, Plant
from streams.anomalies.config import AnomalyConfig
from streams.anomalies.engine import AnomalyEngine
from streams.anomalies.lifecycle import Alarm

LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
CID = "ce-test"
LAT, LON = 39.47, -0.38  # Valencia
MIN = 60_000
HOUR = 3_600_000


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """UTC epoch ms."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def cups(n: int) -> str:
    digits = f"0021{n:012d}"
    q, r = divmod(int(digits) % 529, 23)
    return f"ES{digits}{LETTERS[q]}{LETTERS[r]}"


def community(members: int = 2, inverters: int = 4, *, betas: list[float] | None = None,
              interval_s: float = 60.0) -> Community:
    """Members m1… (meter ``meter-m<i>``, contracted 4.6 kW), one 40 kWp plant with
    ``inverters`` inverters ``inv-<k>`` rated 10 kW, plus the implicit Datadis devices."""
    ms_ = tuple(Member(id=f"m{i}", name=f"m{i}", cups=cups(100 + i), contracted_power_kw=4.6)
                for i in range(1, members + 1))
    plant = Plant(id="plant-1", name="roof", cups=None, peak_power_kw=10.0 * max(inverters, 1),
                  latitude=LAT, longitude=LON)
    devices = [Device(id=f"meter-{m.id}", community_id=CID, role="consumption", member_id=m.id,
                      expected_interval_s=interval_s) for m in ms_]
    devices += [Device(id=f"inv-{k}", community_id=CID, role="generation", plant_id="plant-1",
                       expected_interval_s=interval_s, rated_power_w=10_000.0,
                       protocol={"type": "modbus"}) for k in range(1, inverters + 1)]
    devices += [Device(id=f"datadis:{m.cups}", community_id=CID, role="consumption",
                       member_id=m.id, protocol={"type": "datadis"}, expected_interval_s=3600.0)
                for m in ms_]
    betas = betas if betas is not None else [round(1 / members, 6)] * (members - 1) + [
        round(1 - round(1 / members, 6) * (members - 1), 6)]
    schedule = CoefficientSchedule("static", {m.cups: b for m, b in zip(ms_, betas, strict=True)},
                                   source="test")
    return Community(id=CID, name=CID, cau=None, timezone="Europe/Madrid", latitude=LAT,
                     longitude=LON, members=ms_, plants=(plant,), devices=tuple(devices),
                     schedules=(schedule,))


def reading(device_id: str, ts_ms: int, power_w: float | None = None, *,
            source: str = "test", **extra: object) -> Reading:
    return Reading(device_id=device_id, ts_ms=ts_ms, source=source, community_id=CID,
                   power_w=power_w, **extra)  # type: ignore[arg-type]


class Harness:
    """An engine fed with one community; collects every alarm event."""

    def __init__(self, comm: Community | None = None, config: AnomalyConfig | None = None):
        self.community = comm or community()
        self.engine = AnomalyEngine(config)
        self.events: list[Alarm] = []
        self.events += self.engine.on_registry(self.community, now_ms=0)

    def feed(self, readings: Iterable[Reading]) -> list[Alarm]:
        new: list[Alarm] = []
        for r in readings:
            device = self.community.device(r.device_id)
            assert device is not None, r.device_id
            new += self.engine.on_reading(device, self.community, r)
        self.events += new
        return new

    def tick(self, now_ms: int) -> list[Alarm]:
        new = self.engine.on_tick(now_ms)
        self.events += new
        return new

    def of(self, kind: str, state: str | None = None) -> list[Alarm]:
        return [a for a in self.events if a.kind == kind and (state is None or a.state == state)]
