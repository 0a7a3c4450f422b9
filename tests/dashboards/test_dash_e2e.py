"""The member's alarm end to end: a real ``ioe worker`` (live shares, anomaly detection) on the
test's private Kafka topics and ClickHouse database, the web server and the member page in
Chromium. The member's meter stops sending; the worker's offline detector opens an alarm on the
member's channel; the page says so in plain Spanish; the meter comes back and the alarm goes.

Event time drives the detector (``streams.anomalies.agent``: a tick per minute of event time),
so the readings start 5½ minutes in the past: the other devices keep reporting while
``shelly-m1:0`` goes silent after its first 20 s, past the offline window (max(3 × 10 s, 60 s));
then the last 1½ minutes bring it back."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from browser_helpers import PHONE, now_ms, open_page, see
from dash_helpers import CID, LiveServer
from playwright.sync_api import Browser, expect

from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.registry import load_registry
from ioe.topics import READINGS

sys.path.append(str(Path(__file__).resolve().parents[1] / "streams"))
from worker_helpers import WorkerProcess, publish_registry, send_readings  # noqa: E402

pytestmark = [pytest.mark.stack, pytest.mark.browser]


def reading(device: str, ts_ms: int, power: float) -> Reading:
    return Reading(device_id=device, ts_ms=ts_ms, source="test", power_w=power,
                   community_id=CID)


def others(ts: int) -> list[Reading]:
    return [reading("inv-1", ts, 4000.0), reading("shelly-m2:0", ts + 1, 500.0),
            reading("shelly-m3:0", ts + 2, 300.0)]


def test_member_sees_the_alarm_when_the_worker_finds_the_meter_offline(
        live_server: LiveServer, registry_file: Path, browser: Browser, tmp_path: Path) -> None:
    settings = live_server.settings
    publish_registry(settings, load_registry(registry_file).communities.values())
    worker = WorkerProcess(settings, tmp_path, "w1", "--live-interval-s", "0")
    producer = make_producer(settings)
    errors: list[str] = []
    try:
        # phase 1, from 5½ min ago to 1½ min ago: m1's meter reports for 20 s, then is silent
        now = now_ms()
        start, resume = now - 330_000, now - 90_000
        readings = []
        for ts in range(start, resume, 10_000):
            readings += others(ts)
            if ts < start + 20_000:
                readings.append(reading("shelly-m1:0", ts + 3, 1200.0))
        send_readings(producer, settings.topic(READINGS), readings)
        page = open_page(browser, live_server, "/member", live_server.token(), errors=errors,
                         device=PHONE)
        see(page, "#conn-state", "En directo")
        alarm = page.locator("#my-alarms li[data-kind=offline]")
        expect(alarm).to_contain_text("Tu contador no envía datos desde las", timeout=150_000)
        expect(alarm).to_contain_text("Comprueba que está enchufado")
        # phase 2, the last 1½ min (past a minute tick of event time): the meter is back
        readings = []
        for ts in range(resume, now_ms(), 10_000):
            readings += [*others(ts), reading("shelly-m1:0", ts + 3, 900.0)]
        send_readings(producer, settings.topic(READINGS), readings)
        see(page, "#my-alarms li", "Ningún aviso: todo funciona bien.", timeout=120_000)
        assert errors == []
    except AssertionError:
        print(worker.log_text()[-4000:])
        raise
    finally:
        producer.close()
        worker.stop()
