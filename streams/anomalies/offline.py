"""Offline / stale device: no reading for k × the device's expected interval.

Evaluated on ticks (time passing), not on readings: a silent device sends nothing to react to.
Devices delivering in batches (Datadis) are exempt: their silence is normal for days.
"""

from __future__ import annotations

from ioe.registry import Device
from streams.anomalies.config import OfflineConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND = "offline"


def applies(cfg: OfflineConfig, device: Device) -> bool:
    return device.protocol.get("type") not in cfg.batch_protocols


def check(cfg: OfflineConfig, device: Device, last_seen_ms: int, now_ms: int) -> Condition:
    """``last_seen_ms``: newest reading timestamp, or when the engine started watching."""
    window_s = cfg.window_s(device.expected_interval_s)
    silence_s = (now_ms - last_seen_ms) / 1000
    if silence_s <= window_s:
        return CLEAR
    severity = "critical" if silence_s > 12 * 3600 else "warning"
    return Condition(True, severity, {"last_seen_ms": last_seen_ms, "silence_s": silence_s,
                                      "window_s": window_s})
