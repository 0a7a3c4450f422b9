"""Tasmota energy monitors (Sonoff POW, Athom plugs, PZEM/SDM via Tasmota, NRG…).

``tele/<topic>/SENSOR`` (periodic) and ``stat/<topic>/STATUS8|STATUS10`` (on request) carry
``{"Time": <local time>, "ENERGY": {...}}``. Energy is in kWh (converted to Wh here); power,
energy and current may be per-phase/per-channel arrays and are summed, voltages averaged over
the connected phases. ``tele/<topic>/LWT`` (``Online``/``Offline``) is availability.
"""

from __future__ import annotations

from typing import Any

from .base import (
    DecodeContext,
    Decoded,
    DecodeError,
    has_measurement,
    load_object,
    number,
    phase_mean,
    phase_sum,
    reading,
    scaled,
)
from .local_time import local_to_utc_ms

SOURCE = "tasmota"
PREFIXES = ("tele", "stat")
STATUS_TOPICS = {"STATUS8", "STATUS10"}


def matches(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) == 3 and parts[0] in PREFIXES


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    prefix, device, kind = topic.split("/")
    if not device:
        raise DecodeError(f"empty Tasmota topic in {topic!r}")
    if kind == "LWT":
        return Decoded.ignore("availability")
    sensor: Any
    if prefix == "tele" and kind == "SENSOR":
        sensor = load_object(payload)
    elif prefix == "stat" and kind in STATUS_TOPICS:
        status = load_object(payload)
        sensor = status.get("StatusSNS")
        if not isinstance(sensor, dict):
            raise DecodeError(f"{kind}: 'StatusSNS' object missing")
    else:
        return Decoded.ignore("not_a_reading")  # STATE, RESULT, POWER, INFO…
    energy = sensor.get("ENERGY")
    if energy is None:
        return Decoded.ignore("no_measurement")  # temperature-only sensors
    if not isinstance(energy, dict):
        raise DecodeError("'ENERGY' must be an object")
    values = energy_values(energy)
    if not has_measurement(values):
        return Decoded.ignore("no_measurement")
    time_text = sensor.get("Time")
    if time_text is None:
        ts_ms = received_at_ms
    elif isinstance(time_text, str):
        ts_ms = local_to_utc_ms(time_text, ctx.timezone, received_at_ms)
    else:
        raise DecodeError(f"'Time' must be a string, got {time_text!r}")
    return Decoded.of(reading(device, ts_ms, SOURCE, values))


def energy_values(energy: dict[str, Any]) -> dict[str, Any]:
    factor = energy.get("Factor")
    return {
        "power_w": phase_sum(energy.get("Power"), "ENERGY.Power"),
        "energy_wh": scaled(phase_sum(energy.get("Total"), "ENERGY.Total"), 1000.0),
        "energy_returned_wh": scaled(phase_sum(energy.get("ExportActive"),
                                               "ENERGY.ExportActive"), 1000.0),
        "voltage_v": phase_mean(energy.get("Voltage"), "ENERGY.Voltage"),
        "current_a": phase_sum(energy.get("Current"), "ENERGY.Current"),
        "frequency_hz": phase_mean(energy.get("Frequency"), "ENERGY.Frequency"),
        # a power factor per phase has no meaningful sum: only a single-phase one is kept
        "power_factor": None if isinstance(factor, list) else number(factor, "ENERGY.Factor"),
    }
