"""The real local servers: Kafka topics and round trips, ClickHouse migrations and idempotent
replays, Mosquitto publish/subscribe."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import paho.mqtt.client as mqtt
import pytest
from kafka import KafkaConsumer

from devtools import stack
from ioe.clickhouse import client, migrate
from ioe.kafka import make_producer, topic_partitions
from ioe.reading import Reading, decode
from ioe.topics import READINGS, REGISTRY, TOPICS

pytestmark = pytest.mark.stack


def test_stack_status_reports_three_healthy_servers(local_stack, capsys):
    assert stack.status(local_stack)
    out = capsys.readouterr().out
    assert out.count("healthy") == 3


def test_topics_exist_with_configured_partitions(kafka_settings):
    for spec in TOPICS:
        expected = spec.partitions or kafka_settings.partitions
        assert topic_partitions(kafka_settings.topic(spec.name), kafka_settings) == expected
    assert topic_partitions(kafka_settings.topic(REGISTRY), kafka_settings) == 1


def test_reading_through_a_real_broker(kafka_settings):
    topic = kafka_settings.topic(READINGS)
    sent = Reading(device_id="shellyem-A1:0", ts_ms=int(time.time() * 1000), source="shelly-gen1",
                   community_id="c1", power_w=-1234.5, energy_wh=987654.0)
    producer = make_producer(kafka_settings)
    metadata = producer.send(topic, key="c1", value=sent.to_json()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    from kafka import TopicPartition

    partition = TopicPartition(topic, metadata.partition)
    consumer.assign([partition])
    consumer.seek(partition, metadata.offset)
    message = next(iter(consumer))
    consumer.close()
    assert message.key == b"c1"
    assert decode(message.value) == sent


def test_migrations_apply_twice(ch_settings):
    assert migrate(ch_settings) == []  # the fixture already applied them: nothing left to do
    ch = client(ch_settings)
    db = ch_settings.clickhouse_database
    versions = ch.execute(f"SELECT version FROM {db}.schema_migrations ORDER BY version")
    tables = {row[0] for row in ch.execute(f"SHOW TABLES FROM {db}")}
    ch.disconnect()
    # 0003 (analyst access) stays pending on a server without access_management
    assert [v for (v,) in versions] == [1, 2, 4, 5]
    assert {"readings", "balances", "anomalies", "member_daily", "member_monthly", "commands",
            "command_results", "alarm_actions"} <= tables


def test_replayed_batch_does_not_double_count(ch_settings):
    db = ch_settings.clickhouse_database
    ch = client(ch_settings)
    hour = datetime(2026, 6, 16, 10)
    rows = [
        ("c1", "a", "ES1", hour, 3600, 0.6, 5000.0, 2000.0, 3000.0, 2000.0, 1000.0, 0.0,
         "meter", 1, hour, 1),
        ("c1", "b", "ES2", hour, 3600, 0.4, 5000.0, 2500.0, 2000.0, 2000.0, 0.0, 500.0,
         "meter", 1, hour, 1),
    ]
    insert = (f"INSERT INTO {db}.balances (community_id, member_id, cups, interval_start, "
              "interval_s, coefficient, generation_wh, consumption_wh, assigned_wh, "
              "self_consumed_wh, surplus_wh, import_wh, source, complete, computed_at, version) "
              "VALUES")
    ch.execute(insert, rows)
    ch.execute(insert, rows)  # at-least-once delivery: the same batch again
    corrected = list(rows[1])
    corrected[7], corrected[10], corrected[11], corrected[12], corrected[15] = (
        2600.0, 0.0, 600.0, "datadis", 2)
    ch.execute(insert, [tuple(corrected)])  # a Datadis correction supersedes the meter value
    totals = ch.execute(f"SELECT sum(consumption_wh), sum(import_wh) FROM {db}.balances FINAL")
    via_argmax = ch.execute(
        "SELECT sum(c) FROM (SELECT argMax(consumption_wh, version) AS c "
        f"FROM {db}.balances GROUP BY community_id, member_id, interval_s, interval_start)")
    daily = ch.execute(f"SELECT member_id, consumption_kwh FROM {db}.member_daily "
                       "ORDER BY member_id")
    ch.disconnect()
    assert totals == [(2000.0 + 2600.0, 600.0)]
    assert via_argmax == [(4600.0,)]
    assert daily == [("a", 2.0), ("b", 2.6)]


def test_mosquitto_publish_and_receive(local_stack, unique_id):
    topic = f"test/{unique_id}/hello"
    got: list[bytes] = []
    subscribed = threading.Event()
    received = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        subscribed.set()

    def on_message(client, userdata, message):
        got.append(message.payload)
        received.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{unique_id}")
    sub.on_connect, sub.on_subscribe, sub.on_message = on_connect, on_subscribe, on_message
    sub.connect(local_stack.mqtt_host, local_stack.mqtt_port)
    sub.loop_start()
    assert subscribed.wait(10)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{unique_id}")
    pub.connect(local_stack.mqtt_host, local_stack.mqtt_port)
    pub.loop_start()
    pub.publish(topic, b"1234.5", qos=1).wait_for_publish(10)
    assert received.wait(10)
    for c in (sub, pub):
        c.loop_stop()
        c.disconnect()
    assert got == [b"1234.5"]
