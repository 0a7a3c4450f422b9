"""Outbound notifications against real servers: a local HTTP server for the webhook (failing
on purpose before succeeding) and the local Mosquitto for MQTT."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest

from streams.anomalies.lifecycle import Alarm
from streams.anomalies.notify import MqttConfig, MqttNotifier, WebhookConfig, WebhookNotifier


def sample_alarm(state: str = "open", version: int = 1) -> Alarm:
    return Alarm(alarm_id="abc123", community_id="ce-n", device_id="inv/1", member_id=None,
                 kind="inverter_fault", severity="critical", state=state,
                 opened_at_ms=1_780_000_000_000, closed_at_ms=None,
                 evidence={"status": "7"}, updated_at_ms=1_780_000_000_000, version=version)


class Recorder:
    """An HTTP server answering the scripted status codes in turn, recording requests."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append((dict(self.headers), body))
                status = recorder.statuses.pop(0) if recorder.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder_factory():
    made: list[Recorder] = []

    def make(statuses: list[int]) -> Recorder:
        made.append(Recorder(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_webhook_retries_with_backoff_until_delivered(recorder_factory):
    server = recorder_factory([503, 500, 200])
    sleeps: list[float] = []
    notifier = WebhookNotifier(WebhookConfig(url=server.url, backoff_s=0.01), sleep=sleeps.append)
    assert notifier.send(sample_alarm()) is True
    assert len(server.requests) == 3 and sleeps == [0.01, 0.02]
    headers, body = server.requests[-1]
    assert json.loads(body) == sample_alarm().to_message()
    assert headers["Idempotency-Key"] == "abc123:1"
    assert notifier.sent._value.get() == 1  # prometheus counter
    notifier.close()


def test_webhook_gives_up_on_client_error_and_after_retries(recorder_factory):
    refused = recorder_factory([400])
    notifier = WebhookNotifier(WebhookConfig(url=refused.url, backoff_s=0.0), sleep=lambda s: None)
    assert notifier.send(sample_alarm()) is False and len(refused.requests) == 1
    down = recorder_factory([503] * 10)
    notifier = WebhookNotifier(WebhookConfig(url=down.url, retries=2, backoff_s=0.0),
                               sleep=lambda s: None)
    assert notifier.send(sample_alarm()) is False and len(down.requests) == 3
    # nobody listening at all: connection errors are retried, then given up
    notifier = WebhookNotifier(WebhookConfig(url="http://127.0.0.1:9/none", retries=1,
                                             timeout_s=1, backoff_s=0.0), sleep=lambda s: None)
    assert notifier.send(sample_alarm()) is False and notifier.failed._value.get() == 1


@pytest.mark.stack
def test_mqtt_publishes_retained_alarm_state(local_stack):
    prefix = f"test-{uuid.uuid4().hex[:8]}/alarms"
    notifier = MqttNotifier(MqttConfig(host=local_stack.mqtt_host, port=local_stack.mqtt_port,
                                       topic_prefix=prefix))
    try:
        deadline = time.monotonic() + 10
        while not notifier.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notifier.send(sample_alarm()) is True
        assert notifier.send(sample_alarm("closed", 2)) is True
        # a subscriber arriving later gets the retained, latest state of the alarm
        received: list[tuple[str, dict]] = []
        got = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

        def on_message(client, userdata, msg):
            received.append((msg.topic, json.loads(msg.payload)))
            got.set()

        sub.on_message = on_message
        sub.connect(local_stack.mqtt_host, local_stack.mqtt_port)
        sub.subscribe(f"{prefix}/#", qos=1)
        sub.loop_start()
        assert got.wait(10)
        sub.loop_stop()
        sub.disconnect()
        topic, payload = received[0]
        assert topic == f"{prefix}/ce-n/inverter_fault/inv_1"
        assert payload["state"] == "closed" and payload["version"] == 2
    finally:
        # clear the retained message so the broker does not keep test debris
        notifier.client.publish(f"{prefix}/ce-n/inverter_fault/inv_1", b"", retain=True).wait_for_publish(5)
        notifier.close()
