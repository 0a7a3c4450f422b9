"""The REST API against a real ClickHouse, with balances inserted here and totals worked out by
hand; and the scope rules on every route (a member never reads another member's data).

Prices of the test community: energy 0.15 €/kWh, surplus 0.04 €/kWh. Madrid is UTC+1 until
29 March 2026 and UTC+2 after.

Member m1 (β 0.5), hourly rows:
    2026-03-10 10:00 local (09:00Z)  G 6000  C 2000  A 3000  SC 2000  S 1000  I    0
    2026-03-10 20:00 local (19:00Z)  G    0  C 1500  A    0  SC    0  S    0  I 1500
    2026-03-11 12:00 local (11:00Z)  G 5000  C 1000  A 2500  SC 1000  S 1500  I    0
    2026-04-01 00:00 local (2026-03-31 22:00Z, April locally)  C 800  I 800
  plus an older version of the first row (must be replaced: FINAL) and a 15-minute row (ignored).
Member m2 (β 0.3): 2026-03-10 09:00Z  G 6000  C 4000  A 1800  SC 1800  S 0  I 2200.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from dash_helpers import CID, CUPS, OTHER, LiveServer

from dashboards import tokens
from ioe.clickhouse import client
from ioe.settings import Settings

pytestmark = pytest.mark.stack


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def balance(member: str, start: str, g: float, c: float, a: float, sc: float, s: float,
            i: float, *, version: int = 2, interval_s: int = 3600, beta: float = 0.5
            ) -> tuple[Any, ...]:
    return (CID, member, CUPS[member], _t(start), interval_s, beta, g, c, a, sc, s, i, "meter",
            1, _t(start), version)


BALANCES = [
    balance("m1", "2026-03-10T09:00:00", 6000, 500, 3000, 500, 2500, 0, version=1),
    balance("m1", "2026-03-10T09:00:00", 6000, 2000, 3000, 2000, 1000, 0),
    balance("m1", "2026-03-10T09:00:00", 1500, 9999, 750, 750, 0, 9249, interval_s=900),
    balance("m1", "2026-03-10T19:00:00", 0, 1500, 0, 0, 0, 1500),
    balance("m1", "2026-03-11T11:00:00", 5000, 1000, 2500, 1000, 1500, 0),
    balance("m1", "2026-03-31T22:00:00", 0, 800, 0, 0, 0, 800),
    balance("m2", "2026-03-10T09:00:00", 6000, 4000, 1800, 1800, 0, 2200, beta=0.3),
]


def insert(settings: Settings) -> None:
    ch = client(settings, database=settings.clickhouse_database)
    now = datetime.now(UTC).replace(microsecond=0)

    def ago(**delta: float) -> datetime:
        return now - timedelta(**delta)

    try:
        ch.execute("INSERT INTO balances (community_id, member_id, cups, interval_start, "
                   "interval_s, coefficient, generation_wh, consumption_wh, assigned_wh, "
                   "self_consumed_wh, surplus_wh, import_wh, source, complete, computed_at, "
                   "version) VALUES", BALANCES)
        readings = [(CID, "shelly-m1:0", now - timedelta(seconds=5), 430.0),
                    (CID, "shelly-m1:0", now - timedelta(seconds=60), 999.0),
                    (CID, "shelly-m2:0", now - timedelta(seconds=70), 250.0),
                    (CID, "inv-1", now - timedelta(hours=1), 5000.0)]
        ch.execute("INSERT INTO readings (community_id, device_id, ts, ts_ms, source, quality, "
                   "power_w, version) VALUES",
                   [(c, d, ts, int(ts.timestamp() * 1000), "test", "measured", p, 1)
                    for c, d, ts, p in readings])
        alarms = [("a1", "shelly-m1:0", "m1", "open", ago(hours=2), None, 1),
                  ("a2", "shelly-m2:0", "m2", "open", ago(hours=3), None, 1),
                  ("a3", "shelly-m1:0", "m1", "closed", ago(days=1), ago(hours=20), 2),
                  ("a4", "inv-1", "", "open", ago(hours=1), None, 1),
                  ("a5", "shelly-m2:0", "m2", "open", ago(hours=5), None, 1),
                  ("a5", "shelly-m2:0", "m2", "closed", ago(hours=5), ago(hours=4), 2),
                  ("a6", "shelly-m1:0", "m1", "closed", ago(days=30), ago(days=29), 2)]
        ch.execute("INSERT INTO anomalies (alarm_id, community_id, device_id, member_id, kind, "
                   "severity, state, opened_at, closed_at, evidence, updated_at, version) VALUES",
                   [(a, CID, d, m, "device_offline", "warning", st, op, cl, '{"age_s": 120}',
                     cl or op, v) for a, d, m, st, op, cl, v in alarms])
    finally:
        ch.disconnect()


@pytest.fixture
def api(live_server: LiveServer) -> LiveServer:
    insert(live_server.settings)
    return live_server


def get(server: LiveServer, path: str, token: str | None, **params: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(server.url + path, params=params, headers=headers, timeout=30)


def history(server: LiveServer, token: str, period: str, day: str,
            member: str = "m1") -> dict[str, Any]:
    response = get(server, f"/api/communities/{CID}/members/{member}/history", token,
                   period=period, date=day)
    assert response.status_code == 200, response.text
    return response.json()


def test_member_day_history(api: LiveServer) -> None:
    day = history(api, api.token(), "day", "2026-03-10")
    assert day["totals"] == {"hours": 2, "consumption_kwh": 3.5, "assigned_kwh": 3.0,
                             "self_consumed_kwh": 2.0, "surplus_kwh": 1.0, "import_kwh": 1.5,
                             "generation_kwh": 6.0}
    # 2.0 kWh × 0.15 = 0.30 €; compensation min(1.0 × 0.04, 1.5 × 0.15) = 0.04 €
    assert day["savings"] == {"self_consumption_eur": 0.3, "surplus_compensation_eur": 0.04,
                              "total_eur": 0.34}
    assert len(day["buckets"]) == 24
    by_label = {b["label"]: b for b in day["buckets"]}
    assert by_label["2026-03-10T10:00:00+01:00"]["consumption_kwh"] == 2.0
    assert by_label["2026-03-10T20:00:00+01:00"]["import_kwh"] == 1.5
    assert sum(b["hours"] for b in day["buckets"]) == 2


def test_member_week_month_and_year_history(api: LiveServer) -> None:
    token = api.token()
    week = history(api, token, "week", "2026-03-12")
    assert (week["from"], week["to"]) == ("2026-03-09", "2026-03-16")
    assert [b["consumption_kwh"] for b in week["buckets"]] == [0, 3.5, 1.0, 0, 0, 0, 0]
    march = history(api, token, "month", "2026-03-20")
    assert len(march["buckets"]) == 31
    # the row at 2026-03-31 22:00Z is 1 April 00:00 in Madrid: not March
    assert march["totals"] == {"hours": 3, "consumption_kwh": 4.5, "assigned_kwh": 5.5,
                               "self_consumed_kwh": 3.0, "surplus_kwh": 2.5,
                               "import_kwh": 1.5, "generation_kwh": 11.0}
    # 3.0 × 0.15 = 0.45; min(2.5 × 0.04 = 0.10, 1.5 × 0.15 = 0.225) = 0.10
    assert march["savings"] == {"self_consumption_eur": 0.45, "surplus_compensation_eur": 0.1,
                                "total_eur": 0.55}
    april = history(api, token, "month", "2026-04-15")
    assert april["buckets"][0]["import_kwh"] == 0.8 and april["totals"]["hours"] == 1
    year = history(api, token, "year", "2026-06-01")
    assert [b["consumption_kwh"] for b in year["buckets"][:5]] == [0, 0, 4.5, 0.8, 0]
    m2 = history(api, api.token(role="operator", member=None), "day", "2026-03-10", "m2")
    assert m2["totals"]["import_kwh"] == 2.2 and m2["totals"]["self_consumed_kwh"] == 1.8


def test_csv_export_of_hourly_balances(api: LiveServer) -> None:
    response = get(api, f"/api/communities/{CID}/members/m1/export.csv", api.token(),
                   **{"from": "2026-03-10", "to": "2026-03-11"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["interval_start_utc"] for r in rows] == [
        "2026-03-10T09:00:00Z", "2026-03-10T19:00:00Z", "2026-03-11T11:00:00Z"]
    assert rows[0] == {"interval_start_utc": "2026-03-10T09:00:00Z",
                       "interval_start_local": "2026-03-10T10:00:00+01:00",
                       "cups": CUPS["m1"], "coefficient": "0.500000",
                       "generation_wh": "6000.000", "consumption_wh": "2000.000",
                       "assigned_wh": "3000.000", "self_consumed_wh": "2000.000",
                       "surplus_wh": "1000.000", "import_wh": "0.000", "source": "meter",
                       "complete": "1"}
    assert sum(float(r["consumption_wh"]) for r in rows) == 4500.0
    bad = get(api, f"/api/communities/{CID}/members/m1/export.csv", api.token(),
              **{"from": "2026-03-11", "to": "2026-03-10"})
    assert bad.status_code == 400


def test_community_overview(api: LiveServer) -> None:
    operator = get(api, f"/api/communities/{CID}/overview", api.token(role="operator",
                                                                       member=None),
                   date="2026-03-10").json()
    # hours 09:00Z: G 6000, ΣC 6000, ΣSC 3800; 19:00Z: G 0, ΣC 1500
    today = operator["today"]
    assert (today["generation_kwh"], today["consumption_kwh"], today["self_consumed_kwh"]) == \
        (6.0, 7.5, 3.8)
    assert today["self_consumption_ratio"] == round(3.8 / 6.0, 4)
    assert today["coverage_ratio"] == round(3.8 / 7.5, 4)
    assert [m["coefficient"] for m in operator["members"]] == [0.5, 0.3, 0.2]
    assert operator["schedule"]["kind"] == "static" and operator["schedule"]["sum_now"] == 1.0
    member = get(api, f"/api/communities/{CID}/overview", api.token(),
                 date="2026-03-10").json()
    assert member["today"] == today  # the aggregate is for members too…
    assert "members" not in member and "schedule" not in member  # …but never the others
    assert member["me"] == {"id": "m1", "name": "Ana García", "coefficient": 0.5}


def test_devices_health(api: LiveServer) -> None:
    body = get(api, f"/api/communities/{CID}/devices",
               api.token(role="operator", member=None)).json()
    health = {d["device_id"]: d for d in body["devices"]}
    assert health["shelly-m1:0"]["status"] == "ok"  # 5 s old, expected every 10 s
    assert health["shelly-m1:0"]["last_power_w"] == 430.0
    assert health["shelly-m2:0"]["status"] == "late"  # 3 × 10 s < 70 s ≤ 10 × 10 s
    assert health["inv-1"]["status"] == "offline"  # an hour > 10 × 10 s
    assert health["shelly-m3:0"]["status"] == "no_data"
    assert health[f"datadis:{CUPS['m1']}"]["status"] == "no_data"
    mine = get(api, f"/api/communities/{CID}/devices", api.token()).json()["devices"]
    assert sorted(d["device_id"] for d in mine) == sorted(["shelly-m1:0",
                                                           f"datadis:{CUPS['m1']}"])


def test_open_and_recent_alarms(api: LiveServer) -> None:
    operator = get(api, f"/api/communities/{CID}/alarms",
                   api.token(role="operator", member=None)).json()
    assert [a["alarm_id"] for a in operator["open"]] == ["a4", "a1", "a2"]  # newest first
    assert sorted(a["alarm_id"] for a in operator["recent"]) == ["a3", "a5"]  # a6: too old
    assert operator["open"][0]["evidence"] == {"age_s": 120}
    member = get(api, f"/api/communities/{CID}/alarms", api.token()).json()
    assert [a["alarm_id"] for a in member["open"]] == ["a1"]
    assert [a["alarm_id"] for a in member["recent"]] == ["a3"]


def test_fleet_of_an_operator(api: LiveServer) -> None:
    """Every community of the operator's token: open alarms, live devices by health (the
    distributor's Datadis meters are not live and are left out), today's totals, a status."""
    both = tokens.issue(api.settings, role="operator", communities=[CID, OTHER])[0]
    fleet = get(api, "/api/fleet", both).json()["communities"]
    assert [c["id"] for c in fleet] == [CID, OTHER]
    test = fleet[0]
    assert test["name"] == "Comunidad de Prueba" and test["members_total"] == 3
    assert test["open_alarms"] == 3  # a1, a2, a4 (a5 was closed by a later version)
    assert test["open_by_severity"] == {"info": 0, "warning": 3, "critical": 0}
    # shelly-m1 5 s ago, shelly-m2 70 s (late: > 3 × 10 s), inv-1 1 h (offline), shelly-m3 none
    assert test["devices"] == {"total": 4, "ok": 1, "late": 1, "offline": 1, "no_data": 1}
    assert test["status"] == "warning"
    assert fleet[1]["devices"]["total"] == 0 and fleet[1]["status"] == "ok"
    one = get(api, "/api/fleet", api.token(role="operator", community=OTHER, member=None))
    assert [c["id"] for c in one.json()["communities"]] == [OTHER]
    refused = get(api, "/api/fleet", api.token())
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "/api/fleet" in orjson.loads(httpx.get(api.url + "/openapi.json").content)["paths"]


def test_datadis_reconciliation_per_member_month(api: LiveServer) -> None:
    """February 2026: m1 has 3 hours settled on Datadis and 2 still on its meter (one of them
    incomplete), one of the meter hours later superseded by Datadis (a higher version), and a
    divergence alarm; m2 one meter hour; m3 nothing."""
    def row(member: str, start: str, wh: float, source: str, *, version: int = 1,
            complete: int = 1) -> tuple[Any, ...]:
        return (CID, member, CUPS[member], _t(start), 3600, 0.5, 0, wh, 0, 0, 0, wh, source,
                complete, _t(start), version)

    rows = [row("m1", "2026-02-02T10:00:00", 1000, "datadis"),
            row("m1", "2026-02-02T11:00:00", 1000, "datadis"),
            row("m1", "2026-02-02T12:00:00", 900, "meter"),
            row("m1", "2026-02-02T12:00:00", 1000, "datadis", version=2),  # supersedes
            row("m1", "2026-02-20T08:00:00", 500, "meter"),
            row("m1", "2026-02-20T09:00:00", 250, "meter", complete=0),
            row("m1", "2026-03-01T00:00:00", 7777, "datadis"),  # next month (local 01:00)
            row("m2", "2026-02-05T10:00:00", 400, "meter")]
    opened = _t("2026-02-20T10:00:00")
    ch = client(api.settings, database=api.settings.clickhouse_database)
    try:
        ch.execute("INSERT INTO balances (community_id, member_id, cups, interval_start, "
                   "interval_s, coefficient, generation_wh, consumption_wh, assigned_wh, "
                   "self_consumed_wh, surplus_wh, import_wh, source, complete, computed_at, "
                   "version) VALUES", rows)
        ch.execute("INSERT INTO anomalies (alarm_id, community_id, device_id, member_id, kind, "
                   "severity, state, opened_at, closed_at, evidence, updated_at, version) VALUES",
                   [("d1", CID, "shelly-m1:0", "m1", "divergence", "warning", "open", opened,
                     None, "{}", opened, 1)])
    finally:
        ch.disconnect()
    operator = api.token(role="operator", member=None)
    body = get(api, f"/api/communities/{CID}/reconciliation", operator, month="2026-02").json()
    assert body["month"] == "2026-02" and body["from"] == "2026-02-01"
    by_member = {m["member_id"]: m for m in body["members"]}
    m1 = by_member["m1"]
    assert (m1["hours"], m1["official_hours"], m1["provisional_hours"]) == (5, 3, 2)
    assert m1["official_kwh"] == 3.0 and m1["provisional_kwh"] == 0.75
    assert m1["consumption_kwh"] == 3.75 and m1["official_ratio"] == 0.6
    assert m1["incomplete_hours"] == 1 and m1["divergence_alarms"] == 1
    assert m1["hours_elapsed"] == 28 * 24
    assert by_member["m2"]["official_ratio"] == 0.0 and by_member["m2"]["provisional_kwh"] == 0.4
    assert by_member["m3"]["hours"] == 0 and by_member["m3"]["official_ratio"] is None
    assert get(api, f"/api/communities/{CID}/reconciliation", api.token(),
               month="2026-02").status_code == 403
    assert get(api, f"/api/communities/{CID}/reconciliation", operator,
               month="febrero").status_code == 400


def test_a_member_cannot_read_another_members_data_by_any_route(
        api: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    m1 = api.token()
    refused = [
        f"/api/communities/{CID}/members/m2/history",
        f"/api/communities/{CID}/members/m2/export.csv",
        f"/api/communities/{OTHER}/members/x1/history",
        f"/api/communities/{OTHER}/overview",
        f"/api/communities/{OTHER}/devices",
        f"/api/communities/{OTHER}/alarms",
    ]
    for path in refused:
        response = get(api, path, m1)
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
        assert "2200" not in response.text and "4000" not in response.text
    assert caplog.text.count(f"refused member {CID}:m1") == len(refused)
    # and what m1 may read carries nothing of m2
    for path in (f"/api/communities/{CID}/overview", f"/api/communities/{CID}/devices",
                 f"/api/communities/{CID}/alarms", "/api/me"):
        body = get(api, path, m1).text
        assert "m2" not in body and "Josep" not in body and CUPS["m2"] not in body, path
    # an operator of another community is refused too
    other_operator = api.token(role="operator", community=OTHER, member=None)
    assert get(api, f"/api/communities/{CID}/members/m1/history",
               other_operator).status_code == 403
    assert get(api, f"/api/communities/{CID}/alarms", other_operator).status_code == 403


@pytest.mark.parametrize("token", [None, "not-a-token", "expired"])
def test_rest_needs_a_valid_token(api: LiveServer, token: str | None) -> None:
    if token == "expired":
        token = api.token(ttl_days=1, now=1_000_000)
    response = get(api, f"/api/communities/{CID}/members/m1/history", token)
    assert response.status_code == 401
    assert response.json()["error"] in ("missing_token", "invalid_token", "expired_token")


def test_health_metrics_and_openapi(api: LiveServer) -> None:
    health = httpx.get(api.url + "/health").json()
    assert health["status"] == "ok" and health["live"]["consuming"] is True
    assert CID in health["communities"]
    get(api, "/api/me", api.token())
    metrics = httpx.get(api.url + "/metrics").text
    assert 'ioe_web_http_requests_total{route="me",status="200"} 1.0' in metrics
    doc = orjson.loads(httpx.get(api.url + "/openapi.json").content)
    assert doc["openapi"].startswith("3.")
    assert "/api/communities/{cid}/members/{mid}/history" in doc["paths"]
    assert "/api/communities/{cid}/members/{mid}/export.csv" in doc["paths"]
