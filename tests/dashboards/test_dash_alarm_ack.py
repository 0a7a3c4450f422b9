"""Operators acknowledge and assign open alarms in the control centre; every action is stored
in ClickHouse (``alarm_actions``, migration 0005) and shown as the alarm's history.

The alarms are rows of the ``anomalies`` table as the sink stores them: ``al-open`` (open,
Ana's meter offline) and ``al-closed`` (closed yesterday). What must hold, checked against the
table itself (a plain SELECT, not the code's reader):

* an operator of ce-test acknowledges, then assigns ``al-open`` to "Luis Técnico" with a note:
  two rows, in that order, signed with the token's name and id; the page shows both, also after
  a reload (durable), and the English page says it in English;
* refused, and nothing stored: a member token (403, even for the member's own alarm), an
  operator of another community (403), a closed alarm (409), an unknown alarm (404), an
  assignment without an assignee and an unknown action (400).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import httpx
import pytest
from browser_helpers import DESKTOP, axe_violations, open_page, shoot
from dash_helpers import CID, OTHER, LiveServer
from playwright.sync_api import Browser, expect
from test_messages_js import OBJECTS

from dashboards import tokens, tokens_command
from ioe.clickhouse import client
from ioe.messages import (
    ALARM_ACTION_COLUMNS,
    ALARM_COLUMNS,
    Alarm,
    AlarmAction,
    AlarmActionKind,
    column_names,
    row,
)
from ioe.settings import Settings

pytestmark = [pytest.mark.stack, pytest.mark.browser]

NOW = int(time.time() * 1000)
OPEN = Alarm("al-open", CID, "shelly-m1:0", "m1", "offline", "warning", "open", NOW - 3600_000,
             None, {"age_s": 3600}, NOW - 3600_000, 1)
CLOSED = Alarm("al-closed", CID, "shelly-m2:0", "m2", "frozen", "warning", "closed",
               NOW - 86400_000, NOW - 80000_000, {}, NOW - 80000_000, 2)
OPERATOR_NAME = "Marta Operadora"


def sql(server: LiveServer, query: str, params: Any = None) -> list[Any]:
    ch = client(server.settings, database=server.settings.clickhouse_database)
    try:
        return ch.execute(query, params or {})  # type: ignore[no-any-return]
    finally:
        ch.disconnect()


def stored(server: LiveServer) -> list[tuple[str, str, str, str, str, str]]:
    """The alarm_actions rows, by SQL: (alarm, action, actor, token id, assignee, note)."""
    return sql(server, "SELECT alarm_id, action, actor, token_id, assignee, note "
                       "FROM alarm_actions FINAL ORDER BY at_ms, action_id")


@pytest.fixture
def alarmed(stack_settings: Settings, server_factory: Callable[..., LiveServer]) -> LiveServer:
    server = server_factory(stack_settings)
    sql(server, f"INSERT INTO anomalies ({', '.join(column_names(ALARM_COLUMNS))}) VALUES",
        [row(OPEN, ALARM_COLUMNS), row(CLOSED, ALARM_COLUMNS)])
    return server


def operator(server: LiveServer, *communities: str, name: str | None = OPERATOR_NAME
             ) -> tuple[str, str]:
    token, principal = tokens.issue(server.settings, role="operator",
                                    communities=list(communities), name=name)
    return token, principal.token_id


def post(server: LiveServer, token: str, alarm: str, body: Any,
         community: str = CID) -> httpx.Response:
    return httpx.post(f"{server.url}/api/communities/{community}/alarms/{alarm}/actions",
                      headers={"authorization": f"Bearer {token}"}, json=body, timeout=30)


def test_the_message_the_table_and_messages_js_agree(alarmed: LiveServer) -> None:
    """One definition: the dataclass's fields are the JS names and the table's columns."""
    assert set(OBJECTS["ALARM_ACTION"].values()) == {f.name for f in fields(AlarmAction)}
    assert set(OBJECTS["ALARM_ACTION_KIND"].values()) == {k.value for k in AlarmActionKind}
    table = [r[0] for r in sql(alarmed, "DESCRIBE TABLE alarm_actions")]
    assert table == list(column_names(ALARM_ACTION_COLUMNS))
    action = AlarmAction("x", "al", CID, "assign", "Marta", "t1", 5, "Luis", "nota")
    assert AlarmAction.decode(action.encode()) == action


def test_tokens_issue_with_a_name(web_settings: Settings,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``ioe tokens issue --name`` puts the holder's name in the token: it signs actions."""
    parser = argparse.ArgumentParser()
    tokens_command.configure(parser)
    args = parser.parse_args(["issue", "--operator", "--community", CID, "--name",
                              OPERATOR_NAME, "--registry", str(web_settings.registry_path)])
    assert tokens_command.run(args, web_settings) == 0
    principal = tokens.Verifier(web_settings).verify(capsys.readouterr().out.strip())
    assert principal.name == OPERATOR_NAME and principal.actor == OPERATOR_NAME
    unnamed = tokens.Verifier(web_settings).verify(
        tokens.issue(web_settings, role="operator", communities=[CID])[0])
    assert unnamed.name is None and unnamed.actor == f"token {unnamed.token_id}"


def test_acknowledge_and_assign_are_stored_as_history(alarmed: LiveServer) -> None:
    token, token_id = operator(alarmed, CID)
    first = post(alarmed, token, "al-open", {"action": "acknowledge"})
    assert first.status_code == 201, first.text
    second = post(alarmed, token, "al-open", {"action": "assign",
                                              "assignee": "  Luis   Técnico ",
                                              "note": "revisar el wifi"})
    assert second.status_code == 201, second.text
    assert AlarmAction.from_dict(second.json()).assignee == "Luis Técnico"
    assert stored(alarmed) == [
        ("al-open", "acknowledge", OPERATOR_NAME, token_id, "", ""),
        ("al-open", "assign", OPERATOR_NAME, token_id, "Luis Técnico", "revisar el wifi")]
    history = httpx.get(f"{alarmed.url}/api/communities/{CID}/alarm-actions",
                        headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert history.status_code == 200
    assert [(a["action"], a["assignee"]) for a in history.json()["actions"]] == [
        ("acknowledge", ""), ("assign", "Luis Técnico")]
    # a token issued without a name signs with its id
    anonymous, anonymous_id = operator(alarmed, CID, name=None)
    assert post(alarmed, anonymous, "al-open", {"action": "acknowledge"}).status_code == 201
    assert stored(alarmed)[-1][2:4] == (f"token {anonymous_id}", anonymous_id)


def test_refusals_store_nothing(alarmed: LiveServer) -> None:
    member = alarmed.token()  # Ana (m1): the open alarm is on her own meter
    other, _ = operator(alarmed, OTHER)
    mine, _ = operator(alarmed, CID)
    cases = [
        (member, "al-open", {"action": "acknowledge"}, CID, 403),
        (other, "al-open", {"action": "acknowledge"}, CID, 403),
        (other, "al-open", {"action": "acknowledge"}, OTHER, 404),  # not an alarm of OTHER
        (mine, "al-closed", {"action": "acknowledge"}, CID, 409),
        (mine, "al-nope", {"action": "acknowledge"}, CID, 404),
        (mine, "al-open", {"action": "assign", "assignee": "  "}, CID, 400),
        (mine, "al-open", {"action": "close"}, CID, 400),
        (mine, "al-open", ["acknowledge"], CID, 400),
    ]
    for token, alarm, body, community, status in cases:
        response = post(alarmed, token, alarm, body, community)
        assert response.status_code == status, (alarm, body, response.text)
    too_big = httpx.post(f"{alarmed.url}/api/communities/{CID}/alarms/al-open/actions",
                         headers={"authorization": f"Bearer {mine}"},
                         content=b'{"action": "acknowledge", "note": "' + b"x" * 5000 + b'"}')
    assert too_big.status_code == 413
    assert httpx.get(f"{alarmed.url}/api/communities/{CID}/alarm-actions",
                     headers={"authorization": f"Bearer {member}"}).status_code == 403
    assert stored(alarmed) == []


def test_control_centre_acknowledge_and_assign(alarmed: LiveServer, browser: Browser) -> None:
    errors: list[str] = []
    token, _ = operator(alarmed, CID)
    page = open_page(browser, alarmed, "/control", token, errors=errors, device=DESKTOP)
    item = page.locator("#alarms-list li[data-alarm=al-open]")
    expect(item).to_contain_text("sin datos · shelly-m1:0 · Ana García")
    expect(item.locator(".alarm-state")).to_have_count(0)
    item.locator("button[data-action=acknowledge]").click()
    expect(item.locator(".alarm-state")).to_contain_text(f"Reconocida por {OPERATOR_NAME}")
    item.locator("button[data-action=assign]").click()
    expect(page.locator("#alarm-action-form")).to_be_visible()
    expect(page.locator("#assign-title")).to_contain_text("shelly-m1:0")
    expect(page.locator("#assignee")).to_be_focused()
    page.fill("#assignee", "Luis Técnico")
    page.fill("#assign-note", "revisar el wifi")
    violations = axe_violations(page)  # with the form open
    assert violations == [], violations
    page.click("#alarm-action-form button[type=submit]")
    expect(page.locator("#alarm-action-form")).to_be_hidden()
    expect(item.locator(".alarm-state")).to_contain_text(
        f"Asignada a Luis Técnico por {OPERATOR_NAME}")
    assert [r[1] for r in stored(alarmed)] == ["acknowledge", "assign"]
    shoot(page, "dashboard-control-alarm-ack.png")
    # durable: a new page reads the history back from ClickHouse
    page.reload()
    item = page.locator("#alarms-list li[data-alarm=al-open]")
    expect(item.locator(".alarm-state")).to_contain_text("Asignada a Luis Técnico")
    item.locator("details summary").click()
    steps = item.locator("details li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text(f"reconocida por {OPERATOR_NAME}")
    expect(steps.nth(1)).to_contain_text(f"asignada a Luis Técnico por {OPERATOR_NAME}"
                                         " — revisar el wifi")
    # the closed alarm is history: no buttons
    closed = page.locator("#recent-alarms li[data-alarm=al-closed]")
    expect(closed).to_be_visible()
    expect(closed.locator("button")).to_have_count(0)
    page.select_option("#lang", "en")
    expect(item.locator(".alarm-state")).to_contain_text(f"Acknowledged by {OPERATOR_NAME}")
    assert errors == []
