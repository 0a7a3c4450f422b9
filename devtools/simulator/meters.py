"""Simulated household meters: device state, cumulative counters, and MQTT publishing.

One :class:`SimMeter` per registry device with ``protocol.type: mqtt``. At each step it
integrates the household's load profile over the simulated time since its previous step (so
counter increments are power × time, whatever the speed-up), applies the faults that are due and
returns the messages its firmware would publish (:mod:`devtools.simulator.formats`). Counters start
from a plausible, seeded meter reading and persist across restarts (:mod:`devtools.simulator.state`).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from devtools.simulator import load
from devtools.simulator.faults import FaultBook
from devtools.simulator.formats import (
    AVAILABILITY,
    FORMATS,
    VARIANTS,
    Measurement,
    Message,
    device_channel,
)
from ioe.registry import Device

log = logging.getLogger(__name__)

#: integration step of the counters, simulated seconds
COUNTER_STEP_S = 15.0


def voltage_at(key: str, seed: int, ts_ms: int, power_w: float) -> float:
    """Grid voltage seen by the meter: daily swing, load drop, a little noise (V)."""
    hour = (ts_ms / 3_600_000.0) % 24.0
    noise = load._rng("voltage", seed, key, ts_ms // 10_000).uniform(-0.6, 0.6)
    return round(231.5 + 2.5 * math.sin(2.0 * math.pi * (hour - 9.0) / 24.0)
                 - 0.0006 * power_w + noise, 1)


def phase_split(key: str, seed: int, ts_ms: int) -> tuple[float, float, float]:
    """How a three-phase home's load is spread over L1/L2/L3 this hour."""
    rng = load._rng("phases", seed, key, ts_ms // 3_600_000)
    weights = [rng.uniform(0.2, 1.0) for _ in range(3)]
    total = sum(weights)
    a, b = round(weights[0] / total, 3), round(weights[1] / total, 3)
    return (a, b, round(1.0 - a - b, 3))


@dataclass
class SimMeter:
    device: Device
    decoder: str
    topic_id: str
    household: load.Household
    timezone: str
    energy_wh: float
    energy_returned_wh: float = 0.0
    last_ms: int | None = None
    day: str = ""
    day_start_wh: float = 0.0
    yesterday_wh: float = 0.0
    last_published_wh: float | None = None
    last_published_ms: int | None = None
    session_start_wh: float | None = None
    offline: bool = False
    frozen_at: Measurement | None = None
    last: Measurement | None = None
    #: payload variant ("" = the decoder's standard format), see formats.VARIANTS
    variant: str = ""
    #: the load profile runs this much later than the clock (``ioe simulate --as-if``)
    profile_shift_ms: int = 0

    @classmethod
    def from_device(cls, device: Device, seed: int, timezone: str,
                    saved: dict[str, Any] | None) -> SimMeter:
        protocol = device.protocol
        decoder = str(protocol.get("decoder", ""))
        if decoder not in FORMATS:
            raise ValueError(f"{device.id}: the simulator cannot speak decoder {decoder!r} "
                             f"(known: {', '.join(FORMATS)})")
        topic_id = str(protocol.get("topic_id") or device.id.split(":")[0])
        household = load.make_household(device.member_id or device.id, seed)
        initial = load._rng("initial-counter", seed, device.id).uniform(500e3, 9000e3)
        meter = cls(device=device, decoder=decoder, topic_id=topic_id, household=household,
                    timezone=timezone, energy_wh=round(initial, 1))
        if saved:
            meter.energy_wh = float(saved.get("energy_wh", meter.energy_wh))
            meter.energy_returned_wh = float(saved.get("energy_returned_wh", 0.0))
            meter.day = str(saved.get("day", ""))
            meter.day_start_wh = float(saved.get("day_start_wh", meter.energy_wh))
            meter.yesterday_wh = float(saved.get("yesterday_wh", 0.0))
        return meter

    @property
    def device_id(self) -> str:
        return self.device.id

    def state(self) -> dict[str, Any]:
        return {"kind": "meter", "energy_wh": round(self.energy_wh, 3),
                "energy_returned_wh": round(self.energy_returned_wh, 3),
                "sim_ms": self.last_ms, "day": self.day, "day_start_wh": self.day_start_wh,
                "yesterday_wh": self.yesterday_wh}

    # -- simulation ------------------------------------------------------------------------
    def advance(self, now_ms: int) -> None:
        """Integrate the load from the previous step to ``now_ms`` into the counters."""
        if self.last_ms is None or now_ms < self.last_ms:
            self.last_ms = now_ms
        elif now_ms > self.last_ms:
            self.energy_wh += load.energy_wh(self.household, self.last_ms + self.profile_shift_ms,
                                             now_ms + self.profile_shift_ms,
                                             COUNTER_STEP_S, self.timezone)
            self.last_ms = now_ms
        today = datetime.fromtimestamp(now_ms / 1000.0, ZoneInfo(self.timezone)).date()
        if self.day != today.isoformat():
            if self.day:
                self.yesterday_wh = self.energy_wh - self.day_start_wh
            self.day, self.day_start_wh = today.isoformat(), self.energy_wh

    def reset_counters(self) -> None:
        log.warning("%s: counter reset (fault injection)", self.device_id)
        self.energy_wh = self.energy_returned_wh = 0.0
        self.day_start_wh = self.session_start_wh = 0.0
        self.last_published_wh = 0.0

    def measure(self, now_ms: int) -> Measurement:
        if self.session_start_wh is None:
            self.session_start_wh = self.energy_wh
        power = load.household_power_w(self.household, now_ms + self.profile_shift_ms,
                                       self.timezone)
        return Measurement(
            ts_ms=now_ms, power_w=power, energy_wh=self.energy_wh,
            energy_returned_wh=self.energy_returned_wh,
            voltage_v=voltage_at(self.device_id, self.household.seed, now_ms, power),
            phase_split=phase_split(self.device_id, self.household.seed, now_ms),
            power_factor=0.93, frequency_hz=50.0,
            today_wh=max(self.energy_wh - self.day_start_wh, 0.0),
            yesterday_wh=self.yesterday_wh,
            session_wh=self.energy_wh - (self.session_start_wh or 0.0),
            period_wh=max(self.energy_wh - (self.last_published_wh
                                            if self.last_published_wh is not None
                                            else self.energy_wh), 0.0),
            channel=device_channel(self.decoder, self.device_id), timezone=self.timezone)

    def availability(self, online: bool) -> Message | None:
        make = AVAILABILITY.get(self.decoder)
        if make is None:
            return None
        topic, on, off = make(self.topic_id)
        return (topic, on if online else off, True)

    def step(self, now_ms: int, elapsed_min: float, faults: FaultBook,
             resets_done: set[int]) -> list[Message]:
        """Advance to ``now_ms`` and return what the device publishes now."""
        self.advance(now_ms)
        for index in faults.resets_due(self.device_id, elapsed_min, resets_done):
            resets_done.add(index)
            self.reset_counters()
        messages: list[Message] = []
        offline = faults.active(self.device_id, "offline", elapsed_min)
        if offline != self.offline:
            self.offline = offline
            log.warning("%s: %s (fault injection)", self.device_id,
                        "offline" if offline else "back online")
            availability = self.availability(not offline)
            if availability:
                messages.append(availability)
        if offline:
            return messages
        if faults.active(self.device_id, "frozen", elapsed_min):
            if self.frozen_at is None:
                self.frozen_at = self.last or self.measure(now_ms)
                log.warning("%s: frozen (fault injection)", self.device_id)
            measurement = replace(self.frozen_at, ts_ms=now_ms, period_wh=0.0)
        else:
            self.frozen_at = None
            measurement = self.measure(now_ms)
            self.last_published_wh = self.energy_wh
        self.last = measurement
        self.last_published_ms = now_ms
        build = VARIANTS.get((self.decoder, self.variant), FORMATS[self.decoder])
        messages.extend(build(self.topic_id, measurement))
        return messages


class MqttPublisher:
    """One MQTT connection for all simulated meters (paho, background network thread)."""

    def __init__(self, host: str, port: int, client_id: str | None = None) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"ioe-simulator-{uuid.uuid4().hex[:8]}")
        self.published = 0
        self._last: mqtt.MQTTMessageInfo | None = None
        self._subscriptions: dict[str, Callable[..., None]] = {}

    def connect(self) -> None:
        self.client.on_connect = self._subscribe_all  # again after a reconnect
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def subscribe(self, topic: str, answer: Callable[[bytes], list[Message]]) -> None:
        """Take the commands a simulated device listens to: ``answer(payload)`` gives what
        the device publishes in reply (called on paho's network thread)."""
        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            self.publish(answer(bytes(message.payload)))

        self._subscriptions[topic] = on_message
        self.client.message_callback_add(topic, on_message)
        self.client.subscribe(topic, qos=1)

    def _subscribe_all(self, client: mqtt.Client, *args: Any) -> None:
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)

    def publish(self, messages: list[Message]) -> None:
        for topic, payload, retain in messages:
            self._last = self.client.publish(topic, payload, qos=0, retain=retain)
            self.published += 1

    def close(self) -> None:
        """Flush what is queued (so the final messages are not lost), then disconnect."""
        try:
            if self._last is not None:
                try:
                    self._last.wait_for_publish(timeout=5.0)
                except (RuntimeError, ValueError):
                    pass
            self.client.disconnect()
        finally:
            self.client.loop_stop()
