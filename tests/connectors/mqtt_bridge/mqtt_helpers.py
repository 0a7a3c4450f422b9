"""Helpers for the MQTT bridge tests: a small registry, decoding shortcuts, MQTT publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from connectors.mqtt_bridge.decoders import DecodeContext, Decoded, find_decoder
from ioe.registry import Registry, parse_registry

#: valid CUPS (check letters computed as DESIGN.md §1 says)
CUPS = ("ES0021380404050463BV", "ES0021310451747942WF")
COMMUNITY = "ce-test"


def registry_document(device_ids: list[str], extra_devices: list[dict[str, Any]] | None = None,
                      community: str = COMMUNITY) -> dict[str, Any]:
    devices = [{"id": d, "role": "consumption", "member": "m1"} for d in device_ids]
    return {"communities": [{
        "id": community, "name": "Test", "timezone": "Europe/Madrid",
        "location": {"latitude": 39.5, "longitude": -0.4},
        "members": [{"id": "m1", "cups": CUPS[0], "contracted_power_kw": 4.6},
                    {"id": "m2", "cups": CUPS[1], "contracted_power_kw": 3.45}],
        "devices": devices + list(extra_devices or []),
    }]}


def make_registry(device_ids: list[str], extra_devices: list[dict[str, Any]] | None = None,
                  ) -> Registry:
    return parse_registry(registry_document(device_ids, extra_devices))


def write_registry(path: Path, device_ids: list[str],
                   extra_devices: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(yaml.safe_dump(registry_document(device_ids, extra_devices)))
    return path


def decode(topic: str, payload: bytes | str | dict[str, Any], received_at_ms: int = 0,
           ctx: DecodeContext | None = None) -> Decoded:
    ctx = ctx if ctx is not None else DecodeContext()
    if isinstance(payload, dict):
        payload = orjson.dumps(payload)
    elif isinstance(payload, str):
        payload = payload.encode()
    found = find_decoder(topic, ctx, payload)
    assert found is not None, f"no decoder for {topic}"
    decoder, decoder_topic = found
    return decoder.decode(decoder_topic, payload, received_at_ms, ctx)


# -- real-server helpers -------------------------------------------------------------------------
def mqtt_client(settings: Any, client_id: str = "", clean: bool = True) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(100)
    client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
    client.loop_start()
    return client


def publish_all(client: Any, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=60)
        assert info.is_published()


def forget_session(settings: Any, client_id: str) -> None:
    """Drop a persistent session from the shared broker (connect once with clean session)."""
    client = mqtt_client(settings, client_id, clean=True)
    client.disconnect()
    client.loop_stop()


def consume(settings: Any, logical_topic: str, until: Any, timeout_s: float = 60.0,
            ) -> list[Any]:
    """Every record of a topic from the beginning, polling until ``until(records)`` is true."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topic(logical_topic)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if until(records):
                break
        return records
    finally:
        consumer.close()
