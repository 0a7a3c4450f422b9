"""The simulation run: a simulated clock, the meters' publish loop and the inverters' servers.

Everything is driven by one :class:`SimClock` so every timestamp a device shows (Shelly Gen2
``params.ts``, Tasmota ``Time``, the inverters' daily yield) belongs to the same simulated
instant, whatever the speed-up. Meters publish every ``expected_interval_s`` of *simulated*
time, but never more often than ``min_interval_s`` of real time (at 60× a 10 s meter publishes
every real second, each message 60 simulated seconds apart). Inverters refresh their register
image every ``inverter_interval_s`` of real time (1 s).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.simulator import load, pv
from devtools.simulator.faults import Fault, FaultBook
from devtools.simulator.inverters import InverterSample, InverterServer, SimInverter
from devtools.simulator.meters import MqttPublisher, SimMeter
from devtools.simulator.relays import SimRelay, is_relay
from devtools.simulator.state import load_state, save_state
from ioe.registry import Community, Registry, load_registry

log = logging.getLogger(__name__)


class SimClock:
    """Simulated time: starts at ``start_ms`` and runs ``speed`` times faster than real time."""

    def __init__(self, start_ms: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.start_ms, self.speed = start_ms, speed
        self._t0 = time.monotonic()

    def restart(self) -> None:
        """Make the simulated start coincide with now (called when the run begins)."""
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * 1000.0 * self.speed)

    def elapsed_min(self, now_ms: int | None = None) -> float:
        return ((self.now_ms() if now_ms is None else now_ms) - self.start_ms) / 60000.0


@dataclass
class SimConfig:
    registry_path: Path
    seed: int = 1
    speed: float = 1.0
    start_ms: int | None = None
    #: real seconds to run (None = until stopped)
    duration_s: float | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    modbus_host: str = "127.0.0.1"
    #: when set, the inverters listen on base, base+1, … (in registry port order)
    modbus_base_port: int | None = None
    state_dir: Path = Path(".local/simulator")
    faults: list[Fault] = field(default_factory=list)
    #: lower bound of the real time between two publications of one meter
    min_interval_s: float = 1.0
    inverter_interval_s: float = 1.0
    save_interval_s: float = 30.0
    communities: list[str] | None = None
    #: publish availability (online/offline) messages retained, as real last-wills are
    retain_availability: bool = True
    enable_meters: bool = True
    enable_inverters: bool = True
    #: "nodevar" (emon/<node>/<key>, no timestamp) or "json" (emon/<node> with "time")
    emonhub_format: str = "nodevar"
    #: the PV model and the households' load profiles run this much later than the clock
    #: (``--as-if HH:MM``): a demo at night shows a community at midday, every timestamp true
    day_shift_ms: int = 0


def plant_models(community: Community, seed: int) -> dict[str, pv.PlantModel]:
    return {p.id: pv.PlantModel(key=p.id, peak_power_kw=p.peak_power_kw, latitude=p.latitude,
                                longitude=p.longitude, tilt_deg=p.tilt_deg,
                                azimuth_deg=p.azimuth_deg, seed=seed)
            for p in community.plants}


def _shifted(power_fn: Callable[[int], float], shift_ms: int) -> Callable[[int], float]:
    return power_fn if not shift_ms else lambda ts_ms: power_fn(ts_ms + shift_ms)


def inverter_shares(community: Community) -> dict[str, float]:
    """Each Modbus generator's share of its plant, proportional to the rated power."""
    shares: dict[str, float] = {}
    generators = [d for d in community.generation_devices()
                  if d.protocol.get("type") == "modbus" and d.plant_id]
    for device in generators:
        same = [g for g in generators if g.plant_id == device.plant_id]
        total = sum(g.rated_power_w or 1.0 for g in same)
        shares[device.id] = (device.rated_power_w or 1.0) / total
    return shares


class Simulator:
    """One simulation run over the communities of a registry."""

    def __init__(self, config: SimConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or load_registry(config.registry_path)
        start = config.start_ms if config.start_ms is not None else int(time.time() * 1000)
        self.clock = SimClock(start, config.speed)
        self.faults = FaultBook(config.faults)
        self.resets_done: set[int] = set()
        saved = load_state(config.state_dir)
        self.meters: list[SimMeter] = []
        #: controllable relays with a load (devtools.simulator.relays): they publish like meters
        self.relays: list[SimRelay] = []
        self.inverters: list[SimInverter] = []
        self.servers: dict[str, InverterServer] = {}
        self.samples: dict[str, deque[InverterSample]] = {}
        self.plants: dict[str, pv.PlantModel] = {}
        self._next_publish: dict[str, int] = {}
        # (asyncio events bind to a loop only when first awaited, so creating them here is fine)
        self._stop = asyncio.Event()
        #: set once the Modbus servers listen and the meters publish
        self.ready = asyncio.Event()
        self.publisher: MqttPublisher | None = None
        known: set[str] = set()
        communities = [c for c in self.registry.communities.values()
                       if not config.communities or c.id in config.communities]
        for community in communities:
            plants = plant_models(community, config.seed)
            self.plants.update(plants)
            shares = inverter_shares(community)
            for device in community.devices:
                protocol = device.protocol
                kind = protocol.get("type")
                if kind == "mqtt" and config.enable_meters and is_relay(device):
                    self.relays.append(SimRelay.from_device(device, saved.get(device.id)))
                    known.add(device.id)
                elif kind == "mqtt" and config.enable_meters:
                    meter = SimMeter.from_device(device, config.seed, community.timezone,
                                                 saved.get(device.id))
                    if meter.decoder == "emonhub" and config.emonhub_format == "json":
                        meter.variant = "json"
                    meter.profile_shift_ms = config.day_shift_ms
                    self.meters.append(meter)
                    known.add(device.id)
                elif kind == "modbus" and device.id in shares and config.enable_inverters:
                    plant = plants[str(device.plant_id)]
                    prev = saved.get(device.id) or {}
                    initial = load._rng("initial-yield", config.seed, device.id).uniform(
                        8e6, 40e6)
                    self.inverters.append(SimInverter(
                        device_id=device.id, map_name=str(protocol.get("map", "sunspec")),
                        unit=int(protocol.get("unit", 1)), port=int(protocol.get("port", 502)),
                        rated_w=float(device.rated_power_w or plant.peak_power_kw * 1000),
                        share=shares[device.id],
                        power_fn=_shifted(functools.partial(pv.plant_power_w, plant),
                                          config.day_shift_ms),
                        timezone=community.timezone,
                        energy_wh=float(prev.get("energy_wh", round(initial, 1))),
                        daily_wh=float(prev.get("daily_wh", 0.0)), day=str(prev.get("day", "")),
                        meter_exported_wh=float(prev.get("meter_exported_wh", 0.0)),
                        meter_imported_wh=float(prev.get("meter_imported_wh", 0.0)),
                        serial=f"SIM{load._rng('serial', device.id).randrange(10**7):07d}"))
                    known.add(device.id)
        unknown = self.faults.devices() - known
        if unknown:
            raise ValueError(f"fault for unknown or non-simulated device(s): "
                             f"{', '.join(sorted(unknown))}")
        if config.modbus_base_port is not None:
            for i, inv in enumerate(sorted(self.inverters, key=lambda v: v.port)):
                inv.port = config.modbus_base_port + i
        # stagger the meters over their first interval so they do not all publish at once
        for i, sim_device in enumerate(self.publishers):
            interval_ms = int(sim_device.device.expected_interval_s * 1000)
            offset = int(interval_ms * i / max(len(self.publishers), 1))
            self._next_publish[sim_device.device_id] = self.clock.start_ms + offset
        self._saved_at = time.monotonic()

    @property
    def publishers(self) -> list[SimMeter | SimRelay]:
        """Every simulated device that publishes on MQTT."""
        return [*self.meters, *self.relays]

    # -- lifecycle ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def state(self) -> dict[str, dict[str, Any]]:
        devices: dict[str, dict[str, Any]] = dict(load_state(self.config.state_dir))
        devices.update({m.device_id: m.state() for m in self.publishers})
        devices.update({i.device_id: i.state() for i in self.inverters})
        return devices

    def save(self) -> Path:
        return save_state(self.config.state_dir, self.state())

    def describe(self) -> list[str]:
        start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.clock.start_ms / 1000))
        lines = [f"simulated clock starts {start} at {self.config.speed:g}× "
                 f"(seed {self.config.seed})",
                 f"{len(self.meters)} MQTT meters → {self.config.mqtt_host}:"
                 f"{self.config.mqtt_port}"]
        for relay in self.relays:
            lines.append(f"relay {relay.device_id}: {relay.load_w:.0f} W load, takes "
                         f"{relay.command_topic}")
        for inv in self.inverters:
            lines.append(f"inverter {inv.device_id}: {inv.map_name} Modbus TCP on "
                         f"{self.config.modbus_host}:{inv.port} unit {inv.unit}")
        for fault in self.faults.faults:
            lines.append(f"fault {fault.kind} on {fault.device_id} from minute "
                         f"{fault.start_min:g}" + (f" to {fault.end_min:g}"
                                                   if fault.end_min is not None else ""))
        return lines

    def _write_fault_log(self) -> None:
        if not self.faults.faults:
            return
        path = self.config.state_dir / "faults.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([f.to_dict(self.clock.start_ms) for f in self.faults.faults],
                                   indent=1))

    async def run(self) -> dict[str, Any]:
        """Run until the duration has passed or :meth:`request_stop`; saves the counters."""
        self.clock.restart()
        self._write_fault_log()
        if self.publishers:
            self.publisher = MqttPublisher(self.config.mqtt_host, self.config.mqtt_port)
            self.publisher.connect()
            for relay in self.relays:
                self.publisher.subscribe(relay.command_topic, relay.on_command)
            self.publisher.publish([a for m in self.publishers
                                    if (a := m.availability(True)) is not None
                                    and not self.faults.active(m.device_id, "offline", 0.0)])
        tasks: list[asyncio.Task[None]] = []
        try:
            for inv in self.inverters:
                sample = inv.step(self.clock.now_ms(), self._tripped(inv, self.clock.now_ms()))
                server = InverterServer(inv.device_id, inv.map_name, self.config.modbus_host,
                                        inv.port, inv.unit, sample, limit=inv.limit)
                self.servers[inv.device_id] = server
                self.samples[inv.device_id] = deque([sample], maxlen=8)
                if not self.faults.active(inv.device_id, "offline", 0.0):
                    await server.start()
            if self.publishers:
                tasks.append(asyncio.create_task(self._meter_loop()))
            if self.inverters:
                tasks.append(asyncio.create_task(self._inverter_loop()))
            self.ready.set()
            timeout = self.config.duration_s
            try:
                await asyncio.wait_for(self._stop.wait(), timeout)
            except TimeoutError:
                pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for server in self.servers.values():
                await server.stop()
            if self.publisher is not None:
                self.publisher.publish([(t, off, self.config.retain_availability)
                                        for m in self.publishers
                                        if (a := m.availability(False)) is not None
                                        for t, off, _ in [a]])
                self.publisher.close()
            path = self.save()
            log.info("simulator stopped; counters saved to %s", path)
        return {"published": self.publisher.published if self.publisher else 0,
                "sim_end_ms": self.clock.now_ms()}

    # -- loops -------------------------------------------------------------------------------
    def _tripped(self, inv: SimInverter, now_ms: int) -> bool:
        return self.faults.active(inv.device_id, "inverter-fault", self.clock.elapsed_min(now_ms))

    def meter_tick(self, now_ms: int) -> list[tuple[str, bytes, bool]]:
        """Step every meter whose publication is due; the messages to publish."""
        messages: list[tuple[str, bytes, bool]] = []
        elapsed = self.clock.elapsed_min(now_ms)
        for meter in self.publishers:
            due = self._next_publish[meter.device_id]
            if now_ms < due:
                continue
            out = meter.step(now_ms, elapsed, self.faults, self.resets_done)
            if not self.config.retain_availability:
                out = [(t, p, False) for t, p, _ in out]
            messages.extend(out)
            interval_ms = int(max(meter.device.expected_interval_s,
                                  self.config.min_interval_s * self.config.speed) * 1000)
            # the next one an interval after this one (a stall never causes a burst)
            self._next_publish[meter.device_id] = now_ms + interval_ms
        return messages

    async def _meter_loop(self) -> None:
        assert self.publisher is not None
        intervals = [m.device.expected_interval_s for m in self.publishers]
        # fine enough that the staggered meters publish spread out, not in bursts
        tick_s = max(min(intervals) / self.config.speed, self.config.min_interval_s) / 2.0
        tick_s = min(max(tick_s, 0.05), 0.5)
        while True:
            messages = self.meter_tick(self.clock.now_ms())
            if messages:
                self.publisher.publish(messages)
            if time.monotonic() - self._saved_at > self.config.save_interval_s:
                await asyncio.to_thread(self.save)
                self._saved_at = time.monotonic()
            await asyncio.sleep(tick_s)

    async def _inverter_loop(self) -> None:
        while True:
            now_ms = self.clock.now_ms()
            elapsed = self.clock.elapsed_min(now_ms)
            for inv in self.inverters:
                sample = inv.step(now_ms, self._tripped(inv, now_ms))
                server = self.servers[inv.device_id]
                server.update(sample)
                self.samples[inv.device_id].append(sample)
                offline = self.faults.active(inv.device_id, "offline", elapsed)
                if offline and server.running:
                    log.warning("%s: offline (fault injection)", inv.device_id)
                    await server.stop()
                elif not offline and not server.running:
                    await server.start()
            await asyncio.sleep(self.config.inverter_interval_s)
