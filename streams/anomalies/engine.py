"""The anomaly engine: routes readings, ticks, registry updates and hourly comparisons to the
detectors and their conditions through the alarm lifecycle. Pure: no I/O, no clock.

Time is always given: a reading's ``ts_ms`` for reading detectors, ``now_ms`` for ticks, so the
same engine serves the live worker (wall clock ticks) and the replay of a labelled data set
(simulated ticks) with identical results.

Root-cause suppression keeps one fault from raising a storm: an inverter that reports a fault
(or is offline/frozen) is not also judged for underperformance, and a member-hour during which
the member's meter had a data-quality alarm is not compared with Datadis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ioe.messages import Alarm
from ioe.reading import Reading
from ioe.registry import Community, Device, official_device_id
from streams.anomalies import (
    counter,
    divergence,
    frozen,
    inverter_status,
    night,
    offline,
    out_of_range,
    registry_check,
    underperformance,
)
from streams.anomalies.config import AnomalyConfig, Hysteresis
from streams.anomalies.lifecycle import AlarmBook, Condition
from streams.anomalies.limits import CONTRACT_ROLES, power_limit_w, rated_w
from streams.anomalies.sun import clear_sky_ratio, sun_elevation

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000

#: kinds that make a device's own data untrustworthy while they hold
DATA_QUALITY_KINDS = (offline.KIND, frozen.KIND, out_of_range.KIND, counter.KIND_BACKWARDS,
                      counter.KIND_JUMP)
#: kind -> kinds that, when active on the same device, explain it (so it is not judged)
SUPPRESSED_BY: dict[str, tuple[str, ...]] = {
    underperformance.KIND: (inverter_status.KIND, offline.KIND, frozen.KIND, out_of_range.KIND),
    # a frozen device catching up makes its counter leap by the energy it failed to report
    counter.KIND_JUMP: (frozen.KIND,),
}
ALL_KINDS = (offline.KIND, frozen.KIND, out_of_range.KIND, counter.KIND_BACKWARDS,
             counter.KIND_JUMP, night.KIND, underperformance.KIND, inverter_status.KIND,
             divergence.KIND, registry_check.KIND_COEFFICIENTS, registry_check.KIND_NO_DATA)


@dataclass
class DeviceState:
    """Everything the detectors remember about one device (serialisable)."""

    last_seen_ms: int | None = None
    watch_since_ms: int | None = None
    frozen: frozen.FrozenState = field(default_factory=frozen.FrozenState)
    counter: counter.CounterState = field(default_factory=counter.CounterState)
    meter: divergence.MeterHours = field(default_factory=divergence.MeterHours)
    #: [ts_ms, smoothed power/rated] of the last generation reading (peer comparison)
    ratio: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceState:
        return cls(last_seen_ms=data.get("last_seen_ms"),
                   watch_since_ms=data.get("watch_since_ms"),
                   frozen=frozen.FrozenState(**data.get("frozen", {})),
                   counter=counter.CounterState(**data.get("counter", {})),
                   meter=divergence.MeterHours(**data.get("meter", {})),
                   ratio=data.get("ratio"))


class AnomalyEngine:
    def __init__(self, config: AnomalyConfig | None = None, *,
                 claim_on_registry: bool = True) -> None:
        """``claim_on_registry``: a registry message makes this engine responsible for the
        community (ticks, registry checks). A worker that owns only some partitions passes
        False and claims a community when its first reading arrives."""
        self.config = config or AnomalyConfig()
        self.claim_on_registry = claim_on_registry
        self.communities: dict[str, Community] = {}
        self.owned: set[str] = set()
        self.devices: dict[str, DeviceState] = {}
        self.book = AlarmBook()
        self.member_seen: dict[str, int] = {}
        self.compared: dict[str, list[int]] = {}
        #: subject -> [[hour_start_ms, meter_wh, official_wh], …] of the trailing window
        self.recent: dict[str, list[list[float]]] = {}
        self.clock_ms = 0

    # -- inputs ----------------------------------------------------------------------------
    def on_registry(self, community: Community, now_ms: int | None = None) -> list[Alarm]:
        """A (new version of a) community: remember it, check its coefficients.

        ``now_ms``: when the version took effect (default: the engine's event clock)."""
        self.communities[community.id] = community
        if self.claim_on_registry:
            self.owned.add(community.id)
        if community.id not in self.owned:
            return []
        return self._evaluate(community, registry_check.registry_subject(community.id), None,
                              registry_check.KIND_COEFFICIENTS,
                              registry_check.check_coefficients(self.config.registry, community),
                              now_ms if now_ms is not None else self.clock_ms,
                              self.config.registry.hysteresis)

    def on_reading(self, device: Device, community: Community, reading: Reading) -> list[Alarm]:
        events: list[Alarm] = []
        if community.id not in self.owned:
            self.owned.add(community.id)
            events += self.on_registry(community, now_ms=reading.ts_ms)
        elif self.communities.get(community.id) is not community:
            self.communities[community.id] = community  # registry checks: on_registry only
        ts = reading.ts_ms
        self.clock_ms = max(self.clock_ms, ts)
        state = self._state(device.id)
        state.last_seen_ms = max(state.last_seen_ms or ts, ts)
        if device.member_id:
            key = registry_check.member_subject(community.id, device.member_id)
            self.member_seen[key] = max(self.member_seen.get(key, ts), ts)
        if device.is_official:
            return events + self._on_official(device, community, reading)
        cfg = self.config
        member_id = device.member_id
        limit = power_limit_w(device, community)

        def judge(kind: str, condition: Condition | None, hysteresis: Hysteresis) -> None:
            if condition is None:
                return
            events.extend(self._evaluate(community, device.id, member_id, kind, condition, ts,
                                         hysteresis))

        judge(out_of_range.KIND, out_of_range.check(cfg.out_of_range, device, community,
                                                    reading), cfg.out_of_range.hysteresis)
        judge(frozen.KIND, frozen.check(cfg.frozen, state.frozen, device, reading),
              cfg.frozen.hysteresis)
        backwards, jump = counter.check(cfg.counter, state.counter, reading, limit)
        judge(counter.KIND_BACKWARDS, backwards, cfg.counter.hysteresis)
        if not self._suppressed(device.id, counter.KIND_JUMP):
            judge(counter.KIND_JUMP, jump, cfg.counter.hysteresis)
        elevation: float | None = None
        if device.role in ("generation", "storage") or reading.status is not None:
            latitude, longitude = _location(device, community)
            elevation = sun_elevation(latitude, longitude, ts)
        judge(inverter_status.KIND, inverter_status.check(cfg.inverter_status, reading,
                                                          elevation), cfg.inverter_status.hysteresis)
        if device.role == "generation" and elevation is not None:
            rated = rated_w(device, community)
            judge(night.KIND, night.check(cfg.night, device, reading, elevation, rated),
                  cfg.night.hysteresis)
            judge(underperformance.KIND,
                  self._underperformance(device, community, state, reading, elevation, rated),
                  cfg.underperformance.hysteresis)
        if device.role in CONTRACT_ROLES and device.member_id:
            self._track_meter(device, state, reading)
        return events

    def on_tick(self, now_ms: int, community_ids: list[str] | None = None) -> list[Alarm]:
        """Time passed: offline devices and silent members of the owned communities (or of
        ``community_ids`` among them)."""
        self.clock_ms = max(self.clock_ms, now_ms)
        events: list[Alarm] = []
        cfg = self.config
        for cid in sorted(self.owned if community_ids is None
                          else self.owned.intersection(community_ids)):
            community = self.communities.get(cid)
            if community is None:
                continue
            for device in community.devices:
                if not offline.applies(cfg.offline, device):
                    continue
                state = self._state(device.id)
                if state.watch_since_ms is None:
                    state.watch_since_ms = now_ms
                last = state.last_seen_ms if state.last_seen_ms is not None \
                    else state.watch_since_ms
                events += self._evaluate(community, device.id, device.member_id, offline.KIND,
                                         offline.check(cfg.offline, device, last, now_ms),
                                         now_ms, cfg.offline.hysteresis)
            for member in community.members:
                key = registry_check.member_subject(cid, member.id)
                last = self.member_seen.setdefault(key, now_ms)
                events += self._evaluate(
                    community, key, member.id, registry_check.KIND_NO_DATA,
                    registry_check.check_member_silence(cfg.registry, last, now_ms), now_ms,
                    cfg.registry.hysteresis)
        return events

    def on_hourly_comparison(self, community: Community, member_id: str, hour_start_ms: int,
                             meter_wh: float, official_wh: float, *, coverage: float = 1.0,
                             tainted: bool = False, device_id: str | None = None,
                             now_ms: int | None = None) -> list[Alarm]:
        """Compare one member-hour: meter-derived energy against the official (Datadis) one.

        Each member-hour is judged once (a re-delivered hour is ignored), so the hysteresis
        counts hours, not messages. Poorly covered or tainted hours are skipped.
        """
        cfg = self.config.divergence
        subject = device_id or self._member_meter_id(community, member_id)
        seen = self.compared.setdefault(subject, [])
        if hour_start_ms in seen:
            return []
        seen.append(hour_start_ms)
        if len(seen) > cfg.keep_hours:
            del seen[: len(seen) - cfg.keep_hours]
        if tainted or coverage < cfg.min_coverage:
            return []
        horizon = hour_start_ms - cfg.aggregate_hours * HOUR_MS
        recent = [r for r in self.recent.get(subject, []) if r[0] > horizon]
        recent.append([hour_start_ms, meter_wh, official_wh])
        self.recent[subject] = recent
        now = now_ms if now_ms is not None else max(self.clock_ms, hour_start_ms + HOUR_MS)
        condition = divergence.check(cfg, meter_wh, official_wh, {
            "hour_start_ms": hour_start_ms, "coverage": round(coverage, 3)}, recent)
        return self._evaluate(community, subject, member_id, divergence.KIND, condition, now,
                              cfg.hysteresis)

    # -- queries and state -------------------------------------------------------------------
    def open_alarms(self) -> list[Alarm]:
        return self.book.open_alarms()

    def device_snapshot(self, device_id: str,
                        by_subject: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        """The state of one device (detectors, its alarm tracks, its compared hours) as a
        JSON-able dict: the value of a Faust table keyed by device id. ``by_subject``
        (:meth:`AlarmBook.keys_by_subject`, once per batch) saves a pass over the book."""
        state = self.devices.get(device_id)
        if by_subject is None:
            by_subject = self.book.keys_by_subject()
        return {"state": state.to_dict() if state else None,
                "tracks": self.book.to_dict(by_subject.get(device_id, ())),
                "compared": list(self.compared.get(device_id, [])),
                "recent": list(self.recent.get(device_id, []))}

    def restore_device(self, device_id: str, snapshot: dict[str, Any]) -> None:
        if snapshot.get("state"):
            self.devices[device_id] = DeviceState.from_dict(snapshot["state"])
        self.book.tracks.update(AlarmBook.from_dict(snapshot.get("tracks")).tracks)
        if snapshot.get("compared"):
            self.compared[device_id] = list(snapshot["compared"])
        if snapshot.get("recent"):
            self.recent[device_id] = list(snapshot["recent"])

    def community_snapshot(self, community_id: str) -> dict[str, Any]:
        """Member- and registry-level state of one community (alarm tracks, member last seen)."""
        prefixes = (f"member:{community_id}:", registry_check.registry_subject(community_id))
        return {"tracks": self._tracks_where(lambda subject: subject.startswith(prefixes)),
                "member_seen": {k: v for k, v in self.member_seen.items()
                                if k.startswith(prefixes[0])}}

    def restore_community(self, snapshot: dict[str, Any]) -> None:
        self.book.tracks.update(AlarmBook.from_dict(snapshot.get("tracks")).tracks)
        for key, value in (snapshot.get("member_seen") or {}).items():
            self.member_seen[key] = max(self.member_seen.get(key, value), value)

    def _tracks_where(self, wanted: Any) -> dict[str, Any]:
        return self.book.to_dict(k for k in self.book.tracks if wanted(k.split("|", 1)[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"devices": {k: v.to_dict() for k, v in self.devices.items()},
                "book": self.book.to_dict(), "member_seen": dict(self.member_seen),
                "compared": {k: list(v) for k, v in self.compared.items()},
                "recent": {k: list(v) for k, v in self.recent.items()},
                "owned": sorted(self.owned), "clock_ms": self.clock_ms}

    def load_dict(self, data: dict[str, Any]) -> None:
        self.devices = {k: DeviceState.from_dict(v) for k, v in data["devices"].items()}
        self.book = AlarmBook.from_dict(data["book"])
        self.member_seen = dict(data["member_seen"])
        self.compared = {k: list(v) for k, v in data["compared"].items()}
        self.recent = {k: list(v) for k, v in data.get("recent", {}).items()}
        self.owned = set(data["owned"])
        self.clock_ms = int(data["clock_ms"])

    # -- internals ---------------------------------------------------------------------------
    def _state(self, device_id: str) -> DeviceState:
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceState()
        return state

    def _evaluate(self, community: Community, subject: str, member_id: str | None, kind: str,
                  condition: Condition, now_ms: int, hysteresis: Hysteresis) -> list[Alarm]:
        return self.book.evaluate(community_id=community.id, subject=subject,
                                  member_id=member_id, kind=kind, condition=condition,
                                  now_ms=now_ms, hysteresis=hysteresis)

    def _suppressed(self, device_id: str, kind: str) -> bool:
        return any(self.book.is_active(device_id, other) for other in SUPPRESSED_BY.get(kind, ()))

    def _underperformance(self, device: Device, community: Community, state: DeviceState,
                          reading: Reading, elevation: float,
                          rated: float | None) -> Condition | None:
        if reading.power_w is None or not rated:
            return None
        ts = reading.ts_ms
        cfg = self.config.underperformance
        ratio = _smooth(state.ratio, ts, max(reading.power_w, 0.0) / rated, cfg.smoothing_s)
        state.ratio = [ts, ratio]
        if self._suppressed(device.id, underperformance.KIND):
            return None
        since = frozen.suspect_since(state.frozen)
        if since is not None and ts - since > frozen.SUSPECT_AFTER_S * 1000:
            return None  # repeating a stale value: the frozen detector's business
        peers: list[float] = []
        others = 0
        for other in community.devices:
            if other.id == device.id or other.role != "generation" or other.is_official:
                continue
            others += 1
            other_state = self.devices.get(other.id)
            if other_state is None or other_state.ratio is None:
                continue
            if abs(ts - other_state.ratio[0]) / 1000 > cfg.peer_max_age_s:
                continue
            if any(self.book.is_active(other.id, k) for k in SUPPRESSED_BY[underperformance.KIND]) \
                    or self.book.is_open(other.id, underperformance.KIND):
                continue  # a broken (or already underperforming) peer is no reference
            peers.append(other_state.ratio[1])
        if others and len(peers) < cfg.min_peer_share * others:
            return None  # most peers unusable: too weak a reference to open or to close
        return underperformance.check(cfg, ratio, peers, elevation, clear_sky_ratio(elevation))

    def _track_meter(self, device: Device, state: DeviceState, reading: Reading) -> None:
        cfg = self.config.divergence
        max_gap_s = max(3 * device.expected_interval_s, 300.0)
        state.meter.add(reading, max_gap_s, cfg.keep_hours)
        ts = reading.ts_ms
        if any(self.book.is_active(device.id, kind) for kind in DATA_QUALITY_KINDS):
            state.meter.taint(ts - int(max_gap_s * 1000), ts)
        since = frozen.suspect_since(state.frozen)
        if since is not None and ts - since > frozen.SUSPECT_AFTER_S * 1000:
            state.meter.taint(since, ts)

    def _member_meter_id(self, community: Community, member_id: str) -> str:
        meters = sorted(d.id for d in community.devices_of_member(member_id)
                        if d.role in CONTRACT_ROLES and not d.is_official)
        if meters:
            return meters[0]
        member = community.member(member_id)
        return official_device_id(member.cups) if member else f"member:{community.id}:{member_id}"

    def _on_official(self, device: Device, community: Community,
                     reading: Reading) -> list[Alarm]:
        """A Datadis hour for a member: compare it with what the member's meters measured."""
        cfg = self.config.divergence
        if (not cfg.from_readings or device.member_id is None or reading.interval_s != 3600
                or reading.interval_energy_wh is None):
            return []
        hour_start = reading.ts_ms - HOUR_MS
        meters = [d for d in community.devices_of_member(device.member_id)
                  if d.role in CONTRACT_ROLES and not d.is_official]
        if not meters:
            return []
        total, coverage, tainted = 0.0, 1.0, False
        for meter in meters:
            energy, covered, bad = self._state(meter.id).meter.hour(hour_start)
            total += energy
            coverage = min(coverage, covered)
            tainted = tainted or bad
        return self.on_hourly_comparison(
            community, device.member_id, hour_start, total, reading.interval_energy_wh,
            coverage=coverage, tainted=tainted, device_id=sorted(m.id for m in meters)[0],
            now_ms=self.clock_ms)


def _smooth(previous: list[float] | None, ts_ms: int, value: float, tau_s: float) -> float:
    """Exponentially weighted moving average with time constant ``tau_s`` (restarts after a
    gap of 3 τ, and for τ = 0 it is the raw value)."""
    if previous is None or tau_s <= 0 or ts_ms - previous[0] > 3 * tau_s * 1000:
        return value
    dt_s = max(ts_ms - previous[0], 0) / 1000
    alpha = 1.0 - math.exp(-dt_s / tau_s)
    return previous[1] + alpha * (value - previous[1])


def _location(device: Device, community: Community) -> tuple[float, float]:
    plant = next((p for p in community.plants if p.id == device.plant_id), None)
    if plant is not None:
        return plant.latitude, plant.longitude
    return community.latitude, community.longitude
