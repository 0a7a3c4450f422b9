"""The table keys of the worker's state, its interval lengths and the rounding of published
numbers. The message formats and their ClickHouse columns live in :mod:`ioe.messages`.
"""

from __future__ import annotations

QUARTER_S = 900
HOUR_S = 3600
INTERVALS_S = (QUARTER_S, HOUR_S)


def rnd(value: float | None, digits: int = 3) -> float | None:
    """Round published numbers: float noise (1e-13 W) must not count as a change."""
    return None if value is None else round(float(value), digits)


# -- keys of the worker's tables (strings: readable in the changelog topics) ------------------
def slot_key(device_id: str, slot_start_ms: int) -> str:
    return f"{device_id}|{slot_start_ms}"


def official_key(device_id: str, interval_s: int, end_ms: int) -> str:
    return f"{device_id}|{interval_s}|{end_ms}"


def interval_key(community_id: str, interval_s: int, start_ms: int) -> str:
    return f"{community_id}|{interval_s}|{start_ms}"


def parse_interval_key(key: str) -> tuple[str, int, int]:
    cid, interval_s, start = key.rsplit("|", 2)
    return cid, int(interval_s), int(start)
