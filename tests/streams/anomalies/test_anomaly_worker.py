"""The anomaly agent inside the real ``ioe worker`` (Kafka, Faust, ClickHouse sink): alarms on
``ioe.anomalies``, alarm updates on ``ioe.live`` for operators and the owning member, offline
detection from event-time ticks, no duplicate alarm after a worker restart (state restored from
the ``anomaly_state`` table), and the alarm rows in ClickHouse."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from anomaly_helpers import CID, MIN, community, ms, reading
from kafka import KafkaConsumer, TopicPartition

from ioe.clickhouse import client as ch_client
from ioe.kafka import make_producer
from ioe.settings import Settings
from ioe.topics import ANOMALIES, LIVE, READINGS, REGISTRY

sys.path.append(str(Path(__file__).resolve().parents[1]))
from worker_helpers import WorkerProcess as Worker  # noqa: E402

pytestmark = pytest.mark.stack

T0 = ms(2026, 6, 21, 9, 0)  # 11:00 local, sun well up


class Reader:
    def __init__(self, settings: Settings, logical: str) -> None:
        self.topic = settings.topic(logical)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                      enable_auto_commit=False, group_id=None)
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.messages: list[dict[str, Any]] = []

    def wait(self, predicate, timeout_s: float, what: str,
             worker: Worker | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=500).values():
                self.messages += [orjson.loads(r.value) for r in records]
            if predicate(self.messages):
                return self.messages
        tail = worker.log_path.read_text(errors="replace")[-3000:] if worker else ""
        raise AssertionError(f"timed out waiting for {what}; got {self.messages[-5:]}\n"
                             f"worker log tail:\n{tail}")

    def close(self) -> None:
        self.consumer.close()


def opened(messages, kind):
    return [m for m in messages if m["kind"] == kind and m["state"] == "open"]


class Feed:
    """Readings of one community: inverter 1 (fault or not), inverter 2, meter of m1."""

    def __init__(self, settings: Settings) -> None:
        self.producer = make_producer(settings)
        self.topic = settings.topic(READINGS)
        self.producer.send(settings.topic(REGISTRY), key=CID,
                           value=community(members=1, inverters=2).to_json())
        self.producer.flush()

    def send(self, minutes: range, *, fault: bool, meter: bool = True,
             sentinel: bool = False) -> None:
        for i in minutes:
            ts = T0 + i * MIN
            batch = [reading("inv-1", ts, 0.0 if fault else 5000.0 + i, source="sunspec",
                             status="7" if fault else "4"),
                     reading("inv-2", ts, 5100.0 + i, source="sunspec", status="4")]
            if meter:
                batch.append(reading("meter-m1", ts, 65535.0 if sentinel else 300.0 + i))
            for r in batch:
                self.producer.send(self.topic, key=CID, value=r.to_json())
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


def clickhouse_rows(settings: Settings, alarm_id: str) -> list[tuple[str, str]]:
    ch = ch_client(settings)
    try:
        return ch.execute(f"SELECT kind, state FROM {settings.clickhouse_database}.anomalies "
                          f"FINAL WHERE alarm_id = '{alarm_id}'")
    finally:
        ch.disconnect()


def test_agent_alarms_on_anomalies_live_and_clickhouse(stack_settings, tmp_path):
    settings = stack_settings
    feed = Feed(settings)
    anomalies = Reader(settings, ANOMALIES)
    live = Reader(settings, LIVE)
    worker = Worker(settings, tmp_path, "w1")
    try:
        feed.send(range(0, 5), fault=False)
        feed.send(range(5, 10), fault=True, sentinel=True)
        msgs = anomalies.wait(lambda m: opened(m, "inverter_fault") and opened(m, "out_of_range"),
                              180, "inverter fault and out-of-range alarms", worker)
        fault = opened(msgs, "inverter_fault")[0]
        assert (fault["device_id"], fault["severity"], fault["community_id"]) == (
            "inv-1", "critical", CID)
        assert fault["opened_at_ms"] == T0 + 6 * MIN  # second fault reading (open_n = 2)
        oor = opened(msgs, "out_of_range")[0]
        assert (oor["device_id"], oor["member_id"]) == ("meter-m1", "m1")
        channels = live.wait(
            lambda m: {"operators:ce-test", "member:ce-test:m1"} <= {
                x["channel"] for x in m if x.get("type") == "alarm"}, 60, "alarm live updates",
            worker)
        alarm_channels = [(x["channel"], x["alarm"]["kind"]) for x in channels
                          if x.get("type") == "alarm"]
        assert ("operators:ce-test", "inverter_fault") in alarm_channels
        assert ("member:ce-test:m1", "out_of_range") in alarm_channels
        assert ("member:ce-test:m1", "inverter_fault") not in alarm_channels  # not m1's device
        # the meter falls silent while the inverters go on: offline from event-time ticks
        feed.send(range(10, 20), fault=True, meter=False)
        feed.send(range(20, 23), fault=False, meter=False)
        msgs = anomalies.wait(lambda m: opened(m, "offline") and any(
            x["kind"] == "inverter_fault" and x["state"] == "closed" for x in m),
            180, "offline alarm and the inverter fault closing", worker)
        off = opened(msgs, "offline")[0]
        # last meter reading at +9 min; window 3 × 60 s; first minute tick with > 180 s
        assert (off["device_id"], off["opened_at_ms"]) == ("meter-m1", T0 + 13 * MIN)
        closed = [x for x in msgs if x["kind"] == "inverter_fault" and x["state"] == "closed"]
        assert closed[0]["alarm_id"] == fault["alarm_id"] and len(opened(msgs, "inverter_fault")) == 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and clickhouse_rows(settings, fault["alarm_id"]) != [
                ("inverter_fault", "closed")]:
            time.sleep(1)
        assert clickhouse_rows(settings, fault["alarm_id"]) == [("inverter_fault", "closed")]
    finally:
        worker.stop()
        anomalies.close()
        live.close()
        feed.close()


def test_restarted_worker_restores_alarm_state_without_duplicates(stack_settings, tmp_path):
    """A graceful stop and restart: the alarm state comes back from the changelog, the
    readings waiting meanwhile are processed (the restart stall of faust-streaming 0.15.3 is
    fixed by :func:`streams.faust_glue.hold_then_release`), and no guard fires."""
    settings = stack_settings
    feed = Feed(settings)
    anomalies = Reader(settings, ANOMALIES)
    worker = Worker(settings, tmp_path, "w1")
    try:
        feed.send(range(0, 10), fault=True)
        msgs = anomalies.wait(lambda m: opened(m, "inverter_fault"), 180, "the fault alarm",
                              worker)
        fault = opened(msgs, "inverter_fault")[0]
        time.sleep(3)  # let the table changelog reach Kafka before the restart
    finally:
        worker.stop()
    # let the group coordinator forget the stopped member (session timeout 10 s)
    time.sleep(12)
    worker = Worker(settings, tmp_path, "w1")
    try:
        feed.send(range(10, 20), fault=True, meter=False)
        feed.send(range(20, 23), fault=False, meter=False)
        msgs = anomalies.wait(lambda m: opened(m, "offline") and any(
            x["kind"] == "inverter_fault" and x["state"] == "closed" for x in m),
            90, "offline alarm and the inverter fault closing after the restart", worker)
        # the fault went on across the restart: still ONE alarm, closed under its first id
        assert len(opened(msgs, "inverter_fault")) == 1, opened(msgs, "inverter_fault")
        closed = [x for x in msgs if x["kind"] == "inverter_fault" and x["state"] == "closed"]
        assert closed[0]["alarm_id"] == fault["alarm_id"] and closed[0]["version"] == 2
        off = opened(msgs, "offline")[0]
        # last meter reading at +9 min, but the restarted worker only has a snapshot and
        # counts from its first reading (+10 min): the first tick with > 180 s is at +14 min
        assert (off["device_id"], off["opened_at_ms"]) == ("meter-m1", T0 + 14 * MIN)
    finally:
        worker.stop()
        anomalies.close()
        feed.close()
    assert worker.guards_fired() == []
