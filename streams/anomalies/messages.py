"""Wire messages of alarm events (docs/internal-conventions.md): ``ioe.anomalies`` and the
``alarm`` updates of ``ioe.live``. The types live in :mod:`ioe.messages` (``Alarm``,
``LiveAlarm``); these are the two names the agent and the tests use."""

from __future__ import annotations

from typing import Any

from ioe.messages import Alarm, LiveAlarm


def anomaly_message(alarm: Alarm) -> dict[str, Any]:
    return alarm.to_message()


def live_messages(alarm: Alarm) -> list[LiveAlarm]:
    """One update for the community's operators, and a copy for the member whose device (or
    membership) the alarm concerns: members see alarms on their own devices, never others'."""
    return LiveAlarm.for_alarm(alarm)
