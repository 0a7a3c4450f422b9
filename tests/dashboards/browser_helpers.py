"""Helpers of the browser tests: Debian's Chromium through Playwright, balances and readings in
ClickHouse, pages opened with a token, screenshots, axe-core (vendored from npm in
tests/dashboards/vendor/axe-core, MPL-2.0) and a TCP proxy that counts the bytes on the wire."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from dash_helpers import CID, CUPS, LiveServer, free_port
from playwright.sync_api import Browser, Page, expect

from dashboards.history import local_midnight, today_local
from ioe.clickhouse import client
from ioe.settings import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
TZ = "Europe/Madrid"
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True,
         "device_scale_factor": 2}
TABLET = {"viewport": {"width": 1366, "height": 1024}, "has_touch": True}
DESKTOP = {"viewport": {"width": 1440, "height": 1000}}

#: today's balances of m1 (local hours 0-2): (G, C, A, SC, S, I) in Wh
TODAY = [(800, 1000, 400, 400, 0, 600), (3000, 1200, 1500, 1200, 300, 0),
         (0, 800, 0, 0, 0, 800)]


def insert_balances(server: LiveServer, day: date, hours: Iterable[tuple[float, ...]],
                    member: str = "m1", first_hour: int = 0) -> None:
    """Hourly balances of ``member`` from local hour ``first_hour`` of ``day``."""
    midnight = local_midnight(day, TZ)
    rows = []
    for i, (g, c, a, sc, s, imp) in enumerate(hours):
        start = datetime.fromtimestamp(midnight + (first_hour + i) * 3600, UTC)
        rows.append((CID, member, CUPS[member], start, 3600, 0.5, g, c, a, sc, s, imp, "meter",
                     1, start, 1))
    ch = client(server.settings, database=server.settings.clickhouse_database)
    try:
        ch.execute("INSERT INTO balances (community_id, member_id, cups, interval_start, "
                   "interval_s, coefficient, generation_wh, consumption_wh, assigned_wh, "
                   "self_consumed_wh, surplus_wh, import_wh, source, complete, computed_at, "
                   "version) VALUES", rows)
    finally:
        ch.disconnect()


def insert_readings(server: LiveServer, readings: Iterable[tuple[str, datetime, float]]) -> None:
    ch = client(server.settings, database=server.settings.clickhouse_database)
    try:
        ch.execute("INSERT INTO readings (community_id, device_id, ts, ts_ms, source, quality, "
                   "power_w, version) VALUES",
                   [(CID, device, ts, int(ts.timestamp() * 1000), "t", "measured", power, 1)
                    for device, ts, power in readings])
    finally:
        ch.disconnect()


def insert_today(server: LiveServer) -> None:
    insert_balances(server, today_local(TZ), TODAY)
    now = datetime.now(UTC).replace(microsecond=0)
    insert_readings(server, [("shelly-m1:0", now, 2250.0),
                             ("inv-1", now - timedelta(hours=2), 100.0)])


def text(page: Page, selector: str) -> str:
    return " ".join(page.locator(selector).inner_text().split())


def see(page: Page, selector: str, value: str, timeout: float = 20_000) -> None:
    """The element shows ``value`` (non-breaking spaces read as spaces)."""
    expect(page.locator(selector)).to_have_text(value.replace(" ", "\u00a0") if "€" in value
                                                else value, timeout=timeout)


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def open_page(browser: Browser, server: LiveServer, path: str, token: str,
              viewport: dict[str, int] | None = None, errors: list[str] | None = None,
              *, device: dict[str, Any] | None = None, locale: str = "es-ES",
              base_url: str | None = None) -> Page:
    options = dict(device or {})
    if viewport is not None:
        options["viewport"] = viewport
    context = browser.new_context(locale=locale, timezone_id=TZ, **options)
    page = context.new_page()
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(f"console: {msg.text}")
                if msg.type == "error" else None)
    page.goto(f"{base_url or server.url}{path}#token={token}")
    return page


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")
                   ) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A/AA violations of the page as it is now, of the given impacts."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # evaluated by the driver, not added as an inline <script>: the pages' CSP
        # (dashboards.security) rightly refuses inline scripts, and axe is a test tool
        page.evaluate("() => {\n" + AXE.read_text(encoding="utf-8") + "\n}")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: "tag",
            values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
    }""")
    return [v for v in result if v["impact"] in impacts]


def axis_ticks(page: Page, chart_id: str) -> list[list[str]]:
    """The tick labels each axis of a uPlot chart drew (x first)."""
    return page.evaluate("""(id) => {
        const c = window.ioeCharts && window.ioeCharts[id];
        return c ? c.axes.map(a => (a._values || []).map(String)) : null;
    }""", chart_id) or []


class ByteMeter:
    """A TCP proxy on 127.0.0.1 in front of the server that counts the bytes of each
    connection in both directions as they are on the wire (HTTP gzip and websocket
    permessage-deflate included). The browser reaches the server only through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server: asyncio.Server | None = None

    def start(self) -> ByteMeter:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for task in asyncio.all_tasks(self.loop):
                if task is not asyncio.current_task():
                    task.cancel()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: dict[str, Any] = {"up": 0, "down": 0, "first": b"", "open": True}
        self.connections.append(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, key: str) -> None:
            try:
                while data := await src.read(65536):
                    if key == "up" and not conn["first"]:
                        conn["first"] = data[:512]
                    conn[key] += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, "up"), pipe(up_reader, writer, "down"))
        conn["open"] = False

    def websockets(self) -> list[dict[str, Any]]:
        return [c for c in self.connections if c["first"].startswith(b"GET /ws ")]

    def http_bytes(self) -> int:
        return sum(c["down"] for c in self.connections if c not in self.websockets())
