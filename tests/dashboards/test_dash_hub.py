"""The hub and its conflating sessions, with a transport the test holds back (a slow client)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from dash_helpers import CID, alarm_msg, community_msg, member_msg

from dashboards.hub import Hub, Limits, Session
from ioe.messages import MessageError, decode_live


def publish(hub: Hub, message: dict[str, Any]) -> None:
    """What the web's router does with one Kafka value: decode once, route with the bytes."""
    raw = orjson.dumps(message)
    hub.publish(decode_live(raw), raw)


class GatedTransport:
    """A websocket stand-in whose sends wait until the test opens the gate."""

    def __init__(self, open_: bool = True) -> None:
        self.gate = asyncio.Event()
        if open_:
            self.gate.set()
        self.frames: list[dict] = []

    async def send(self, frame: str) -> None:
        await self.gate.wait()
        self.frames.append(orjson.loads(frame))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_slow_client_is_conflated_and_never_slows_a_fast_one() -> None:
    hub = Hub()
    fast_t, slow_t = GatedTransport(), GatedTransport(open_=False)
    fast, slow = Session(fast_t.send), Session(slow_t.send)
    tasks = [asyncio.create_task(s.pump()) for s in (fast, slow)]
    channel = f"member:{CID}:m1"
    for session in (fast, slow):
        hub.subscribe(session, channel)
    await settle()
    for ts in range(1, 101):
        publish(hub, member_msg("m1", ts, assigned=float(ts), consumption=50.0))
        await settle()  # the fast client drains between updates
    fast_values = [f["data"]["assigned_w"] for f in fast_t.frames if f["op"] == "delta"]
    assert fast_values == [float(ts) for ts in range(1, 101)]  # every update, in order
    assert slow_t.frames == []  # the slow one is stuck on its first frame (the snapshot)
    slow_t.gate.set()
    await settle()
    slow_ops = [(f["op"], f["data"]["assigned_w"] if f["op"] == "delta" else None)
                for f in slow_t.frames]
    # snapshot, then only the newest value: 99 older updates were replaced, never queued
    assert slow_ops == [("snapshot", None), ("delta", 100.0)]
    assert slow.conflated == 99 and slow.close_reason is None
    for task in tasks:
        task.cancel()


async def test_a_client_that_stays_behind_is_disconnected() -> None:
    hub = Hub()
    transport = GatedTransport(open_=False)
    session = Session(transport.send, limits=Limits(max_conflations=10))
    task = asyncio.create_task(session.pump())
    hub.subscribe(session, f"member:{CID}:m1")
    await settle()
    for ts in range(1, 13):
        publish(hub, member_msg("m1", ts, assigned=1.0, consumption=1.0))
    assert session.close_reason == "slow_client"
    transport.gate.set()
    assert await asyncio.wait_for(task, 5) == "slow_client"


async def test_a_stalled_send_disconnects() -> None:
    transport = GatedTransport(open_=False)
    session = Session(transport.send, limits=Limits(send_timeout_s=0.05))
    task = asyncio.create_task(session.pump())
    session.offer("k", "{}")
    assert await asyncio.wait_for(task, 5) == "send_stalled"


async def test_snapshot_keeps_newest_value_per_channel_and_open_alarms() -> None:
    hub = Hub()
    publish(hub, member_msg("m1", 2000, assigned=200.0, consumption=10.0))
    publish(hub, member_msg("m1", 1000, assigned=100.0, consumption=10.0))  # older: ignored
    publish(hub, community_msg(1500, generation=900.0, consumption=700.0, self_consumption=500.0))
    operators = f"operators:{CID}"
    publish(hub, alarm_msg("a1", operators, member="m1"))
    publish(hub, alarm_msg("a2", operators, member="m2"))
    publish(hub, alarm_msg("a2", operators, member="m2", state="closed"))
    assert hub.out_of_order == 1
    member = orjson.loads(hub.snapshot_frame(f"member:{CID}:m1"))
    assert member["op"] == "snapshot"
    assert [m["assigned_w"] for m in member["data"]] == [200.0]
    alarms = orjson.loads(hub.snapshot_frame(operators))["data"]
    assert [a["alarm"]["alarm_id"] for a in alarms] == ["a1"]  # a2 was closed
    assert orjson.loads(hub.snapshot_frame(f"community:{CID}"))["data"][0]["generation_w"] == 900


async def test_unsubscribe_stops_deltas() -> None:
    hub = Hub()
    transport = GatedTransport()
    session = Session(transport.send)
    task = asyncio.create_task(session.pump())
    channel = f"member:{CID}:m1"
    hub.subscribe(session, channel)
    publish(hub, member_msg("m1", 1, assigned=1.0, consumption=1.0))
    await settle()
    hub.unsubscribe(session, channel)
    publish(hub, member_msg("m1", 2, assigned=2.0, consumption=1.0))
    await settle()
    assert [f["op"] for f in transport.frames] == ["snapshot", "delta"]
    assert hub.subscribers == {}
    task.cancel()


@pytest.mark.parametrize("bad", [
    [], {"v": 2, "type": "member", "channel": f"member:{CID}:m1", "ts_ms": 1},
    {"v": 1, "type": "gossip", "channel": f"community:{CID}", "ts_ms": 1},
    {"v": 1, "type": "member", "channel": "member:onlyone", "ts_ms": 1},
    {"v": 1, "type": "member", "channel": f"member:{CID}:m1"},
    {"v": 1, "type": "alarm", "channel": f"operators:{CID}", "alarm": {}},
])
def test_unroutable_messages_are_refused(bad: object) -> None:
    with pytest.raises(MessageError):
        decode_live(orjson.dumps(bad))


async def test_frames_carry_the_kafka_value_bytes_untouched() -> None:
    """The value is decoded once to route it and forwarded as it came (no re-encoding): key
    order, spacing, escapes and fields the hub does not know reach the client byte for byte."""
    hub = Hub()
    sent: list[str] = []

    async def send(frame: str) -> None:
        sent.append(frame)

    session = Session(send)
    task = asyncio.create_task(session.pump())
    channel = f"member:{CID}:m1"
    message = member_msg("m1", 5, assigned=1.0, consumption=2.0, note="a\u00f1adido")
    raw = orjson.dumps(dict(reversed(list(message.items())))).replace(b'","', b'", "')
    hub.publish(decode_live(raw), raw)  # before the subscription: lands in the snapshot
    hub.subscribe(session, channel)
    await settle()
    hub.publish(decode_live(raw.replace(b'"ts_ms":5', b'"ts_ms":6')),
                raw.replace(b'"ts_ms":5', b'"ts_ms":6'))
    await settle()
    snapshot, delta = sent
    assert snapshot == f'{{"op":"snapshot","channel":"{channel}","data":[{raw.decode()}]}}'
    later = raw.replace(b'"ts_ms":5', b'"ts_ms":6').decode()
    assert delta == f'{{"op":"delta","channel":"{channel}","data":{later}}}'
    assert orjson.loads(delta)["data"]["note"] == "a\u00f1adido"
    task.cancel()
