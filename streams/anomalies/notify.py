"""Outbound alarm notifications: an MQTT topic and an HTTP webhook.

Both are best effort *with* retries: an alarm is already durable on ``ioe.anomalies`` (and in
ClickHouse), so a notification channel that stays down is logged and counted, never allowed to
block or crash the worker. Only open, severity-change and close events are ever passed here,
because the lifecycle emits nothing else (no duplicates by construction).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
import requests
from prometheus_client import CollectorRegistry, Counter

from streams.anomalies.lifecycle import Alarm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    timeout_s: float = 5.0
    retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0


class WebhookNotifier:
    """POST the ``ioe.anomalies`` message as JSON; retry 5xx/429/connection errors with
    exponential backoff. 4xx other than 429 are not retried (the request itself is wrong)."""

    RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

    def __init__(self, config: WebhookConfig, metrics: CollectorRegistry | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.session = requests.Session()
        self.sleep = sleep
        registry = metrics or CollectorRegistry()
        self.sent = Counter("ioe_anomaly_webhook_sent", "alarm webhooks delivered",
                            registry=registry)
        self.failed = Counter("ioe_anomaly_webhook_failed", "alarm webhooks given up",
                              registry=registry)

    def send(self, alarm: Alarm) -> bool:
        body = orjson.dumps(alarm.to_message())
        delay = self.config.backoff_s
        for attempt in range(self.config.retries + 1):
            try:
                response = self.session.post(
                    self.config.url, data=body, timeout=self.config.timeout_s,
                    headers={"Content-Type": "application/json",
                             "Idempotency-Key": f"{alarm.alarm_id}:{alarm.version}"})
                if response.status_code < 300:
                    self.sent.inc()
                    return True
                if response.status_code not in self.RETRY_STATUS:
                    log.error("alarm webhook refused (%s); not retried", response.status_code)
                    break
                reason = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                reason = type(exc).__name__
            if attempt < self.config.retries:
                log.warning("alarm webhook attempt %d failed (%s); retrying in %.1f s",
                            attempt + 1, reason, delay)
                self.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)
        self.failed.inc()
        return False

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    #: alarms go to ``<prefix>/<community_id>/<kind>/<device_id>``
    topic_prefix: str = "ioe/alarms"
    qos: int = 1
    client_id: str = ""


class MqttNotifier:
    """Publish alarm events with QoS 1. The retained message per (community, kind, device) is
    the alarm's current state, so a dashboard connecting later sees what is open; a closed
    alarm replaces it (and carries ``closed_at_ms``)."""

    def __init__(self, config: MqttConfig, metrics: CollectorRegistry | None = None) -> None:
        self.config = config
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id)
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(config.host, config.port, keepalive=30)
        self.client.loop_start()
        registry = metrics or CollectorRegistry()
        self.sent = Counter("ioe_anomaly_mqtt_sent", "alarm MQTT messages queued",
                            registry=registry)

    def topic(self, alarm: Alarm) -> str:
        device = alarm.device_id.replace("/", "_").replace("#", "_").replace("+", "_")
        return f"{self.config.topic_prefix}/{alarm.community_id}/{alarm.kind}/{device}"

    def send(self, alarm: Alarm, timeout_s: float = 10.0) -> bool:
        info = self.client.publish(self.topic(alarm), orjson.dumps(alarm.to_message()),
                                   qos=self.config.qos, retain=True)
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as exc:  # not connected yet / queue full
            log.warning("alarm MQTT publish not confirmed: %s", exc)
            return False
        self.sent.inc()
        return info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
