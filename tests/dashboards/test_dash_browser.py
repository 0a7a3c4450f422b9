"""The three clients in headless Chromium (Debian's, driven by Playwright) against a running
server fed by a test stream on Kafka and balances in ClickHouse.

Checks that the numbers shown are those of the stream (formatted es-ES: decimal comma, W/kW,
kWh, €), that live values update, that the client survives a server restart (offline values
with their age and "offline since", then automatic reconnect), and saves screenshots to
test-artifacts/. The v2 features (charts, flow, history browsing, fleet, languages, axe-core,
bandwidth) are in test_dash_v2.py.

Today's balances of m1 (inserted here, local hours 0-2 of today):
    h0: G  800  C 1000  A  400  SC  400  S   0  I 600
    h1: G 3000  C 1200  A 1500  SC 1200  S 300  I   0
    h2: G    0  C  800  A    0  SC    0  S   0  I 800
    totals: C 3.0 kWh, SC 1.6, S 0.3, I 1.4;
    savings 1.6 × 0.15 + min(0.3 × 0.04, 1.4 × 0.15) = 0.24 + 0.012 = 0.25 €
    community today: G 3.8 kWh → self-consumption 1.6 / 3.8 = 42 %, coverage 1.6 / 3.0 = 53 %
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    PHONE,
    TABLET,
    axe_violations,
    insert_today,
    now_ms,
    open_page,
    see,
    shoot,
)
from dash_helpers import CID, LiveServer, alarm_msg, community_msg, member_msg, produce, wait_for
from playwright.sync_api import Browser, expect

from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.kafka import make_producer
from ioe.topics import DEADLETTER

pytestmark = [pytest.mark.stack, pytest.mark.browser]


@pytest.fixture
def fed(live_server: LiveServer) -> LiveServer:
    insert_today(live_server)
    ts = now_ms()
    produce(live_server,
            member_msg("m1", ts, assigned=1500.0, consumption=2250.0),
            member_msg("m2", ts, assigned=900.0, consumption=400.0, beta=0.3),
            community_msg(ts, generation=3000.0, consumption=5000.0, self_consumption=2500.0,
                          reporting=2))
    wait_for(lambda: live_server.app.state.hub.latest.get(f"community:{CID}"), what="feed")
    return live_server


def test_member_mobile_view_shows_the_stream_and_updates(fed: LiveServer, browser: Browser
                                                         ) -> None:
    errors: list[str] = []
    page = open_page(browser, fed, "/member", fed.token(), errors=errors, device=PHONE)
    see(page, "#conn-state", "En directo")
    see(page, "#live-assigned", "1,50 kW")
    see(page, "#live-consumption", "2,25 kW")
    see(page, "#live-self", "1,50 kW")
    see(page, "#live-import", "750 W")
    see(page, "#live-surplus", "0 W")
    see(page, "#live-coefficient", "0,500000")
    see(page, "#live-generation", "3,00 kW")
    see(page, "#member-name", "· Ana García")
    see(page, "#today-consumption", "3,00 kWh")
    see(page, "#today-self", "1,60 kWh")
    see(page, "#today-surplus", "0,30 kWh")
    see(page, "#today-import", "1,40 kWh")
    see(page, "#today-savings", "0,25 €")
    expect(page.locator("#live-age")).to_contain_text("actualizado hace")
    expect(page.locator("#trend-chart canvas")).to_have_count(1)
    expect(page.locator("#hist-chart canvas")).to_have_count(1)
    see(page, "#hist-consumption", "3,00 kWh")  # the history opens on today
    assert page.locator("#export").is_hidden()  # the CSV export is the tablet's
    shoot(page, "dashboard-member-mobile.png")

    produce(fed, member_msg("m1", now_ms(), assigned=1800.0, consumption=950.0))
    see(page, "#live-assigned", "1,80 kW")
    see(page, "#live-consumption", "950 W")
    see(page, "#live-surplus", "850 W")

    page.select_option("#lang", "en")
    see(page, "#conn-state", "Live")
    see(page, "#live-assigned", "1.80 kW")
    expect(page.locator("h2#h-flow")).to_have_text("Today's energy")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.select_option("#lang", "es")
    see(page, "#conn-state", "En directo")
    assert errors == []


def test_member_view_survives_a_server_restart(stack_settings: Any, server_factory: Any,
                                               browser: Browser) -> None:
    first: LiveServer = server_factory(stack_settings, heartbeat_s=1.0)
    produce(first, member_msg("m1", now_ms(), assigned=1234.0, consumption=2000.0))
    errors: list[str] = []
    page = open_page(browser, first, "/member", first.token(), errors=errors, device=PHONE)
    see(page, "#live-assigned", "1,23 kW")
    first.stop()
    # the server is gone: the last value stays, with its age, and the state says so
    expect(page.locator("#conn-state")).to_have_text(
        re.compile(r"Sin conexión desde \d\d:\d\d:\d\d"), timeout=20_000)
    see(page, "#live-assigned", "1,23 kW")
    expect(page.locator("#live-age")).to_contain_text("actualizado hace")
    shoot(page, "dashboard-member-offline.png")
    # a new instance on the same port: the client reconnects by itself and gets the snapshot
    second = server_factory(stack_settings, port=first.port, heartbeat_s=1.0)
    see(page, "#conn-state", "En directo", timeout=45_000)
    produce(second, member_msg("m1", now_ms(), assigned=2345.0, consumption=2000.0))
    see(page, "#live-assigned", "2,35 kW")
    assert errors == []


def test_tablet_view_browses_the_week_and_exports_it(fed: LiveServer, browser: Browser
                                                      ) -> None:
    errors: list[str] = []
    page = open_page(browser, fed, "/tablet", fed.token(), errors=errors, device=TABLET)
    assert page.evaluate("document.body.dataset.layout") == "tablet"
    see(page, "#live-assigned", "1,50 kW")
    see(page, "#today-consumption", "3,00 kWh")
    page.click("[data-period=week]")
    expect(page.locator("[data-period=week]")).to_have_attribute("aria-pressed", "true")
    see(page, "#hist-consumption", "3,00 kWh")
    see(page, "#hist-savings", "0,25 €")
    expect(page.locator("#hist-title")).to_contain_text("Semana del")
    label = page.locator("#hist-chart").get_attribute("aria-label") or ""
    assert "Autoconsumida 1,60 kWh" in label and "De la red 1,40 kWh" in label
    # seven days, one row each in the table alternative
    assert page.locator("#hist-table tbody tr").count() == 7
    with page.expect_download() as download:
        page.click("#export")
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.count("\n") == 4 and "1000.000" in csv_text  # header + today's 3 hours
    produce(fed, member_msg("m1", now_ms(), assigned=500.0, consumption=600.0))
    see(page, "#live-assigned", "500 W")
    assert errors == []


def test_control_centre_shows_every_member_plant_device_and_alarm(fed: LiveServer,
                                                                  browser: Browser) -> None:
    # a meter the registry does not know yet, dead-lettered by the MQTT bridge
    producer = make_producer(fed.settings)
    producer.send(fed.settings.topic(DEADLETTER), key="mqtt-bridge", value=encode_dead_letter(
        dead_letter(source="mqtt-bridge", reason="unknown_device", detail="no device",
                    payload=b'{"apower": 12.5}', origin="shellies/shelly-new/status/switch:0")))
    producer.flush(30)
    producer.close()
    wait_for(lambda: fed.app.state.deadletters.sources, what="the dead letter")
    errors: list[str] = []
    page = open_page(browser, fed, "/control", fed.token(role="operator", member=None),
                     {"width": 1440, "height": 1000}, errors)
    row = "#deadletters-table tr[data-origin='shellies/shelly-new/status/switch:0']"
    see(page, f"{row} [data-field=reason]", "dispositivo desconocido")
    see(page, f"{row} [data-field=count]", "1")
    expect(page.locator(f"{row} td.sample")).to_have_text('{"apower": 12.5}')
    see(page, "#conn-state", "En directo")
    see(page, "#community-name", "· Comunidad de Prueba")
    see(page, "#community-generation", "3,00 kW")
    see(page, "#community-consumption", "5,00 kW")
    see(page, "#community-self", "2,50 kW")
    see(page, "#community-selfratio", "83 %")
    see(page, "#community-coverage", "50 %")
    see(page, "#community-reporting", "2 / 3")
    see(page, "#today-generation", "3,80 kWh")
    see(page, "#today-selfratio", "42 %")
    see(page, "#today-coverage", "53 %")
    m1 = "#members-table tr[data-member=m1]"
    see(page, f"{m1} [data-field=assigned]", "1,50 kW")
    see(page, f"{m1} [data-field=consumption]", "2,25 kW")
    see(page, f"{m1} [data-field=coefficient]", "0,500000")
    see(page, "#members-table tr[data-member=m2] [data-field=assigned]", "900 W")
    see(page, "#members-table tr[data-member=m3] [data-field=assigned]", "—")
    see(page, "#members-table tr[data-member=m3] [data-field=coefficient]", "0,200000")
    assert page.locator("#members-table tbody tr").count() == 3
    see(page, "#plants-table tr[data-plant=plant-1] [data-field=power]", "3,00 kW")
    see(page, "#devices-table tr[data-device='shelly-m1:0'] [data-field=status]", "correcto")
    see(page, "#devices-table tr[data-device='inv-1'] [data-field=status]", "desconectado")
    see(page, "#schedule-sum", "1,000000")
    see(page, "#alarms-list li", "Ninguna alarma abierta")

    ts = now_ms()
    produce(fed, alarm_msg("al-1", f"operators:{CID}", member="m2", ts_ms=ts,
                           device="shelly-m2:0"),
            member_msg("m1", ts, assigned=2100.0, consumption=2250.0),
            community_msg(ts, generation=4000.0, consumption=5000.0, self_consumption=3000.0))
    expect(page.locator("#alarms-list li[data-alarm=al-1]")).to_contain_text("Josep Martí")
    see(page, f"{m1} [data-field=assigned]", "2,10 kW")
    see(page, "#community-generation", "4,00 kW")
    see(page, "#community-selfratio", "75 %")
    shoot(page, "dashboard-control-centre.png")
    produce(fed, alarm_msg("al-1", f"operators:{CID}", member="m2", ts_ms=ts, state="closed",
                           device="shelly-m2:0"))
    see(page, "#alarms-list li", "Ninguna alarma abierta")
    assert errors == []


def test_pages_without_a_token_ask_for_one(live_server: LiveServer, browser: Browser) -> None:
    context = browser.new_context(locale="es-ES")
    page = context.new_page()
    page.goto(live_server.url + "/member")
    expect(page.locator("#need-token")).to_be_visible()
    page.goto(live_server.url + "/")
    expect(page.locator("label[for=token]")).to_have_text("Token de acceso")
    assert axe_violations(page) == []
    page.fill("#token", live_server.token())
    page.click("button[value='/member']")
    see(page, "#conn-state", "En directo")
