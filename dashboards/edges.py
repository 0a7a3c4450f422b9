"""The edges of a community in the control centre: enrolment, certificate expiry and the last
heartbeat (software version, uptime, store-and-forward depth, poll errors per device).

Why here and from these two sources: the roster (``edges.json`` of the control centre's edge
state directory, :class:`ioe.edge.roster.Roster`) says which edges exist and whether they may
connect; the edge's retained heartbeat on ``edge/<community>/<edge>/heartbeat``
(:func:`ioe.edge.heartbeat.last_contacts`, read on the broker's loopback listener) says what
each one last reported. ``ioe edge list`` shows the same two, in a terminal.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ioe.edge.heartbeat import INTERVAL_S, Heartbeat, last_contacts
from ioe.edge.identity import EdgeId
from ioe.edge.roster import EdgeStatus, Roster
from ioe.settings import Settings

#: seconds of silence before an edge is "late" / "offline", as multiples of its interval
LATE_BEATS, OFFLINE_BEATS = 3.0, 10.0
#: the heartbeats are read again at most this often (one MQTT connection per read)
CACHE_S = 10.0


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
    version: str | None
    uptime_s: float | None
    queue_depth: int | None
    errors: dict[str, str]
    config_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def health_of(age_s: float | None, interval_s: float = INTERVAL_S) -> str:
    if age_s is None:
        return "never"
    if age_s <= LATE_BEATS * interval_s:
        return "ok"
    return "late" if age_s <= OFFLINE_BEATS * interval_s else "offline"


def edge_views(community_id: str, enrolled: Sequence[EdgeStatus],
               beats: Mapping[EdgeId, Heartbeat], now_ms: int) -> list[EdgeView]:
    """Pure: the community's edges, enrolled ones first, then any heard but not enrolled."""
    out = []
    known = {s.id for s in enrolled}
    for status in enrolled:
        if status.id.community != community_id:
            continue
        out.append(_view(status.id, status.state, status.not_after, beats.get(status.id), now_ms))
    for edge_id, beat in sorted(beats.items()):
        if edge_id.community == community_id and edge_id not in known:
            out.append(_view(edge_id, "unknown", None, beat, now_ms))
    return out


def _view(edge_id: EdgeId, state: str, not_after: dt.datetime | None, beat: Heartbeat | None,
          now_ms: int) -> EdgeView:
    age = None if beat is None else round(max(0.0, (now_ms - beat.sent_ms) / 1000), 1)
    return EdgeView(
        community=edge_id.community, edge=edge_id.edge, state=state,
        certificate_expires_ms=int(not_after.timestamp() * 1000) if not_after else None,
        health=health_of(age), last_contact_ms=beat.sent_ms if beat else None, age_s=age,
        version=beat.version if beat else None, uptime_s=beat.uptime_s if beat else None,
        queue_depth=beat.queue_depth if beat else None, errors=dict(beat.errors) if beat else {},
        config_version=beat.config_version if beat else None)


class EdgeBook:
    """Reads the roster and the retained heartbeats (blocking: call it from the thread pool);
    the heartbeats are cached for :data:`CACHE_S` so a page refresh is not an MQTT session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._beats: tuple[float, dict[EdgeId, Heartbeat]] | None = None

    def _roster(self) -> Roster:
        from ioe.edge.authority import default_state_dir

        return Roster(default_state_dir(self.settings) / "edges.json")

    def beats(self) -> dict[EdgeId, Heartbeat]:
        with self._lock:
            if self._beats is None or time.monotonic() - self._beats[0] > CACHE_S:
                found = last_contacts(self.settings.mqtt_host, self.settings.mqtt_port,
                                      wait_s=1.0)
                self._beats = (time.monotonic(), found)
            return dict(self._beats[1])

    def community(self, community_id: str, now_ms: int) -> list[EdgeView]:
        enrolled = self._roster().status(dt.datetime.now(dt.UTC))
        return edge_views(community_id, enrolled, self.beats(), now_ms)
