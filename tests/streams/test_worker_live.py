"""``ioe worker`` live path against real Kafka: member and community messages on ioe.live,
stale generation shown as unknown, bad input dead-lettered (values worked out by hand)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from worker_helpers import (
    TopicReader,
    WorkerProcess,
    make_community,
    publish_registry,
    send_readings,
)

from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.topics import DEADLETTER, LIVE, READINGS

pytestmark = pytest.mark.stack

T0 = int(datetime(2026, 6, 15, 10, 0, tzinfo=UTC).timestamp() * 1000)
CID = "ce-live"


def last_by_channel(messages: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for msg in messages:
        if msg.get("type") in ("member", "community"):
            out[msg["channel"]] = msg
    return out


def r(device: str, dt_s: float, power: float) -> Reading:
    return Reading(device_id=device, ts_ms=T0 + int(dt_s * 1000), source="test", power_w=power,
                   community_id=CID)


def test_live_shares_stale_generation_and_dead_letters(stack_settings, tmp_path):
    settings = stack_settings
    community = make_community(CID, [0.6, 0.4])
    publish_registry(settings, [community])
    live = TopicReader(settings, LIVE)
    dead = TopicReader(settings, DEADLETTER)
    worker = WorkerProcess(settings, tmp_path, "w1", "--live-interval-s", "0",
                           "--staleness-s", "60", "--no-sink")
    producer = make_producer(settings)
    topic = settings.topic(READINGS)
    try:
        send_readings(producer, topic, [r(f"{CID}-inv1", 0, 3000.0),
                                        r(f"{CID}-m01-1", 1, 1000.0)])

        def first(msgs: list[dict]) -> bool:
            c = last_by_channel(msgs).get(f"community:{CID}")
            return bool(c and c["members_reporting"] == 1 and c["ts_ms"] == T0 + 1000)

        live.wait(first, 120, "the community message with m01")
        # the worker processes batches: m02's reading comes in a batch of its own here, so
        # that what it changes can be told apart from what m01's did
        count_m1 = sum(1 for m in live.messages if m.get("channel") == f"member:{CID}:m01")
        assert count_m1 >= 1
        send_readings(producer, topic, [r(f"{CID}-m02-1", 2, 2000.0)])
        producer.send(topic, key=CID, value=b'{"device_id": "x", "ts_ms": "soon"}')
        send_readings(producer, topic, [
            Reading(device_id="nobody-knows-me", ts_ms=T0, source="test", power_w=1.0)])

        def settled(msgs: list[dict]) -> bool:
            c = last_by_channel(msgs).get(f"community:{CID}")
            return bool(c and c["members_reporting"] == 2 and c["ts_ms"] == T0 + 2000)

        state = last_by_channel(live.wait(settled, 120, "the community message"))
        m1, m2 = state[f"member:{CID}:m01"], state[f"member:{CID}:m02"]
        community_msg = state[f"community:{CID}"]
        # G = 3000 W; m01: A = 0.6·3000 = 1800, C = 1000 → SC 1000, S 800, I 0
        assert (m1["coefficient"], m1["generation_w"], m1["assigned_w"], m1["consumption_w"],
                m1["self_consumption_w"], m1["surplus_w"], m1["import_w"], m1["stale"]) == (
            0.6, 3000.0, 1800.0, 1000.0, 1000.0, 800.0, 0.0, False)
        # m02: A = 0.4·3000 = 1200, C = 2000 → SC 1200, S 0, I 800
        assert (m2["assigned_w"], m2["consumption_w"], m2["self_consumption_w"],
                m2["surplus_w"], m2["import_w"]) == (1200.0, 2000.0, 1200.0, 0.0, 800.0)
        assert (community_msg["generation_w"], community_msg["consumption_w"],
                community_msg["self_consumption_w"], community_msg["surplus_w"],
                community_msg["import_w"], community_msg["members_total"]) == (
            3000.0, 3000.0, 2200.0, 800.0, 800.0, 2)
        assert community_msg["plants"] == {"plant-1": {"power_w": 3000.0, "ts_ms": T0}}
        assert community_msg["generators"][f"{CID}-inv1"]["stale"] is False
        assert "member_id" not in community_msg  # never per-member values on the community
        for msg in (m1, m2, community_msg):
            assert msg["v"] == 1 and msg["community_id"] == CID

        # only members whose values changed: m02's reading changes m02 only
        assert sum(1 for m in live.messages
                   if m.get("channel") == f"member:{CID}:m01") == count_m1

        # two minutes later the inverter has been silent for 120 s > 60 s: generation unknown
        send_readings(producer, topic, [r(f"{CID}-m01-1", 120, 500.0),
                                        r(f"{CID}-m02-1", 121, 700.0)])

        def stale(msgs: list[dict]) -> bool:
            c = last_by_channel(msgs).get(f"community:{CID}")
            return bool(c and c["ts_ms"] == T0 + 121_000)

        state = last_by_channel(live.wait(stale, 60, "the stale community message"))
        m1, c = state[f"member:{CID}:m01"], state[f"community:{CID}"]
        assert m1["generation_w"] is None and m1["stale"] is True
        assert m1["assigned_w"] is None and m1["self_consumption_w"] is None
        assert m1["consumption_w"] == 500.0
        assert c["generation_w"] is None and c["consumption_w"] == 1200.0
        assert c["generators"][f"{CID}-inv1"] == {"power_w": 3000.0, "ts_ms": T0, "stale": True}
        assert c["members_reporting"] == 2
        assert sum(1 for m in live.messages
                   if m.get("channel") == f"member:{CID}:m01") > count_m1

        reasons = dead.wait(lambda msgs: len(msgs) >= 2, 30, "dead letters")
        assert sorted(m["reason"] for m in reasons) == ["invalid_reading", "unknown_device"]
    finally:
        producer.close()
        worker.stop()
        live.close()
        dead.close()
