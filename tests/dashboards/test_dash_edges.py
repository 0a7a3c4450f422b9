"""The control centre's edges: the roster (enrolment, certificate expiry) joined with each
edge's retained heartbeat on the real Mosquitto (``edge/<community>/<edge>/heartbeat``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import paho.mqtt.client as mqtt
import pytest
from dash_helpers import CID, OTHER, LiveServer
from paho.mqtt.enums import CallbackAPIVersion

from dashboards import tokens
from ioe.edge.heartbeat import Heartbeat
from ioe.edge.identity import EdgeId
from ioe.edge.maintenance import MaintenanceJournal
from ioe.edge.roster import CertRecord, EdgeRecord, Roster
from ioe.settings import Settings

pytestmark = pytest.mark.stack


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def now_ms() -> int:
    return int(now().timestamp() * 1000)


def enrol(roster: Roster, community: str, edge: str, *, days: int = 365,
          revoked: bool = False) -> None:
    at = now()
    cert = CertRecord(serial=len(roster.edges) + 1, fingerprint_sha256="ab" * 32,
                      issued_at=at - dt.timedelta(days=1), not_after=at + dt.timedelta(days=days))
    roster.edges[EdgeId(community, edge)] = EdgeRecord(
        id=EdgeId(community, edge), enrolled_at=at - dt.timedelta(days=1), certificates=[cert],
        revoked_at=at if revoked else None)


@pytest.fixture
def beats(stack_settings: Settings, unique_id: str) -> Iterator[Callable[..., None]]:
    """Publish retained heartbeats as the edges do; cleared afterwards."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(stack_settings.mqtt_host, stack_settings.mqtt_port)
    client.loop_start()
    topics: list[str] = []

    def publish(community: str, edge: str, age_s: float, **fields: object) -> None:
        beat = Heartbeat(community=community, edge=edge, version="1.4.0", uptime_s=3600.0,
                         sent_ms=now_ms() - int(age_s * 1000), **fields)  # type: ignore[arg-type]
        topic = f"edge/{community}/{edge}/heartbeat"
        topics.append(topic)
        client.publish(topic, beat.to_json(), qos=1, retain=True).wait_for_publish(5)

    yield publish
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def get(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/communities/{CID}/edges",
                     headers={"authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def server(stack_settings: Settings, server_factory: Callable[..., LiveServer], beats,
           unique_id: str) -> LiveServer:
    server = server_factory(stack_settings)
    roster = Roster(server.settings.local_dir / "edge" / "edges.json")
    enrol(roster, CID, f"roof-{unique_id}")
    enrol(roster, CID, f"old-{unique_id}", revoked=True)
    enrol(roster, OTHER, f"x-{unique_id}")
    roster.save()
    journal = MaintenanceJournal(server.settings.local_dir / "edge")
    roof = EdgeId(CID, f"roof-{unique_id}")
    journal.append("action", roof, {"action_id": "a1", "kind": "push-config",
                                    "requested_by": "operator:ana", "issued_ms": now_ms() - 60_000})
    journal.append("outcome", roof, {"action_id": "a1", "kind": "push-config",
                                     "status": "applied", "detail": "3 devices",
                                     "answered_ms": now_ms() - 59_000})
    journal.append("action", roof, {"action_id": "a2", "kind": "restart",
                                    "requested_by": "operator:pau", "issued_ms": now_ms() - 30_000})
    journal.append("no-answer", roof, {"action_id": "a2", "kind": "restart", "timeout_s": 30})
    beats(CID, f"roof-{unique_id}", 20, queue_depth=42,
          errors={"inv-1": "timeout after 2 s"}, config_version="c0ffee")
    beats(CID, f"old-{unique_id}", 1200)  # 20 min of silence: offline
    beats(CID, f"ghost-{unique_id}", 5)   # heard, never enrolled here
    beats(OTHER, f"x-{unique_id}", 5)
    return server


def test_operators_see_their_communitys_edges_with_the_last_heartbeat(server, unique_id):
    operator = tokens.issue(server.settings, role="operator", communities=[CID])[0]
    response = get(server, operator)
    assert response.status_code == 200, response.text
    shown = {e["edge"]: e for e in response.json()["edges"]}
    assert set(shown) == {f"roof-{unique_id}", f"old-{unique_id}", f"ghost-{unique_id}"}
    roof = shown[f"roof-{unique_id}"]
    assert (roof["state"], roof["health"], roof["software"]) == ("active", "ok", "1.4.0")
    assert roof["queue_depth"] == 42 and roof["errors"] == {"inv-1": "timeout after 2 s"}
    assert roof["uptime_s"] == 3600.0 and roof["config_version"] == "c0ffee"
    assert 19 <= roof["age_s"] <= 60
    assert [(m["kind"], m["requested_by"], m["status"], m["detail"])
            for m in roof["maintenance"]] == [("restart", "operator:pau", "no-answer", ""),
                                              ("push-config", "operator:ana", "applied",
                                               "3 devices")]
    expires = roof["certificate_expires_ms"] - now_ms()
    assert abs(expires - 365 * 86_400_000) < 120_000
    assert (shown[f"old-{unique_id}"]["state"], shown[f"old-{unique_id}"]["health"]) == \
        ("revoked", "offline")  # 1,200 s > 10 heartbeats of 60 s
    assert shown[f"ghost-{unique_id}"]["state"] == "unknown"
    assert get(server, server.token()).status_code == 403  # a member


@pytest.mark.browser
def test_the_control_centre_lists_the_edges(server, unique_id, browser) -> None:  # noqa: ANN001
    from browser_helpers import DESKTOP, axe_violations, open_page
    from playwright.sync_api import expect

    errors: list[str] = []
    operator = tokens.issue(server.settings, role="operator", communities=[CID])[0]
    page = open_page(browser, server, "/control", operator, errors=errors, device=DESKTOP)
    row = page.locator(f"#edges-table tr[data-edge='roof-{unique_id}']")
    expect(row.locator("[data-field=health]")).to_contain_text("conectado · latido hace")
    expect(row.locator("[data-field=software]")).to_have_text("1.4.0")
    expect(row.locator("[data-field=queue]")).to_have_text("42")
    expect(row.locator("[data-field=errors]")).to_have_text("inv-1: timeout after 2 s")
    expect(row.locator("[data-field=state]")).to_contain_text("en vigor hasta")
    expect(row.locator("[data-field=maintenance]")).to_contain_text(
        "restart · operator:pau · sin respuesta")
    expect(row.locator("[data-field=maintenance]")).to_contain_text(
        "push-config · operator:ana · aplicado (3 devices)")
    old = page.locator(f"#edges-table tr[data-edge='old-{unique_id}']")
    expect(old.locator("[data-field=state]")).to_have_text("revocado")
    expect(old.locator("[data-field=health]")).to_contain_text("sin conexión")
    assert axe_violations(page) == []
    assert errors == [], errors
