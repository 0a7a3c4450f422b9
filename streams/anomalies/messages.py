"""Wire messages of alarm events (docs/internal-conventions.md): ``ioe.anomalies`` and the
``alarm`` updates of ``ioe.live``. Pure builders, so the agent and the tests share them."""

from __future__ import annotations

from typing import Any

from streams.anomalies.lifecycle import Alarm


def anomaly_message(alarm: Alarm) -> dict[str, Any]:
    return alarm.to_message()


def live_messages(alarm: Alarm) -> list[dict[str, Any]]:
    """One update for the community's operators, and a copy for the member whose device (or
    membership) the alarm concerns: members see alarms on their own devices, never others'."""
    body = alarm.to_message()
    cid = alarm.community_id
    out = [{"v": 1, "type": "alarm", "channel": f"operators:{cid}", "alarm": body}]
    if alarm.member_id:
        out.append({"v": 1, "type": "alarm", "channel": f"member:{cid}:{alarm.member_id}",
                    "alarm": body})
    return out
