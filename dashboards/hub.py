"""Fan-out of live values to websocket sessions, with conflation (DESIGN.md §6).

Why this shape: the Kafka consumer must never wait for a browser. ``Hub.publish`` runs on the
event loop, touches only in-memory dicts and never awaits, so one slow phone cannot slow the
feed or anybody else. Each ``Session`` has its own bounded queue keyed by *conflation key*
(channel + message type, or channel + alarm id): a newer value replaces an older one that was
not sent yet, so a slow client sees fewer, always-current frames. A client that stays behind
(too many conflations without one successful send, or one send stalled too long) is
disconnected.

Messages arrive decoded once (``ioe.messages.decode_live``) together with the Kafka value bytes;
the frame wraps those bytes as they are (no re-encoding), once per update, and the same string
is queued to every subscriber. Extra fields a producer adds travel to the clients untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ioe.messages import AlarmState, LiveAlarm, LiveMessage

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Limits:
    """Per-client back-pressure limits."""

    #: distinct conflation keys waiting to be sent (channels × types, open alarms)
    max_pending: int = 512
    #: updates replaced without one frame getting through → the client is disconnected
    max_conflations: int = 2000
    #: one send blocked this long → the client is disconnected
    send_timeout_s: float = 10.0
    #: control frames (errors, pongs) waiting
    max_control: int = 64
    #: channels one session may hold
    max_channels: int = 256


def conflation_key(message: LiveMessage) -> str:
    """Which pending update a new message replaces: same channel and type (or same alarm)."""
    if isinstance(message, LiveAlarm):
        return f"{message.channel}|{LiveAlarm.TYPE}|{message.alarm.alarm_id}"
    return f"{message.channel}|{message.TYPE}"


def event_ts(message: LiveMessage) -> int:
    """The time that orders updates of one conflation key (an older one never wins)."""
    if isinstance(message, LiveAlarm):
        return int(message.alarm.updated_at_ms or message.alarm.opened_at_ms or 0)
    return int(message.ts_ms)


def delta_frame(channel: str, data: bytes) -> str:
    return (b'{"op":"delta","channel":' + orjson.dumps(channel) + b',"data":' + data
            + b"}").decode()


def control_frame(op: str, **fields: Any) -> str:
    return orjson.dumps({"op": op, **fields}).decode()


class SessionStats:
    """Counters the hub reports to Prometheus (callbacks keep the hub free of metric types)."""

    def __init__(self, on_conflated: Callable[[], None] | None = None,
                 on_sent: Callable[[], None] | None = None) -> None:
        self.on_conflated = on_conflated or (lambda: None)
        self.on_sent = on_sent or (lambda: None)


class Session:
    """One websocket client: its channels and its conflating outbound queue."""

    def __init__(self, send: Callable[[str], Awaitable[None]], *, limits: Limits | None = None,
                 name: str = "client", stats: SessionStats | None = None) -> None:
        self.send = send
        self.limits = limits or Limits()
        self.name = name
        self.stats = stats or SessionStats()
        self.channels: set[str] = set()
        self.pending: dict[str, str] = {}
        self.control: deque[str] = deque()
        self.wake = asyncio.Event()
        self.close_reason: str | None = None
        self.conflated = 0
        self.since_send = 0
        self.sent = 0

    # -- called by the hub (never awaits) -------------------------------------------------
    def offer(self, key: str, frame: str) -> None:
        if self.close_reason:
            return
        if key in self.pending:
            self.conflated += 1
            self.since_send += 1
            self.stats.on_conflated()
            if self.since_send > self.limits.max_conflations:
                self.kill("slow_client")
                return
        elif len(self.pending) >= self.limits.max_pending:
            self.kill("slow_client")
            return
        self.pending[key] = frame
        self.wake.set()

    def send_control(self, frame: str) -> None:
        if self.close_reason:
            return
        if len(self.control) >= self.limits.max_control:
            self.kill("slow_client")
            return
        self.control.append(frame)
        self.wake.set()

    def drop_channel(self, channel: str) -> None:
        prefix = channel + "|"
        for key in [k for k in self.pending if k.startswith(prefix)]:
            del self.pending[key]

    def kill(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            log.warning("disconnecting %s: %s (conflated %d, sent %d)", self.name, reason,
                        self.conflated, self.sent)
        self.wake.set()

    # -- the sender task ---------------------------------------------------------------------
    async def pump(self) -> str:
        """Send queued frames until the session is killed; returns the reason."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while (self.control or self.pending) and self.close_reason is None:
                if self.control:
                    frame = self.control.popleft()
                else:
                    key = next(iter(self.pending))
                    frame = self.pending.pop(key)
                try:
                    await asyncio.wait_for(self.send(frame), self.limits.send_timeout_s)
                except TimeoutError:
                    self.kill("send_stalled")
                    break
                self.sent += 1
                self.since_send = 0
                self.stats.on_sent()
            if self.close_reason is not None:
                return self.close_reason


class Hub:
    """Latest value per channel and the sessions subscribed to each channel."""

    def __init__(self) -> None:
        #: channel → conflation key → (ts_ms, encoded message); closed alarms are removed
        self.latest: dict[str, dict[str, tuple[int, bytes]]] = {}
        self.subscribers: dict[str, set[Session]] = {}
        self.sessions: set[Session] = set()
        self.published = 0
        self.out_of_order = 0

    def publish(self, message: LiveMessage, data: bytes | None = None) -> None:
        """Route one decoded ``ioe.live`` message to the snapshot and the subscribers.

        ``data`` is the message's JSON as it came from Kafka (sent to clients unchanged);
        without it the message is encoded here (tests, benchmarks)."""
        channel = str(message.channel)
        key = conflation_key(message)
        data = message.encode() if data is None else data
        ts = event_ts(message)
        values = self.latest.setdefault(channel, {})
        previous = values.get(key)
        if previous is not None and previous[0] > ts:
            self.out_of_order += 1  # an older value never replaces a newer one
            return
        if isinstance(message, LiveAlarm) and message.alarm.state == AlarmState.CLOSED:
            values.pop(key, None)
        else:
            values[key] = (ts, data)
        self.published += 1
        subscribers = self.subscribers.get(channel)
        if subscribers:
            frame = delta_frame(channel, data)
            for session in subscribers:
                session.offer(key, frame)

    def snapshot_frame(self, channel: str) -> str:
        values = self.latest.get(channel, {})
        data = b"[" + b",".join(v[1] for v in values.values()) + b"]"
        return (b'{"op":"snapshot","channel":' + orjson.dumps(channel) + b',"data":' + data
                + b"}").decode()

    def add(self, session: Session) -> None:
        self.sessions.add(session)

    def subscribe(self, session: Session, channel: str) -> bool:
        """Subscribe and queue the snapshot; False when the session holds too many channels."""
        if channel not in session.channels and \
                len(session.channels) >= session.limits.max_channels:
            return False
        session.channels.add(channel)
        self.subscribers.setdefault(channel, set()).add(session)
        session.drop_channel(channel)
        session.offer(f"{channel}|snapshot", self.snapshot_frame(channel))
        return True

    def unsubscribe(self, session: Session, channel: str) -> None:
        session.channels.discard(channel)
        session.drop_channel(channel)
        subscribers = self.subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self.subscribers[channel]

    def remove(self, session: Session) -> None:
        for channel in list(session.channels):
            self.unsubscribe(session, channel)
        self.sessions.discard(session)
