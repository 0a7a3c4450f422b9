"""The edges of a community in the control centre: enrolment, certificate expiry, the last
heartbeat (software version, uptime, store-and-forward depth, poll errors per device) and the
last maintenance actions with who asked and how they ended.

Why here and from these two sources: the roster (``edges.json`` of the control centre's edge
state directory, :class:`ioe.edge.roster.Roster`) says which edges exist and whether they may
connect; the edge's retained heartbeat on ``edge/<community>/<edge>/heartbeat``
(:func:`ioe.edge.heartbeat.last_contacts`, read on the broker's loopback listener) says what
each one last reported; the maintenance journal (``maintenance.jsonl`` beside the roster,
:class:`ioe.edge.maintenance.MaintenanceJournal`) what operators asked of it. ``ioe edge list``
shows the first two in a terminal.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ioe.edge.heartbeat import INTERVAL_S, Heartbeat, last_contacts
from ioe.edge.identity import EdgeId
from ioe.edge.roster import EdgeStatus, Roster
from ioe.settings import Settings

#: seconds of silence before an edge is "late" / "offline", as multiples of its interval
LATE_BEATS, OFFLINE_BEATS = 3.0, 10.0
#: the heartbeats are read again at most this often (one MQTT connection per read)
CACHE_S = 10.0


#: the maintenance actions shown per edge, newest first
MAINTENANCE_SHOWN = 5


@dataclass(frozen=True)
class MaintenanceEntry:
    """One maintenance action and how it ended: the outcome's status, ``no-answer`` (the edge
    did not answer in time) or ``pending``."""

    action_id: str
    kind: str
    requested_by: str
    asked_ms: int
    status: str
    detail: str
    answered_ms: int | None


@dataclass(frozen=True)
class EdgeView:
    community: str
    edge: str
    #: active | revoked | expired (the certificate), or "unknown": heard but not enrolled here
    state: str
    certificate_expires_ms: int | None
    #: ok | late | offline | never, from the age of the last heartbeat
    health: str
    last_contact_ms: int | None
    age_s: float | None
    #: the software version the edge runs
    software: str | None
    uptime_s: float | None
    queue_depth: int | None
    errors: dict[str, str]
    config_version: str | None
    maintenance: tuple[MaintenanceEntry, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def health_of(age_s: float | None, interval_s: float = INTERVAL_S) -> str:
    if age_s is None:
        return "never"
    if age_s <= LATE_BEATS * interval_s:
        return "ok"
    return "late" if age_s <= OFFLINE_BEATS * interval_s else "offline"


def maintenance_history(entries: Sequence[Mapping[str, Any]], edge_id: EdgeId,
                        limit: int = MAINTENANCE_SHOWN) -> tuple[MaintenanceEntry, ...]:
    """Pure: the journal's lines of one edge, each action paired with its outcome."""
    mine = [e for e in entries
            if e.get("community") == edge_id.community and e.get("edge") == edge_id.edge]
    ends = {str(e.get("action_id")): e for e in mine if e.get("event") in ("outcome",
                                                                            "no-answer")}
    out = []
    for entry in mine:
        if entry.get("event") != "action":
            continue
        action_id = str(entry.get("action_id"))
        end = ends.get(action_id)
        status = ("pending" if end is None else "no-answer" if end["event"] == "no-answer"
                  else str(end.get("status", "")))
        out.append(MaintenanceEntry(
            action_id=action_id, kind=str(entry.get("kind", "")),
            requested_by=str(entry.get("requested_by", "")),
            asked_ms=int(entry.get("issued_ms") or entry.get("at_ms") or 0), status=status,
            detail=str(end.get("detail", "")) if end else "",
            answered_ms=int(end.get("answered_ms") or end.get("at_ms") or 0) if end else None))
    return tuple(sorted(out, key=lambda m: m.asked_ms, reverse=True)[:limit])


def edge_views(community_id: str, enrolled: Sequence[EdgeStatus],
               beats: Mapping[EdgeId, Heartbeat], now_ms: int,
               journal: Sequence[Mapping[str, Any]] = ()) -> list[EdgeView]:
    """Pure: the community's edges, enrolled ones first, then any heard but not enrolled."""
    out = []
    known = {s.id for s in enrolled}
    for status in enrolled:
        if status.id.community != community_id:
            continue
        out.append(_view(status.id, status.state, status.not_after, beats.get(status.id), now_ms,
                         maintenance_history(journal, status.id)))
    for edge_id, beat in sorted(beats.items()):
        if edge_id.community == community_id and edge_id not in known:
            out.append(_view(edge_id, "unknown", None, beat, now_ms))
    return out


def _view(edge_id: EdgeId, state: str, not_after: dt.datetime | None, beat: Heartbeat | None,
          now_ms: int, maintenance: tuple[MaintenanceEntry, ...] = ()) -> EdgeView:
    age = None if beat is None else round(max(0.0, (now_ms - beat.sent_ms) / 1000), 1)
    return EdgeView(
        community=edge_id.community, edge=edge_id.edge, state=state,
        certificate_expires_ms=int(not_after.timestamp() * 1000) if not_after else None,
        health=health_of(age), last_contact_ms=beat.sent_ms if beat else None, age_s=age,
        software=beat.version if beat else None, uptime_s=beat.uptime_s if beat else None,
        queue_depth=beat.queue_depth if beat else None, errors=dict(beat.errors) if beat else {},
        config_version=beat.config_version if beat else None, maintenance=maintenance)


class EdgeBook:
    """Reads the roster and the retained heartbeats (blocking: call it from the thread pool);
    the heartbeats are cached for :data:`CACHE_S` so a page refresh is not an MQTT session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._beats: tuple[float, dict[EdgeId, Heartbeat]] | None = None

    def _state_dir(self) -> Path:
        from ioe.edge.authority import default_state_dir

        return default_state_dir(self.settings)

    def beats(self) -> dict[EdgeId, Heartbeat]:
        with self._lock:
            if self._beats is None or time.monotonic() - self._beats[0] > CACHE_S:
                found = last_contacts(self.settings.mqtt_host, self.settings.mqtt_port,
                                      wait_s=1.0)
                self._beats = (time.monotonic(), found)
            return dict(self._beats[1])

    def community(self, community_id: str, now_ms: int) -> list[EdgeView]:
        from ioe.edge.maintenance import MaintenanceJournal

        state = self._state_dir()
        enrolled = Roster(state / "edges.json").status(dt.datetime.now(dt.UTC))
        journal = MaintenanceJournal(state).entries()
        return edge_views(community_id, enrolled, self.beats(), now_ms, journal)
