"""Registry problems: coefficients that do not add up to 1, members that deliver no data.

RD 244/2019 requires Σβ = 1 in every hour; a schedule that misses it assigns too much or too
little of the plant and every settlement built on it is wrong. A member none of whose devices
(including the distributor's meter) delivered anything for hours cannot be balanced at all.
"""

from __future__ import annotations

from ioe.registry import Community
from streams.anomalies.config import RegistryCheckConfig
from streams.anomalies.lifecycle import CLEAR, Condition

KIND_COEFFICIENTS = "coefficients_sum"
KIND_NO_DATA = "member_no_data"


def registry_subject(community_id: str) -> str:
    return f"registry:{community_id}"


def member_subject(community_id: str, member_id: str) -> str:
    return f"member:{community_id}:{member_id}"


def check_coefficients(cfg: RegistryCheckConfig, community: Community) -> Condition:
    bad: list[dict[str, object]] = []
    for schedule in community.schedules:
        sums = schedule.hour_sums()
        wrong = [(index, total) for index, total in enumerate(sums)
                 if abs(total - 1.0) > cfg.sum_tolerance]
        if wrong:
            index, total = wrong[0]
            bad.append({"schedule": schedule.source or schedule.kind,
                        "effective_from": schedule.effective_from.isoformat(),
                        "kind": schedule.kind, "bad_hours": len(wrong),
                        "first_bad_hour": index + 1 if schedule.kind == "hourly" else None,
                        "sum": round(total, 6)})
    if not bad:
        return CLEAR
    return Condition(True, "critical", {"schedules": bad})


def check_member_silence(cfg: RegistryCheckConfig, last_seen_ms: int, now_ms: int) -> Condition:
    silence_s = (now_ms - last_seen_ms) / 1000
    if silence_s <= cfg.member_silence_s:
        return CLEAR
    return Condition(True, "warning", {"last_seen_ms": last_seen_ms, "silence_s": silence_s,
                                       "window_s": cfg.member_silence_s})
