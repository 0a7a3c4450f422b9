"""The websocket server against real Kafka: protocol, auth scoping, slow clients.

Live messages are produced to the test's private ``ioe.live`` topic; the server consumes them
with its own (group-less) consumer, exactly as in production.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import threading
from typing import Any

import orjson
import pytest
from dash_helpers import (
    CID,
    OTHER,
    LiveServer,
    alarm_msg,
    community_msg,
    member_msg,
    produce,
    wait_for,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from dashboards.hub import Limits
from ioe.kafka import make_producer
from ioe.topics import LIVE

pytestmark = pytest.mark.stack


class Client:
    """A websocket client that reads frames as the test asks for them."""

    def __init__(self, server: LiveServer, token: str | None = None) -> None:
        self.ws: ClientConnection = connect(server.ws_url, open_timeout=10, max_size=2**24)
        self.frames: list[dict[str, Any]] = []
        if token is not None:
            self.send({"op": "auth", "token": token})
            self.hello = self.until(lambda f: f["op"] in ("hello", "error"))

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(orjson.dumps(frame).decode())

    def until(self, match: Any, timeout: float = 30.0) -> dict[str, Any]:
        while True:
            frame = orjson.loads(self.ws.recv(timeout=timeout))
            self.frames.append(frame)
            if match(frame):
                return frame

    def close(self) -> None:
        self.ws.close()


def is_delta(channel: str, ts: int | None = None) -> Any:
    return lambda f: f["op"] == "delta" and f["channel"] == channel and (
        ts is None or f["data"].get("ts_ms") == ts)


def test_snapshot_then_deltas_from_kafka(live_server: LiveServer) -> None:
    channel, community = f"member:{CID}:m1", f"community:{CID}"
    first = member_msg("m1", 1_000, assigned=1500.0, consumption=900.0)
    produce(live_server, first,
            community_msg(1_000, generation=3000.0, consumption=2500.0, self_consumption=2000.0))
    hub = live_server.app.state.hub
    wait_for(lambda: hub.latest.get(community), what="the feed to reach the server")

    client = Client(live_server, live_server.token())
    assert client.hello["op"] == "hello"
    assert client.hello["channels"] == [channel, community]
    client.send({"op": "subscribe", "channels": [channel, community]})
    snapshot = client.until(lambda f: f["op"] == "snapshot" and f["channel"] == channel)
    assert snapshot["data"] == [first]
    snapshot = client.until(lambda f: f["op"] == "snapshot" and f["channel"] == community)
    assert snapshot["data"][0]["self_consumption_w"] == 2000.0

    second = member_msg("m1", 2_000, assigned=1600.0, consumption=2000.0)
    produce(live_server, second)
    assert client.until(is_delta(channel))["data"] == second

    client.send({"op": "unsubscribe", "channel": channel})
    client.until(lambda f: f["op"] == "unsubscribed")
    # same key → same partition → the member update is read before the community one
    produce(live_server, member_msg("m1", 3_000, assigned=1.0, consumption=1.0),
            community_msg(3_000, generation=1.0, consumption=1.0, self_consumption=1.0))
    client.until(is_delta(community, 3_000))
    assert not any(f["op"] == "delta" and f["channel"] == channel and f["data"]["ts_ms"] == 3000
                   for f in client.frames)

    client.send({"op": "ping", "id": 7})
    assert client.until(lambda f: f["op"] == "pong")["id"] == 7
    client.until(lambda f: f["op"] == "heartbeat")  # heartbeat_s = 1 in this fixture
    client.close()


def test_bad_live_messages_are_counted_and_the_feed_goes_on(live_server: LiveServer,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    producer = make_producer(live_server.settings)
    producer.send(live_server.settings.topic(LIVE), key=CID, value=b"{not json")
    producer.send(live_server.settings.topic(LIVE), key=CID,
                  value=orjson.dumps({"v": 1, "type": "member", "channel": "nowhere"}))
    producer.flush(30)
    producer.close()
    produce(live_server, member_msg("m2", 5_000, assigned=10.0, consumption=20.0))
    wait_for(lambda: live_server.app.state.hub.latest.get(f"member:{CID}:m2"),
             what="a good message after two bad ones")
    assert live_server.metric("ioe_web_live_bad_messages_total", {"reason": "not_json"}) == 1
    assert live_server.metric("ioe_web_live_bad_messages_total", {"reason": "invalid"}) == 1
    assert "unroutable ioe.live message" in caplog.text


@pytest.mark.parametrize("case", ["none", "garbage", "wrong_op", "expired"])
def test_authentication_refusals_close_with_an_error_frame(
        live_server: LiveServer, caplog: pytest.LogCaptureFixture, case: str) -> None:
    client = Client(live_server)
    first = {"none": {"op": "subscribe", "channel": f"community:{CID}"},
             "garbage": {"op": "auth", "token": "abc.def.ghi"},
             "wrong_op": {"op": "hello"},
             "expired": {"op": "auth", "token": live_server.token(ttl_days=1, now=1_000_000)},
             }[case]
    client.send(first)
    error = client.until(lambda f: True)
    assert error["op"] == "error"
    assert error["code"] == {"none": "auth_required", "garbage": "invalid_token",
                             "wrong_op": "auth_required", "expired": "expired_token"}[case]
    with pytest.raises(ConnectionClosed) as closed:
        client.until(lambda f: False, timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert "refused unauthenticated client" in caplog.text


def test_member_cannot_subscribe_to_anything_but_its_own_and_its_community(
        live_server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    produce(live_server, member_msg("m2", 1_000, assigned=777.0, consumption=1.0),
            alarm_msg("a-m2", f"operators:{CID}", member="m2"),
            member_msg("x1", 1_000, assigned=555.0, consumption=1.0, community=OTHER))
    hub = live_server.app.state.hub
    wait_for(lambda: hub.latest.get(f"member:{OTHER}:x1"), what="the feed")

    client = Client(live_server, live_server.token(member="m1"))
    forbidden = [f"member:{CID}:m2", f"operators:{CID}", f"member:{OTHER}:x1",
                 f"community:{OTHER}", f"operators:{OTHER}", "member:*", "community:*:x"]
    for channel in forbidden:
        client.send({"op": "subscribe", "channel": channel})
        error = client.until(lambda f: f["op"] in ("error", "snapshot"))
        assert error["op"] == "error", channel
        assert error["code"] == "forbidden" and error["channel"] == channel
    # the connection stays usable for what the token grants
    client.send({"op": "subscribe", "channel": f"member:{CID}:m1"})
    assert client.until(lambda f: f["op"] in ("error", "snapshot"))["op"] == "snapshot"
    assert not any(f["op"] in ("snapshot", "delta") and f["channel"] in forbidden
                   for f in client.frames)
    assert "777" not in str(client.frames) and "555" not in str(client.frames)
    assert caplog.text.count(f"refused member {CID}:m1") == len(forbidden)
    assert live_server.metric("ioe_web_refusals_total",
                              {"route": "ws", "code": "forbidden"}) == len(forbidden)
    client.close()


def test_operator_sees_its_communities_only(live_server: LiveServer) -> None:
    alarm = alarm_msg("a-1", f"operators:{CID}", member="m2")
    produce(live_server, alarm, member_msg("m2", 1_000, assigned=777.0, consumption=1.0))
    wait_for(lambda: live_server.app.state.hub.latest.get(f"member:{CID}:m2"), what="feed")
    client = Client(live_server, live_server.token(role="operator", member=None))
    for channel in (f"operators:{CID}", f"member:{CID}:m2", f"community:{CID}"):
        client.send({"op": "subscribe", "channel": channel})
        frame = client.until(lambda f: f["op"] in ("error", "snapshot"))
        assert frame["op"] == "snapshot", channel
    alarms = next(f for f in client.frames if f.get("channel") == f"operators:{CID}")
    assert alarms["data"] == [alarm]
    for channel in (f"community:{OTHER}", f"member:{OTHER}:x1"):
        client.send({"op": "subscribe", "channel": channel})
        assert client.until(lambda f: f["op"] in ("error", "snapshot"))["code"] == "forbidden"
    client.send({"op": "subscribe", "channel": f"member:{CID}:ghost"})
    assert client.until(lambda f: f["op"] == "error")["code"] == "unknown_channel"
    client.close()


def test_revoked_token_ends_a_live_session(live_server: LiveServer) -> None:
    from dashboards import tokens

    token = live_server.token()
    client = Client(live_server, token)
    token_id = client.hello["principal"]["token_id"]
    tokens.revoke(live_server.settings, token_id)
    error = client.until(lambda f: f["op"] == "error")  # at the next heartbeat (1 s)
    assert error["code"] == "revoked_token"
    with pytest.raises(ConnectionClosed):
        client.until(lambda f: False, timeout=10)


def test_a_client_that_does_not_read_is_disconnected_and_slows_nobody(
        stack_settings: Any, server_factory: Any) -> None:
    server: LiveServer = server_factory(
        stack_settings, limits=Limits(max_conflations=40, send_timeout_s=2.0))
    channel = f"member:{CID}:m1"
    # a phone on a bad link: a small receive window (no autotuning) and a client that stops
    # reading after one frame
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", server.port))
    slow = connect(server.ws_url, sock=sock, max_size=2**24, max_queue=1)
    slow.send(orjson.dumps({"op": "auth", "token": server.token()}).decode())
    slow.send(orjson.dumps({"op": "subscribe", "channel": channel}).decode())
    fast = Client(server, server.token())
    fast.send({"op": "subscribe", "channel": channel})
    fast.until(lambda f: f["op"] == "snapshot")
    wait_for(lambda: len(server.app.state.hub.subscribers.get(channel, ())) == 2,
             what="both subscriptions")

    received: list[float] = []
    total = 150  # × 60 kB: more than the socket buffers between server and slow client
    done = threading.Event()

    def read_fast() -> None:
        frame = fast.until(lambda f: f["op"] == "delta" and (
            received.append(f["data"]["assigned_w"]) or f["data"]["ts_ms"] == total))
        assert frame["data"]["ts_ms"] == total
        done.set()

    reader = threading.Thread(target=read_fast, daemon=True)
    reader.start()
    # big, incompressible frames (permessage-deflate is on) fill the slow client's buffers
    padding = base64.b64encode(os.urandom(45_000)).decode()
    for ts in range(1, total + 1):
        server.deliver([member_msg("m1", ts, assigned=float(ts), consumption=1.0,
                                   padding=padding)])
        # paced by the fast client: every update reaches it, none is conflated for it
        wait_for(lambda ts=ts: received and received[-1] >= ts, what="the fast client")
    assert done.wait(60), "the fast client did not get the last value"
    assert received == [float(ts) for ts in range(1, total + 1)]
    slow_gone = wait_for(lambda: sum(server.metric("ioe_web_ws_disconnects_total",
                                                   {"reason": r})
                                     for r in ("slow_client", "send_stalled")),
                         what="the slow client to be disconnected")
    assert slow_gone == 1
    assert server.metric("ioe_web_ws_frames_conflated_total") > 0
    assert len(server.app.state.hub.sessions) == 1  # the fast client is still there
    fast.close()
    slow.close()
