"""Dashboards v2 in headless Chromium against a running server on the test's Kafka topics and
ClickHouse database: uPlot charts with axis ticks and tooltips on tap, the energy-flow picture
whose numbers add up, history browsed by day / week / month / year that matches the REST
history, the member's own alarms in plain words, the operator's fleet view, the languages,
zero serious axe-core violations, and the member page's websocket bytes per minute at 1 Hz.

Balances of m1 (G, C, A, SC, S, I in Wh):
    today, local hours 0-2: see browser_helpers.TODAY (C 3.0 kWh, SC 1.6, S 0.3, I 1.4)
    yesterday, hours 10 and 20: (4000, 500, 2000, 500, 1500, 0), (0, 1500, 0, 0, 0, 1500)
        → C 2.0 kWh, SC 0.5, S 1.5, I 1.5
    a day of a previous month (for the year view): hour 12: (5000, 900, 2500, 900, 1600, 0)
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from typing import Any

import httpx
import orjson
import pytest
from browser_helpers import (
    DESKTOP,
    PHONE,
    TABLET,
    ByteMeter,
    axe_violations,
    axis_ticks,
    insert_balances,
    insert_today,
    now_ms,
    open_page,
    see,
    shoot,
)
from dash_helpers import (
    CID,
    CUPS,
    OTHER,
    LiveServer,
    alarm_msg,
    community_msg,
    member_msg,
    produce,
    wait_for,
)
from playwright.sync_api import Browser, Page, expect

from dashboards import tokens
from dashboards.history import today_local
from dashboards.hub import delta_frame

pytestmark = [pytest.mark.stack, pytest.mark.browser]

YESTERDAY = [(4000, 500, 2000, 500, 1500, 0)] + [(0, 0, 0, 0, 0, 0)] * 9 + \
    [(0, 1500, 0, 0, 0, 1500)]


def kwh(value: float) -> str:
    """es-ES as the pages write energies: decimal comma, two decimals, kWh."""
    return f"{value:.2f}".replace(".", ",") + " kWh"


def rest(server: LiveServer, token: str, path: str) -> Any:
    response = httpx.get(server.url + path, headers={"authorization": f"Bearer {token}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def history(server: LiveServer, token: str, period: str, day: date) -> Any:
    return rest(server, token, f"/api/communities/{CID}/members/m1/history?period={period}"
                               f"&date={day.isoformat()}")


def no_serious_axe(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], violations


@pytest.fixture
def fed(live_server: LiveServer) -> LiveServer:
    today = today_local("Europe/Madrid")
    insert_today(live_server)
    insert_balances(live_server, today - timedelta(days=1), YESTERDAY, first_hour=10)
    earlier = (today.replace(day=1) - timedelta(days=1)).replace(day=15)
    if earlier.year == today.year:
        insert_balances(live_server, earlier, [(5000, 900, 2500, 900, 1600, 0)], first_hour=12)
    ts = now_ms()
    produce(live_server,
            member_msg("m1", ts, assigned=1500.0, consumption=2250.0),
            member_msg("m2", ts, assigned=900.0, consumption=400.0, beta=0.3),
            community_msg(ts, generation=3000.0, consumption=5000.0, self_consumption=2500.0,
                          reporting=2))
    wait_for(lambda: live_server.app.state.hub.latest.get(f"community:{CID}"), what="feed")
    return live_server


def tap_bar(page: Page, chart: str, index: int) -> None:
    """Tap (touch) the middle of bar ``index`` of a uPlot bar chart."""
    box = page.evaluate("""([id, i]) => {
        const u = window.ioeCharts[id];
        const top = u.valToPos(u.data[1][i], "y");
        return {x: u.valToPos(i, "x"), y: (top + u.over.clientHeight) / 2};
    }""", [chart, index])
    page.tap(f"#{chart} .u-over", position=box)


def pinch(page: Page, chart: str, gap: float, to: float) -> None:
    """Two fingers on the chart, moving apart from ``gap`` to ``to`` CSS pixels (CDP touch)."""
    box = page.locator(f"#{chart} .u-over").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, half: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": cx - half, "y": cy, "id": 1},
                                                 {"x": cx + half, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", gap / 2)
    for step in range(1, 6):
        touch("touchMove", (gap + (to - gap) * step / 5) / 2)
    touch("touchEnd", 0)
    cdp.detach()


def test_member_phone_live_flow_history_alarms(fed: LiveServer, browser: Browser) -> None:
    errors: list[str] = []
    token = fed.token()
    page = open_page(browser, fed, "/member", token, errors=errors, device=PHONE)
    see(page, "#conn-state", "En directo")
    see(page, "#live-assigned", "1,50 kW")
    see(page, "#live-coverage", "67 %")  # 1.5 kW of 2.25 kW from the sun
    see(page, "#live-selfratio", "100 %")

    # the live trend: a few seconds of 1 Hz updates, axes with time and power ticks
    base = now_ms()
    for i, (a, c) in enumerate([(1600.0, 2000.0), (1700.0, 1900.0), (1800.0, 950.0)]):
        fed.deliver([member_msg("m1", base + 1000 * (i + 1), assigned=a, consumption=c)])
        see(page, "#live-assigned", f"{a / 1000:.2f} kW".replace(".", ","))  # 1 Hz, unconflated
    wait_for(lambda: page.evaluate("window.ioeCharts['trend-chart'].data[0].length") >= 4,
             what="trend points")
    x_ticks, y_ticks = axis_ticks(page, "trend-chart")
    assert x_ticks and all(re.fullmatch(r"\d\d:\d\d", v) for v in x_ticks), x_ticks
    assert y_ticks and all(re.search(r"\d (W|kW)$", v.replace("\u00a0", " ")) for v in y_ticks)

    # today's flow: sun = self-consumed + to the grid; home = from the sun + from the grid
    today = today_local("Europe/Madrid")
    rest_today = history(fed, token, "day", today)["totals"]
    expect(page.locator("#flow [data-node=home]")).to_have_count(1)
    flow = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '#flow [data-kwh]')].map(e => [e.dataset.node || e.dataset.flow, +e.dataset.kwh]))""")
    assert flow["sun"] == pytest.approx(flow["self"] + flow["surplus"])
    assert flow["home"] == pytest.approx(flow["self"] + flow["import"])
    assert flow["self"] == pytest.approx(rest_today["self_consumed_kwh"]) == 1.6
    assert flow["home"] == pytest.approx(rest_today["consumption_kwh"]) == 3.0
    assert flow["import"] == pytest.approx(1.4) and flow["surplus"] == pytest.approx(0.3)
    assert "1,9 kWh" in (page.locator("#flow [data-node=sun]").text_content() or "")

    # history, today by hour: ticks on both axes, a tap on hour 1 shows its values
    see(page, "#hist-consumption", kwh(3.0))
    x_ticks, y_ticks = axis_ticks(page, "hist-chart")
    assert "00" in x_ticks and "12" in x_ticks, x_ticks
    assert y_ticks and all(re.fullmatch(r"\d+(,\d)?", v) for v in y_ticks), y_ticks
    tap_bar(page, "hist-chart", 1)
    tip = page.locator("#hist-chart .chart-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("01:00–02:00")
    expect(tip).to_contain_text("Autoconsumida: 1,20 kWh")
    expect(tip).to_contain_text("Excedente: 0,30 kWh")

    # two fingers pinch the x axis open (zoom in); a double click (or double tap) resets it
    span = "(() => { const x = window.ioeCharts['hist-chart'].scales.x; return x.max - x.min; })()"
    before = page.evaluate(span)
    pinch(page, "hist-chart", 40, 120)
    assert page.evaluate(span) < before / 2
    page.dblclick("#hist-chart .u-over")
    assert page.evaluate(span) == pytest.approx(before, abs=1.01)

    # previous day: the numbers are the REST history of yesterday
    page.click("#hist-prev")
    yesterday = today - timedelta(days=1)
    expect(page.locator("#hist-title")).to_have_attribute("data-from", yesterday.isoformat())
    totals = history(fed, token, "day", yesterday)["totals"]
    assert totals["consumption_kwh"] == pytest.approx(2.0)
    see(page, "#hist-consumption", kwh(totals["consumption_kwh"]))
    see(page, "#hist-surplus", kwh(totals["surplus_kwh"]))
    see(page, "#hist-import", kwh(totals["import_kwh"]))
    expect(page.locator("#hist-next")).to_be_enabled()
    page.click("#hist-next")
    expect(page.locator("#hist-title")).to_have_attribute("data-from", today.isoformat())
    see(page, "#hist-consumption", kwh(3.0))
    expect(page.locator("#hist-next")).to_be_disabled()

    # the date picker, then week / month / year, each equal to the REST history
    page.fill("#hist-date", yesterday.isoformat())
    expect(page.locator("#hist-title")).to_have_attribute("data-from", yesterday.isoformat())
    see(page, "#hist-self", kwh(0.5))
    for period in ("week", "month", "year"):
        page.click(f"[data-period={period}]")
        expected = history(fed, token, period, yesterday)
        expect(page.locator("#hist-title")).to_have_attribute("data-from", expected["from"])
        see(page, "#hist-consumption", kwh(expected["totals"]["consumption_kwh"]))
        see(page, "#hist-savings", f"{expected['savings']['total_eur']:.2f} €".replace(".", ","))
        assert page.locator("#hist-table tbody tr").count() == len(expected["buckets"])
    x_ticks, _ = axis_ticks(page, "hist-chart")
    assert "ene" in x_ticks or "ene." in x_ticks, x_ticks  # months in Spanish

    # my devices and my alarms in plain words; the meter goes offline
    expect(page.locator("#my-devices li[data-device='shelly-m1:0']")).to_have_text(
        re.compile(r"Tu contador funciona bien · última lectura hace \d+ s"))
    expect(page.locator(f"#my-devices li[data-device='datadis:{CUPS['m1']}']")).to_have_text(
        "Contador de la distribuidora (Datadis) aún sin datos oficiales (llegan con uno o dos "
        "días de retraso)")
    see(page, "#my-alarms li", "Ningún aviso: todo funciona bien.")
    opened = now_ms() - 120_000
    produce(fed, alarm_msg("al-m1", f"member:{CID}:m1", member="m1", ts_ms=opened,
                           kind="offline"),
            alarm_msg("al-m2", f"operators:{CID}", member="m2", ts_ms=opened,
                      device="shelly-m2:0"))
    alarm = page.locator("#my-alarms li[data-alarm=al-m1]")
    expect(alarm).to_contain_text("Tu contador no envía datos desde las")
    expect(alarm).to_contain_text("Comprueba que está enchufado")
    expect(page.locator("#my-alarms li[data-alarm=al-m2]")).to_have_count(0)
    page.click("[data-period=day]")
    page.click("#hist-today")
    see(page, "#hist-consumption", kwh(3.0))
    no_serious_axe(page)
    shoot(page, "dashboard-member-phone.png")
    produce(fed, alarm_msg("al-m1", f"member:{CID}:m1", member="m1", ts_ms=opened,
                           kind="offline", state="closed"))
    see(page, "#my-alarms li", "Ningún aviso: todo funciona bien.")
    assert errors == []


def test_member_tablet_landscape_large_type(fed: LiveServer, browser: Browser) -> None:
    errors: list[str] = []
    page = open_page(browser, fed, "/tablet", fed.token(), errors=errors, device=TABLET)
    see(page, "#live-assigned", "1,50 kW")
    see(page, "#hist-consumption", kwh(3.0))
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector("
                         "'#live-assigned')).fontSize)")
    assert size >= 40  # large type for a screen on the wall
    columns = page.evaluate("getComputedStyle(document.querySelector('main'))"
                            ".gridTemplateColumns.split(' ').length")
    assert columns == 2
    page.click("[data-period=month]")
    expect(page.locator("#hist-title")).to_have_attribute(
        "data-from", today_local("Europe/Madrid").replace(day=1).isoformat())
    tip = page.locator("#hist-chart .chart-tip")
    page.hover("#hist-chart .u-over", position={"x": 20, "y": 60})  # a mouse hover shows it too
    expect(tip).to_be_visible()
    # the keyboard: the chart takes the focus, Home / → walk the days with the tooltip
    page.mouse.move(0, 0)
    page.focus("#hist-chart")
    page.keyboard.press("Home")
    expect(tip).to_contain_text(re.compile(r"^[^,]+, 1 de "))
    page.keyboard.press("ArrowRight")
    expect(tip).to_contain_text(re.compile(r"^[^,]+, 2 de "))
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()
    no_serious_axe(page)
    shoot(page, "dashboard-member-tablet.png")
    assert errors == []


def operator_token(server: LiveServer, *communities: str) -> str:
    return tokens.issue(server.settings, role="operator", communities=list(communities))[0]


def test_control_centre_fleet_and_drill_down(fed: LiveServer, browser: Browser) -> None:
    errors: list[str] = []
    both = operator_token(fed, CID, OTHER)
    page = open_page(browser, fed, "/control", both, errors=errors, device=DESKTOP)
    fleet = "#fleet-table tbody tr"
    expect(page.locator(fleet)).to_have_count(2)
    row = f"#fleet-table tr[data-community={CID}]"
    see(page, f"{row} [data-field=generation]", "3,00 kW")
    see(page, f"{row} [data-field=selfratio]", "42 %")  # 1.6 / 3.8 kWh today
    expect(page.locator(f"{row} [data-field=devices]")).to_have_text(re.compile(r"\d+ / \d+"))
    see(page, f"{row} [data-field=alarms]", "0")
    see(page, f"#fleet-table tr[data-community={OTHER}] [data-field=status]", "correcto")
    expect(page.locator(f"{row}")).to_have_attribute("aria-current", "true")
    see(page, "#community-name", "· Comunidad de Prueba")
    base = now_ms()
    for i in range(3):
        fed.deliver([community_msg(base + 1000 * (i + 1), generation=3000.0 + 100 * i,
                                   consumption=5000.0, self_consumption=2500.0)])
        see(page, "#community-generation", f"3,{i}0 kW")
    wait_for(lambda: page.evaluate(
        "(window.ioeCharts['community-trend']?.data[0].length || 0) >= 3"), what="trend")
    x_ticks, y_ticks = axis_ticks(page, "community-trend")
    assert x_ticks and y_ticks
    produce(fed, alarm_msg("al-9", f"operators:{CID}", member="m2", ts_ms=now_ms(),
                           device="shelly-m2:0", kind="frozen"))
    expect(page.locator("#alarms-list li[data-alarm=al-9]")).to_contain_text("valor congelado")
    see(page, f"{row} [data-field=alarms]", "1")  # the fleet counts it live
    # Datadis reconciliation of this month: one row per member (no official hours here)
    expect(page.locator("#recon-table tbody tr")).to_have_count(3)
    see(page, "#recon-table tr[data-member=m1] [data-field=official]", "0 %")
    expect(page.locator("#recon-table tr[data-member=m1] [data-field=hours]")).to_have_text(
        re.compile(r"^\d+ / \d+$"))
    no_serious_axe(page)
    shoot(page, "dashboard-control-fleet.png")
    # drill into the other community
    page.click(f"#fleet-table tr[data-community={OTHER}] a")
    see(page, "#community-name", "· Otra Comunidad")
    expect(page.locator(f"#fleet-table tr[data-community={OTHER}]")).to_have_attribute(
        "aria-current", "true")
    see(page, "#members-table tr[data-member=x1] th", "Xavier")
    # an operator of one community sees one
    one = open_page(browser, fed, "/control", operator_token(fed, OTHER), device=DESKTOP)
    expect(one.locator(fleet)).to_have_count(1)
    see(one, f"#fleet-table tr[data-community={OTHER}] th", "Otra Comunidad")
    # a member token gets no fleet
    assert httpx.get(fed.url + "/api/fleet", headers={
        "authorization": f"Bearer {fed.token()}"}).status_code == 403
    assert errors == []


def test_languages_catalogues_and_choice(live_server: LiveServer, browser: Browser) -> None:
    page = open_page(browser, live_server, "/member", live_server.token(), device=PHONE,
                     locale="ca-ES")
    # the browser's language (Catalan) is chosen when the user has not picked one
    expect(page.locator("h2#h-flow")).to_have_text("Energia d'avui")
    assert page.evaluate("document.documentElement.lang") == "ca"
    problems = page.evaluate("""async () => {
        const {STRINGS} = await import('/static/i18n.js');
        const holes = (s) => (s.match(/\\{\\w+\\}/g) || []).sort().join();
        const out = [];
        for (const [lang, table] of Object.entries(STRINGS)) {
            for (const key of Object.keys(STRINGS.es)) {
                if (!(key in table)) out.push(`${lang}: missing ${key}`);
                else if (holes(table[key]) !== holes(STRINGS.es[key])) out.push(`${lang}: ${key}`);
            }
            for (const key of Object.keys(table)) if (!(key in STRINGS.es)) out.push(`${lang}: extra ${key}`);
        }
        return out;
    }""")
    assert problems == []
    for lang, title in (("eu", "Gaurko energia"), ("gl", "Enerxía de hoxe"),
                        ("en", "Today's energy"), ("es", "Energía de hoy")):
        page.select_option("#lang", lang)
        expect(page.locator("h2#h-flow")).to_have_text(title)
        assert page.evaluate("document.documentElement.lang") == lang
    page.reload()  # the choice is kept
    expect(page.locator("h2#h-flow")).to_have_text("Energía de hoy")


def test_member_page_bandwidth_and_weight(stack_settings: Any, server_factory: Any,
                                          browser: Browser) -> None:
    """The member page's websocket bytes on the wire per minute at 1 Hz updates of its two
    channels (the production heartbeat of 15 s), and the page weight of the first load."""
    server: LiveServer = server_factory(stack_settings)  # heartbeat 15 s, as in production
    meter = ByteMeter(server.port).start()
    try:
        ts = now_ms()
        server.deliver([member_msg("m1", ts, assigned=1500.0, consumption=2250.0),
                        community_msg(ts, generation=3000.0, consumption=5000.0,
                                      self_consumption=2500.0)])
        page = open_page(browser, server, "/member", server.token(), device=PHONE,
                         base_url=meter.url)
        see(page, "#conn-state", "En directo")
        see(page, "#live-assigned", "1,50 kW")
        page.wait_for_load_state("networkidle")
        # the page's own requests (HTML, CSS, uPlot, modules, REST), compressed, with headers
        weight = page.evaluate("""() => [...performance.getEntriesByType('navigation'),
            ...performance.getEntriesByType('resource')].reduce((a, e) => a + e.transferSize, 0)""")
        page.wait_for_function("navigator.serviceWorker.ready.then(() => true)")
        with_cache = meter.http_bytes()  # + the service worker's copy of the app's files
        [ws] = meter.websockets()
        start_down, start_up, raw = ws["down"], ws["up"], 0
        seconds = 12
        started = time.monotonic()
        for i in range(seconds):
            ts = now_ms()
            member = member_msg("m1", ts, assigned=1500.0 + 7 * i, consumption=2250.0 - 3 * i)
            community = community_msg(ts, generation=3000.0 + 11 * i, consumption=5000.0,
                                      self_consumption=2500.0)
            server.deliver([member, community])
            raw += sum(len(delta_frame(m["channel"], orjson.dumps(m)))
                       for m in (member, community))
            time.sleep(max(0.0, started + i + 1 - time.monotonic()))
        see(page, "#live-assigned", f"{(1500 + 7 * (seconds - 1)) / 1000:.2f} kW"
            .replace(".", ","))
        time.sleep(0.3)
        elapsed = time.monotonic() - started
        wire = ws["down"] - start_down + ws["up"] - start_up
        per_minute = wire * 60 / elapsed
        raw_per_minute = raw * 60 / elapsed
        before = meter.http_bytes()
        page.reload()
        see(page, "#conn-state", "En directo")
        page.wait_for_load_state("networkidle")
        again = meter.http_bytes() - before
        print(f"\nmember page websocket at 1 Hz (member + community channels): "
              f"{per_minute / 1024:.1f} KiB/min on the wire ({per_minute:.0f} B/min), "
              f"{raw_per_minute / 1024:.1f} KiB/min of JSON before permessage-deflate "
              f"({raw_per_minute / per_minute:.1f}× smaller); page weight: first load "
              f"{weight / 1024:.1f} KiB (gzip), {with_cache / 1024:.1f} KiB with the service "
              f"worker's copy of the app, a reload {again / 1024:.1f} KiB")
        assert wire > 0
        assert per_minute < 0.5 * raw_per_minute  # permessage-deflate is on
        assert per_minute < 30 * 1024  # the budget: under 30 KiB a minute at 1 Hz
        assert 0 < weight < 120 * 1024 and again < weight
    finally:
        meter.stop()


def test_offline_reload_shows_the_last_values(fed: LiveServer, browser: Browser) -> None:
    """The service worker keeps the page and its files; localStorage keeps the values."""
    page = open_page(browser, fed, "/member", fed.token(), device=PHONE)
    see(page, "#live-assigned", "1,50 kW")
    page.wait_for_function("navigator.serviceWorker.ready.then(() => true)")
    page.wait_for_function("async () => (await caches.keys()).length > 0 && "
                           "(await (await caches.open((await caches.keys())[0])).keys()).length"
                           " >= 10")
    page.wait_for_timeout(500)
    page.context.set_offline(True)
    page.reload()
    see(page, "#live-assigned", "1,50 kW")
    expect(page.locator("#conn-state")).to_have_text(
        re.compile(r"Sin conexión desde \d\d:\d\d:\d\d"), timeout=20_000)
    see(page, "#hist-consumption", kwh(3.0))  # the history kept for today
    page.context.set_offline(False)
    see(page, "#conn-state", "En directo", timeout=45_000)


def test_static_assets_are_local_and_compressed(live_server: LiveServer) -> None:
    """uPlot is served from /static/vendor (no CDN at run time), gzip-compressed."""
    for path in ("/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/uPlot.min.css",
                 "/static/vendor/uplot/LICENSE", "/sw.js", "/manifest.webmanifest"):
        response = httpx.get(live_server.url + path, headers={"accept-encoding": "gzip"})
        assert response.status_code == 200, path
    js = httpx.get(live_server.url + "/static/vendor/uplot/uPlot.iife.min.js",
                   headers={"accept-encoding": "gzip"})
    assert js.headers["content-encoding"] == "gzip" and "uPlot" in js.text
    manifest = httpx.get(live_server.url + "/manifest.webmanifest").json()
    assert manifest["start_url"] == "/member" and manifest["lang"] == "es"
    for page in ("/member", "/tablet", "/control", "/"):
        html = httpx.get(live_server.url + page).text
        assert "http://" not in html.replace('xmlns="http://www.w3.org', "") \
            and "https://" not in html, page
    assert 'data-layout="tablet"' in httpx.get(live_server.url + "/tablet").text
