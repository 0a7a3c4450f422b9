"""Simulated relays with a load behind them: what a rule switches in the demo.

A registry device that is a Shelly Gen1 relay and marked ``controllable`` (``protocol:
{type: mqtt, decoder: shelly-gen1, topic_id: …, controllable: true}``, e.g. a Shelly 1PM in
front of a member's water heater) is simulated as the real one behaves: it takes
``shellies/<id>/relay/<n>/command`` (``on`` / ``off`` / ``toggle``), answers with its state on
``shellies/<id>/relay/<n>``, and publishes the power it measures on
``shellies/<id>/relay/<n>/power`` — the load's rated power (``rated_power_w``, default 1,500 W)
while on, 0 W while off. It starts off, as the water heater's safe default after a power cut.

The load is apart from the member's household meter (a circuit of its own), so the member's
consumption is the meter plus the relay, as the worker adds them up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from devtools.simulator.faults import FaultBook
from devtools.simulator.formats import Message
from ioe.registry import Device

log = logging.getLogger(__name__)

#: decoders whose controllable devices the simulator plays as relays
RELAY_DECODERS = ("shelly-gen1",)
DEFAULT_LOAD_W = 1500.0
#: the words a Shelly Gen1 relay takes on its command topic
_WORDS = {b"on": True, b"off": False}


def is_relay(device: Device) -> bool:
    protocol = device.protocol
    return bool(protocol.get("controllable")) and protocol.get("decoder") in RELAY_DECODERS


@dataclass
class SimRelay:
    device: Device
    topic_id: str
    channel: int
    load_w: float
    on: bool = False
    energy_wh: float = 0.0
    last_ms: int | None = None
    offline: bool = False
    switches: int = 0

    @classmethod
    def from_device(cls, device: Device, saved: dict[str, Any] | None) -> SimRelay:
        topic_id = str(device.protocol.get("topic_id") or device.id.split(":")[0])
        channel = int(device.id.rsplit(":", 1)[1]) if ":" in device.id else 0
        relay = cls(device=device, topic_id=topic_id, channel=channel,
                    load_w=float(device.rated_power_w or DEFAULT_LOAD_W))
        if saved:
            relay.energy_wh = float(saved.get("energy_wh", 0.0))
        return relay

    @property
    def device_id(self) -> str:
        return self.device.id

    @property
    def state_topic(self) -> str:
        return f"shellies/{self.topic_id}/relay/{self.channel}"

    @property
    def command_topic(self) -> str:
        return f"{self.state_topic}/command"

    def state(self) -> dict[str, Any]:
        return {"kind": "relay", "on": self.on, "energy_wh": round(self.energy_wh, 3),
                "sim_ms": self.last_ms}

    def power_w(self) -> float:
        return self.load_w if self.on else 0.0

    def availability(self, online: bool) -> Message:
        return (f"shellies/{self.topic_id}/online", b"true" if online else b"false", True)

    def _now_shown(self) -> list[Message]:
        return [(self.state_topic, b"on" if self.on else b"off", False),
                (f"{self.state_topic}/power", f"{self.power_w():.2f}".encode(), False)]

    def on_command(self, payload: bytes) -> list[Message]:
        """A command arrived: switch, then show the new state and power at once (as the
        device does); an unknown word is ignored, as the device ignores it."""
        word = payload.strip().lower()
        if self.offline:
            return []
        if word == b"toggle":
            self.on = not self.on
        elif word in _WORDS:
            self.on = _WORDS[word]
        else:
            log.warning("%s: relay command %r ignored", self.device_id, payload[:40])
            return []
        self.switches += 1
        log.info("%s: relay %s (%.0f W)", self.device_id, "on" if self.on else "off",
                 self.power_w())
        return self._now_shown()

    def step(self, now_ms: int, elapsed_min: float, faults: FaultBook,
             resets_done: set[int]) -> list[Message]:
        """Advance to ``now_ms``: count the energy, then what the device publishes now."""
        if self.last_ms is not None and now_ms > self.last_ms:
            self.energy_wh += self.power_w() * (now_ms - self.last_ms) / 3_600_000.0
        self.last_ms = now_ms if self.last_ms is None else max(self.last_ms, now_ms)
        offline = faults.active(self.device_id, "offline", elapsed_min)
        messages: list[Message] = []
        if offline != self.offline:
            self.offline = offline
            messages.append(self.availability(not offline))
        if offline:
            return messages
        return [*messages, *self._now_shown(),
                (f"{self.state_topic}/energy", f"{self.energy_wh * 60.0:.0f}".encode(), False)]
