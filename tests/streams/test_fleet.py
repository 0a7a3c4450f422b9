"""``ioe workers status``: lag, rate, stalls and partition → community, against a real group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from ioe.settings import Settings
from ioe.topics import READINGS
from streams.fleet import fleet_status, partition_of, render
from streams.fleet_command import collect

ROOT = Path(__file__).resolve().parents[2]


def test_status_from_snapshots_by_hand() -> None:
    status = fleet_status(
        group="g", topic="t", state="Stable", partitions=3,
        assignments={("m-a", "faust", "10.0.0.1"): [0, 1], ("m-b", "faust", "10.0.0.2"): []},
        committed_before={0: 100, 1: 50}, committed_after={0: 130, 1: 50},
        ends={0: 130, 1: 80, 2: 7}, window_s=3.0, community_ids=[])
    (a, b) = status.members
    assert [p.lag for p in a.partitions] == [0, 30]       # 130-130, 80-50
    assert a.rate_per_s == pytest.approx(10.0)            # (130-100)/3 s
    assert not a.stalled                                  # it moved during the window
    assert b.partitions == () and not b.stalled
    assert [p.partition for p in status.unassigned] == [2]
    assert status.unassigned[0].committed is None and status.unassigned[0].lag == 7
    assert status.lag == 37


def test_a_member_with_waiting_readings_and_no_progress_is_stalled() -> None:
    status = fleet_status(group="g", topic="t", state="Stable", partitions=1,
                          assignments={("m", "c", "h"): [0]}, committed_before={0: 5},
                          committed_after={0: 5}, ends={0: 9}, window_s=2.0, community_ids=[])
    assert [m.member_id for m in status.stalled] == ["m"]
    assert "STALLED" in "\n".join(render(status))


def _produce(settings: Settings, communities: list[str], per_community: int) -> dict[str, int]:
    """Readings keyed by community, as every connector sends them; returns where Kafka put
    each community (the broker's answer, not our partitioner)."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    placed: dict[str, int] = {}
    for cid in communities:
        for i in range(per_community):
            meta = producer.send(settings.topic(READINGS), key=cid.encode(),
                                 value=orjson.dumps({"i": i})).get(timeout=30)
            placed[cid] = meta.partition
    producer.close()
    return placed


def test_status_of_a_real_group(kafka_settings: Settings) -> None:
    from streams.app import WorkerConfig, app_id

    settings = kafka_settings
    topic = settings.topic(READINGS)
    communities = [f"ce-{n}" for n in range(8)]
    placed = _produce(settings, communities, per_community=5)
    for cid, partition in placed.items():  # our function is the producers' partitioner
        assert partition_of(cid, 3) == partition
    group = app_id(settings, WorkerConfig())
    member = KafkaConsumer(topic, group_id=group, bootstrap_servers=settings.kafka_bootstrap,
                           auto_offset_reset="earliest", enable_auto_commit=False,
                           client_id="test-worker")
    try:
        consumed = 0
        deadline = time.monotonic() + 30
        while consumed < 12 and time.monotonic() < deadline:  # take some, leave the rest
            consumed += sum(len(r) for r in member.poll(500, max_records=12 - consumed).values())
        member.commit()
        positions = {tp.partition: member.position(tp) for tp in member.assignment()}
        status = collect(group, topic, 1.0, communities)
        per_partition = {p: sum(1 for c in placed.values() if c == p) * 5 for p in range(3)}
        (seen,) = status.members
        assert seen.client_id == "test-worker"
        assert {p.partition for p in seen.partitions} == {0, 1, 2}
        for p in seen.partitions:
            assert p.end == per_partition[p.partition]
            assert p.lag == per_partition[p.partition] - positions[p.partition]
            assert set(p.communities) == {c for c, q in placed.items() if q == p.partition}
        assert status.lag == 40 - consumed > 0
        assert seen.stalled  # readings wait and nothing was committed in the window

        env = {**os.environ, "IOE_TOPIC_PREFIX": settings.topic_prefix}
        cli = subprocess.run([sys.executable, "-m", "ioe.cli", "workers", "status", "--json",
                              "--sample-s", "1", "--registry",
                              str(ROOT / "infra/examples/community.yaml")],
                             capture_output=True, text=True, env=env, timeout=120)
        assert cli.returncode == 1, cli.stderr  # a stalled member: non-zero for alerting
        doc = orjson.loads(cli.stdout)
        assert doc["lag"] == 40 - consumed and doc["stalled"] == [seen.member_id]
    finally:
        member.close()
