"""Operators acknowledge or assign open alarms; every action is kept in ClickHouse as history.

Why a separate table (migration 0005) and not a new alarm state: the alarm belongs to its
detector (``streams.anomalies``), which opens and closes it from the data; an acknowledgement
is a person's note about it. Keeping them apart means the web server never rewrites a
detector's row and the detector never loses a person's action; the control centre joins the
two when it shows an alarm.

Rules, as data (:data:`RULES`): which action needs an assignee; every action needs an
operator token of the alarm's community and an alarm that is open. Members never can (the
API refuses before anything is read).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dashboards.errors import RequestRefused
from dashboards.tokens import Principal
from ioe.clickhouse import client
from ioe.messages import (
    ALARM_ACTION_COLUMNS,
    Alarm,
    AlarmAction,
    AlarmActionKind,
    AlarmState,
    column_names,
    row,
)
from ioe.settings import Settings

MAX_NOTE = 500
MAX_ASSIGNEE = 120
HISTORY_DAYS = 30


@dataclass(frozen=True)
class Rule:
    needs_assignee: bool


RULES: dict[str, Rule] = {
    AlarmActionKind.ACKNOWLEDGE: Rule(needs_assignee=False),
    AlarmActionKind.ASSIGN: Rule(needs_assignee=True),
}


class ActionRefused(RequestRefused):
    """An action that may not be taken: HTTP status, a machine code and a human message."""


@dataclass(frozen=True)
class ActionRequest:
    """What the browser asks (the JSON body), checked."""

    action: str
    assignee: str
    note: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ActionRequest:
        action = body.get("action")
        rule = RULES.get(str(action)) if isinstance(action, str) else None
        if rule is None:
            raise ActionRefused(400, "bad_request",
                                f"action must be one of {', '.join(RULES)}")
        assignee, note = body.get("assignee") or "", body.get("note") or ""
        if not isinstance(assignee, str) or not isinstance(note, str):
            raise ActionRefused(400, "bad_request", "assignee and note are text")
        assignee, note = " ".join(assignee.split()), note.strip()
        if rule.needs_assignee and not assignee:
            raise ActionRefused(400, "bad_request", "an assignment needs an assignee")
        if not rule.needs_assignee:
            assignee = ""
        if len(assignee) > MAX_ASSIGNEE or len(note) > MAX_NOTE:
            raise ActionRefused(400, "bad_request", f"assignee ≤ {MAX_ASSIGNEE} and note ≤ "
                                                    f"{MAX_NOTE} characters")
        return cls(str(action), assignee, note)


def build(principal: Principal, alarm: Alarm | None, request: ActionRequest,
          now_ms: int) -> AlarmAction:
    """The action, or :class:`ActionRefused` (unknown alarm, or one that is closed)."""
    if alarm is None:
        raise ActionRefused(404, "unknown_alarm", "no such alarm in this community")
    if alarm.state != AlarmState.OPEN:
        raise ActionRefused(409, "alarm_closed", "the alarm is closed: only open alarms are "
                                                 "acknowledged or assigned")
    return AlarmAction(action_id=uuid.uuid4().hex, alarm_id=alarm.alarm_id,
                       community_id=alarm.community_id, action=request.action,
                       actor=principal.actor, token_id=principal.token_id, at_ms=now_ms,
                       assignee=request.assignee, note=request.note)


class AlarmActionStore:
    """The ``alarm_actions`` table (blocking; the API runs it in the thread pool)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.clickhouse_database

    def add(self, action: AlarmAction) -> None:
        ch = client(self.settings, database=self.db)
        try:
            ch.execute(f"INSERT INTO {self.db}.alarm_actions "
                       f"({', '.join(column_names(ALARM_ACTION_COLUMNS))}) VALUES",
                       [row(action, ALARM_ACTION_COLUMNS)])
        finally:
            ch.disconnect()

    def history(self, community_id: str, since_ms: int, limit: int = 1000
                ) -> list[AlarmAction]:
        """The community's actions since ``since_ms``, oldest first (the order they happened)."""
        fields = ("action_id", "alarm_id", "community_id", "action", "actor", "token_id",
                  "at_ms", "assignee", "note")
        ch = client(self.settings, database=self.db)
        try:
            rows = ch.execute(
                f"SELECT {', '.join(fields)} FROM {self.db}.alarm_actions FINAL "
                "WHERE community_id = %(c)s AND at_ms >= %(a)s "
                "ORDER BY at_ms, action_id LIMIT %(n)s",
                {"c": community_id, "a": int(since_ms), "n": int(limit)})
        finally:
            ch.disconnect()
        return [AlarmAction(**dict(zip(fields, r, strict=True))) for r in rows]
