"""Fault injection: ``--fault KIND:DEVICE[@START[-END]]`` (minutes of simulated time).

Kinds (a table, so adding one is one line):

* ``offline`` — the device stops talking (MQTT meters publish their last-will "offline"
  message and go silent; an inverter's Modbus server stops listening). Metering continues
  inside the device, so the counter has advanced when it comes back.
* ``frozen`` — the device keeps publishing, but power and counters are stuck at the values of
  the moment the fault started (a hung meter firmware).
* ``counter-reset`` — the cumulative counters restart from 0 at START (a meter replaced or
  reset); an instant event, END is ignored.
* ``inverter-fault`` — the inverter trips: status fault (SunSpec St=7, Huawei 0x0300), power 0,
  the yield counter stops.

START and END are minutes after the simulation start, in simulated time (what the readings'
timestamps show), so an anomaly evaluation can compare detections with :meth:`Fault.window_ms`.
Without START the fault is active from the beginning; without END it lasts until the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS: dict[str, str] = {
    "offline": "device stops communicating",
    "frozen": "values stuck at the fault start",
    "counter-reset": "cumulative counters restart from 0",
    "inverter-fault": "inverter trips: fault status, no power",
}

_SPEC = re.compile(r"^(?P<kind>[a-z-]+):(?P<device>[^@]+?)(?:@(?P<start>\d+(?:\.\d+)?)"
                   r"(?:-(?P<end>\d+(?:\.\d+)?))?)?$")


class FaultError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str
    device_id: str
    start_min: float = 0.0
    end_min: float | None = None

    def active(self, elapsed_min: float) -> bool:
        if self.kind == "counter-reset":
            return elapsed_min >= self.start_min
        return elapsed_min >= self.start_min and (self.end_min is None
                                                  or elapsed_min < self.end_min)

    def window_ms(self, sim_start_ms: int) -> tuple[int, int | None]:
        start = sim_start_ms + int(self.start_min * 60000)
        end = None if self.end_min is None else sim_start_ms + int(self.end_min * 60000)
        return start, end

    def to_dict(self, sim_start_ms: int) -> dict[str, object]:
        start, end = self.window_ms(sim_start_ms)
        return {"kind": self.kind, "device_id": self.device_id, "start_ms": start,
                "end_ms": end}


def parse_fault(spec: str) -> Fault:
    match = _SPEC.match(spec.strip())
    if not match:
        raise FaultError(f"fault {spec!r}: expected KIND:DEVICE[@START[-END]] "
                         "(minutes of simulated time)")
    kind = match["kind"]
    if kind not in KINDS:
        raise FaultError(f"fault {spec!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    start = float(match["start"]) if match["start"] else 0.0
    end = float(match["end"]) if match["end"] else None
    if end is not None and end <= start:
        raise FaultError(f"fault {spec!r}: END must be after START")
    return Fault(kind, match["device"], start, end)


class FaultBook:
    """The faults of one run, asked per device and instant."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = list(faults)

    def devices(self) -> set[str]:
        return {f.device_id for f in self.faults}

    def active(self, device_id: str, kind: str, elapsed_min: float) -> bool:
        return any(f.device_id == device_id and f.kind == kind and f.active(elapsed_min)
                   for f in self.faults)

    def resets_due(self, device_id: str, elapsed_min: float, done: set[int]) -> list[int]:
        """Indexes of counter-reset faults of a device that are due and not yet applied."""
        return [i for i, f in enumerate(self.faults)
                if f.kind == "counter-reset" and f.device_id == device_id
                and i not in done and f.active(elapsed_min)]
