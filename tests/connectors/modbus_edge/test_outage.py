"""Store-and-forward across a Kafka outage and a SIGKILL of the agent in the middle of replay.

The agent runs as a real process (``ioe modbus-edge run``) against a private broker that the
test stops and restarts. Every poll increments an energy counter in the simulated meter, so the
counter values seen on Kafka tell exactly which polls arrived, in which order.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition

from devtools.stack import PrivateKafka
from ioe.kafka import ensure_topics
from ioe.settings import ROOT
from ioe.topics import READINGS

from .images import block, f32, put, registry_yaml

pytestmark = pytest.mark.stack

DEVICES = ("meter-a", "meter-b")


def counting_meter(polls: dict[str, int], name: str):
    """An SDM630 whose import counter (kWh) goes up by one at every poll of its block."""
    image: dict[int, int] = {}
    block(image, 0, 0x12)
    for address in (0x34, 0x3E, 0x46, 0x48, 0x4A):
        put(image, address, f32(0.0))

    def on_read(unit, fc, address, count, live):
        if address <= 0x48 < address + count:
            polls[name] += 1
            put(live, 0x48, f32(float(polls[name])))
        return None

    return image, on_read


@pytest.fixture
def private_kafka(local_stack, unique_id, tmp_path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(dataclasses.replace(local_stack, topic_prefix=f"t{unique_id}.",
                                             partitions=3), tmp_path / "kafka")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def queue_rows(path: Path) -> list[tuple[int, bytes]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [(int(s), bytes(v)) for s, v in
                db.execute("SELECT seq, value FROM outbox WHERE topic LIKE '%ioe.readings'"
                           " ORDER BY seq")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def queue_count(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return -1
    finally:
        db.close()


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ioe.cli", "--log-level", "INFO", "modbus-edge", "run",
             "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)


def wait_for(predicate, timeout_s: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def read_topic(settings, topic: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        return list(consumer)
    finally:
        consumer.close()


def test_outage_and_sigkill_during_replay_lose_nothing(
        private_kafka, modbus_server, tmp_path, unique_id):
    settings = private_kafka.settings
    ensure_topics(settings)
    polls = {name: 0 for name in DEVICES}
    servers = {}
    for name in DEVICES:
        image, on_read = counting_meter(polls, name)
        servers[name] = modbus_server({1: image}, on_read=on_read)
    (tmp_path / "registry.yaml").write_text(registry_yaml(list(DEVICES)))
    queue = tmp_path / "edge.sqlite"
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump({
        "edge": {"queue_path": str(queue), "registry": str(tmp_path / "registry.yaml"),
                 "kafka_bootstrap": settings.kafka_bootstrap,
                 "topic_prefix": settings.topic_prefix, "forward_chunk": 2},
        "devices": [{"id": name, "map": "sdm630", "host": "127.0.0.1",
                     "port": servers[name].port, "poll_interval_s": 0.1, "timeout_s": 2}
                    for name in DEVICES],
    }))
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        # live: readings flow and the queue stays short
        wait_for(lambda: min(polls.values()) >= 10, 60, "first polls")
        wait_for(lambda: 0 <= queue_count(queue) < 5, 60, "live forwarding")
        # outage: the broker goes away for a while, the agent keeps polling and buffering
        private_kafka.stop()
        outage_start = dict(polls)
        wait_for(lambda: min(p - outage_start[n] for n, p in polls.items()) >= 40, 60,
                 "polls during the outage")
        buffered = queue_rows(queue)
        assert len(buffered) >= 60, "the agent did not buffer during the outage"
        # the uplink returns; kill -9 the agent while it replays
        private_kafka.start()
        peak = queue_count(queue)
        wait_for(lambda: queue_count(queue) < peak - 4, 120, "replay to start", step=0.005)
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(10)
        left = queue_count(queue)
        assert left > 0, "the replay finished before the kill: not a mid-replay kill"
        # restart: the rest is replayed, then live polling resumes
        agent = start_agent(config, log)
        after_restart = dict(polls)
        wait_for(lambda: min(p - after_restart[n] for n, p in polls.items()) >= 10, 60,
                 "polls after restart")
        wait_for(lambda: 0 <= queue_count(queue) < 3, 120, "replay after restart")
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(30)
        assert queue_count(queue) == 0, "a clean stop drains the queue"
    finally:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(10)
    for server in servers.values():
        server.stop()

    messages = read_topic(settings, settings.topic(READINGS))
    first: dict[tuple[str, int], bytes] = {}
    sequences: dict[str, list[float]] = {name: [] for name in DEVICES}
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        reading = orjson.loads(message.value)
        key = (reading["device_id"], reading["ts_ms"])
        if key in first:
            assert first[key] == message.value, "a replayed reading differs from the original"
            continue
        first[key] = message.value
        assert message.key == b"ce-test"
        sequences[reading["device_id"]].append(reading["energy_wh"] / 1000.0)
    # every reading buffered during the outage arrived (exactly once after dedup)
    for _, value in buffered:
        reading = orjson.loads(value)
        assert (reading["device_id"], reading["ts_ms"]) in first
    for name, counters in sequences.items():
        # in order: the counter (one per poll) only goes up on the topic
        assert counters == sorted(counters) and len(set(counters)) == len(counters), name
        # nothing lost: every poll is there, except at most the one in flight at the SIGKILL
        missing = set(range(int(counters[0]), int(counters[-1]) + 1)) - set(counters)
        assert len(missing) <= 1, (name, sorted(missing)[:10])
        assert int(counters[0]) <= 2
        assert polls[name] - int(counters[-1]) <= 1
