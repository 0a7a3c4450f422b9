"""Underperformance: a generator producing markedly less than its peers and than the sky allows.

Clouds hit every inverter of a community alike, so the robust reference is the *peers*: the
other generation devices of the same community, each normalised by its rated power. A device
whose ratio stays below ``peer_fraction`` × the peers' median while the sun is high is losing
energy (string fault, tripped breaker, soiling, shading). A cloudy day lowers everyone and never
fires. A lone inverter has no peers; it is only judged "dead" against a clear-sky bound at high
sun, because one inverter cannot tell heavy overcast from a partial fault.
"""

from __future__ import annotations

import statistics

from streams.anomalies.config import UnderperformanceConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND = "underperformance"


def check(cfg: UnderperformanceConfig, ratio: float, peer_ratios: list[float],
          elevation_deg: float, clear_sky: float) -> Condition | None:
    """``ratio``: own power / rated; ``peer_ratios``: fresh ratios of the other generators."""
    if elevation_deg < cfg.min_elevation_deg:
        return None  # not judged (keeps the hysteresis counters as they are)
    if peer_ratios:
        median = statistics.median(peer_ratios)
        if median < cfg.min_peer_ratio:
            return None  # too dark for a comparison to mean anything
        if ratio >= cfg.peer_fraction * median:
            return CLEAR
        severity = "critical" if ratio < cfg.critical_fraction * median else "warning"
        return Condition(True, severity, {
            "ratio": round(ratio, 4), "peer_median_ratio": round(median, 4),
            "peers": len(peer_ratios), "clear_sky_ratio": round(clear_sky, 4),
            "elevation_deg": round(elevation_deg, 2)})
    if elevation_deg < cfg.lone_min_elevation_deg:
        return None
    if ratio >= cfg.lone_clear_sky_fraction * clear_sky:
        return CLEAR
    return Condition(True, "warning", {
        "ratio": round(ratio, 4), "clear_sky_ratio": round(clear_sky, 4), "peers": 0,
        "elevation_deg": round(elevation_deg, 2)})
