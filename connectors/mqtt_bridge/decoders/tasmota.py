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
#: Tasmota message kinds that are known and carry no energy reading
KNOWN_OTHER = frozenset({"STATE", "RESULT", "INFO1", "INFO2", "INFO3", "UPTIME", "MARGINS",
                         "HASS_STATE", "UPGRADE", "LOGGING", "WAKEUP", "RFRECEIVED",
                         "IRRECEIVED"})


def matches(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) == 3 and parts[0] in PREFIXES


def _known(kind: str) -> bool:
    return (kind in KNOWN_OTHER or kind.startswith(("POWER", "STATUS"))
            or kind.rstrip("0123456789") in ("POWER", "STATUS"))


def decode(topic: str, payload: bytes, received_at_ms: int, ctx: DecodeContext) -> Decoded:
    parts = topic.split("/")
    if len(parts) < 3:
        raise DecodeError(f"bad Tasmota topic {topic!r}")
    # a registry route may give a %topic% with "/" in it: the device is everything between
    prefix, device, kind = parts[0], "/".join(parts[1:-1]), parts[-1]
    if not device or any(not p for p in parts[1:-1]):
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
    elif _known(kind) or prefix == "cmnd":
        return Decoded.ignore("not_a_reading")  # STATE, RESULT, POWER, INFO…, commands
    else:
        raise DecodeError(f"Tasmota message kind {kind!r} is not known", "no_decoder")
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
