"""The control centre's command log, from the ClickHouse tables of migration 0004.

Commands and results are stored with the control package's own writer
(``control.store.CommandLog``), as ``ioe control send`` / ``ioe control run`` store them; the
page and the REST answer must show, for each, who asked, why, what was written, what was read
back and how it ended. The states expected below are written by hand from what was stored:

=====  ===================  ================================  ==============
 age   command              stored                            state shown
=====  ===================  ================================  ==============
 6 min inv-1 power 50 %     sent; acknowledged, read back 50  confirmada
 5 min relay on             sent; failed, read back "off"     fallida
 4 min power 30 %           sent; expired                     caducada
 3 min relay on (member)    refused (not the member's)        rechazada
 2 min power none           sent, deadline passed, no result  sin respuesta
 1 min relay off (dry run)  dry_run                           simulada
 now   power 80 %           sent, deadline in 1 h, no result  pendiente
=====  ===================  ================================  ==============

and one command of the other community, which must not show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from browser_helpers import DESKTOP, axe_violations, open_page, see
from dash_helpers import CID, OTHER, LiveServer
from playwright.sync_api import Browser, expect

from control.commands import Issued
from control.store import CommandLog
from dashboards import tokens
from ioe.messages import Command, CommandResult
from ioe.settings import Settings

pytestmark = [pytest.mark.stack, pytest.mark.browser]

NOW = int(time.time() * 1000)
MIN = 60_000


def command(cid: str, key: str, value: Any, age_min: int, who: str = "operator:marta",
            reason: str = "prueba", ttl_ms: int = MIN, device: str = "inv-1",
            dry_run: bool = False) -> Command:
    issued = NOW - age_min * MIN
    return Command(command_id=f"c{age_min}-{cid}", community_id=cid, device_id=device, key=key,
                   value=value, requested_by=who, reason=reason, issued_at_ms=issued,
                   deadline_ms=issued + ttl_ms, dry_run=dry_run)


def result(c: Command, status: str, readback: Any, written: list[dict[str, Any]],
           detail: str = "") -> CommandResult:
    return CommandResult(c.command_id, c.community_id, c.device_id, c.key, status, c.value,
                         readback, "modbus-edge:edge-1", c.issued_at_ms + 2000, detail, written)


ACK = command(CID, "power_limit_pct", 50, 6, reason="límite de exportación")
FAIL = command(CID, "relay", "on", 5, device="shelly-m1:0", reason="excedente de Ana")
EXPIRED = command(CID, "power_limit_pct", 30, 4)
REFUSED = command(CID, "relay", "on", 3, who="member:m2", device="shelly-m1:0")
SILENT = command(CID, "power_limit_pct", None, 2)
DRY = command(CID, "relay", "off", 1, who="rule:calentador", device="shelly-m1:0",
              dry_run=True)
PENDING = command(CID, "power_limit_pct", 80, 0, ttl_ms=3600_000)
ELSEWHERE = command(OTHER, "power_limit_pct", 10, 0)
REGISTERS = [{"register": 40242, "value": 50}, {"register": 40246, "value": 1}]
EXPECTED = [  # newest first: (command, state shown, setting, read back)
    (PENDING, "pendiente", "power_limit_pct = 80", "—"),
    (DRY, "simulada", "relay = off", "—"),
    (SILENT, "sin respuesta", "power_limit_pct = ninguno", "—"),
    (REFUSED, "rechazada", "relay = on", "—"),
    (EXPIRED, "caducada", "power_limit_pct = 30", "ninguno"),
    (FAIL, "fallida", "relay = on", "off"),
    (ACK, "confirmada", "power_limit_pct = 50", "50"),
]


@pytest.fixture
def logged(stack_settings: Settings, server_factory: Callable[..., LiveServer]) -> LiveServer:
    server = server_factory(stack_settings)
    log = CommandLog(server.settings)
    try:
        log.add_commands([Issued(ACK, "sent"), Issued(FAIL, "sent"), Issued(EXPIRED, "sent"),
                          Issued(REFUSED, "refused", "shelly-m1:0 is not member m2's device"),
                          Issued(SILENT, "sent"), Issued(DRY, "dry_run"),
                          Issued(PENDING, "sent"), Issued(ELSEWHERE, "sent")])
        log.add_results([
            result(ACK, "acknowledged", 50, REGISTERS),
            result(FAIL, "failed", "off", [{"topic": "shellies/shelly-m1/relay/0/command",
                                            "payload": "on"}], "read back off"),
            CommandResult.expired(EXPIRED, "modbus-edge:edge-1", EXPIRED.deadline_ms + 1),
        ])
    finally:
        log.close()
    return server


def get(server: LiveServer, token: str, path: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"authorization": f"Bearer {token}"}, timeout=30)


def operator(server: LiveServer, *communities: str) -> str:
    return tokens.issue(server.settings, role="operator", communities=list(communities))[0]


def test_command_log_rest(logged: LiveServer) -> None:
    response = get(logged, operator(logged, CID), f"/api/communities/{CID}/commands")
    assert response.status_code == 200, response.text
    rows = response.json()["commands"]
    assert [r["command_id"] for r in rows] == [c.command_id for c, *_ in EXPECTED]
    by_id = {r["command_id"]: r for r in rows}
    ack = by_id[ACK.command_id]
    assert ack["requested_by"] == "operator:marta" and ack["reason"] == "límite de exportación"
    assert ack["value"] == 50 and ack["readback"] == 50 and ack["written"] == REGISTERS
    assert ack["result"] == "acknowledged" and ack["executor"] == "modbus-edge:edge-1"
    assert ack["executed_at_ms"] == ACK.issued_at_ms + 2000
    # the deadline column is a DateTime (whole UTC seconds): no timezone shift on the way back
    assert ack["deadline_ms"] == (ACK.issued_at_ms + MIN) // 1000 * 1000
    assert by_id[REFUSED.command_id]["refusal"] == "shelly-m1:0 is not member m2's device"
    assert by_id[SILENT.command_id]["value"] is None
    assert [r["state"] for r in rows] == ["pending", "dry_run", "no_result", "refused",
                                          "expired", "failed", "acknowledged"]
    assert get(logged, operator(logged, CID), f"/api/communities/{CID}/commands?limit=2"
               ).json()["commands"][1]["command_id"] == DRY.command_id
    assert get(logged, operator(logged, CID), f"/api/communities/{CID}/commands?limit=0"
               ).status_code == 400


def test_command_log_is_for_operators_of_the_community(logged: LiveServer) -> None:
    path = f"/api/communities/{CID}/commands"
    assert get(logged, logged.token(), path).status_code == 403  # a member of ce-test
    assert get(logged, operator(logged, OTHER), path).status_code == 403
    other = get(logged, operator(logged, OTHER), f"/api/communities/{OTHER}/commands").json()
    assert [r["command_id"] for r in other["commands"]] == [ELSEWHERE.command_id]


def test_control_centre_shows_the_command_log(logged: LiveServer, browser: Browser) -> None:
    errors: list[str] = []
    page = open_page(browser, logged, "/control", operator(logged, CID), errors=errors,
                     device=DESKTOP)
    rows = page.locator("#commands-table tbody tr")
    expect(rows).to_have_count(len(EXPECTED))
    for index, (c, shown, setting, readback) in enumerate(EXPECTED):
        row = f"#commands-table tr[data-command='{c.command_id}']"
        expect(rows.nth(index)).to_have_attribute("data-command", c.command_id)
        see(page, f"{row} [data-field=state]", shown)
        see(page, f"{row} [data-field=setting]", setting)
        see(page, f"{row} [data-field=readback]", readback)
        see(page, f"{row} [data-field=who]", c.requested_by)
    ack = f"#commands-table tr[data-command='{ACK.command_id}']"
    expect(page.locator(f"{ack} [data-field=written]")).to_contain_text('"register":40242')
    expect(page.locator(f"{ack} [data-field=why]")).to_have_text("límite de exportación")
    refused = f"#commands-table tr[data-command='{REFUSED.command_id}']"
    expect(page.locator(f"{refused} [data-field=why]")).to_contain_text("is not member m2's")
    fail = f"#commands-table tr[data-command='{FAIL.command_id}']"
    expect(page.locator(f"{fail} [data-field=written]")).to_contain_text(
        "shellies/shelly-m1/relay/0/command")
    violations = axe_violations(page)
    assert violations == [], violations
    page.select_option("#lang", "en")
    see(page, f"{ack} [data-field=state]", "acknowledged")
    assert errors == []
