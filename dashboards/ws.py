"""The ``/ws`` endpoint: authentication, subscriptions, snapshot then deltas, heartbeat.

Protocol (JSON text frames; DESIGN.md §6):

    client → {"op":"auth","token":"…"}                       (first frame, within auth_timeout)
    server → {"op":"hello","principal":{…},"heartbeat_s":15,"channels":[…granted defaults…]}
    client → {"op":"subscribe","channel":"member:<cid>:<mid>"|"community:<cid>"|"operators:<cid>"}
    server → {"op":"snapshot","channel":…,"data":[latest messages]}  then
             {"op":"delta","channel":…,"data":{ioe.live message}}
    client → {"op":"unsubscribe","channel":…}  → {"op":"unsubscribed","channel":…}
    client → {"op":"ping"}                     → {"op":"pong","ts_ms":…}
    server → {"op":"heartbeat","ts_ms":…} every heartbeat_s (the token is re-checked then:
             a revoked or expired token ends the session)
    server → {"op":"error","code":…,"message":…[,"channel":…]} for every refusal

The token travels in the first frame, not in the URL, so it never reaches an access log.
Close codes: 4401 authentication, 4403 origin not allowed, 4008 too slow, 4400 protocol abuse.

Origins: a browser sends its page's ``Origin`` with the websocket handshake, and the browser's
cookies-free token scheme does not stop another site's page from opening a socket and trying
tokens it phished or guessed, so only the server's own host and the configured origins
(``IOE_WEB_ORIGINS``, ``ioe web --allow-origin``) are accepted. A client without ``Origin`` is
not a browser page (scripts, the benchmark) and is let through to authenticate as usual.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.websockets import WebSocket

from dashboards import tokens
from dashboards.hub import Hub, Limits, Session, SessionStats, control_frame
from dashboards.metrics import WebMetrics
from ioe.messages import Channel, ChannelKind, MessageError
from ioe.registry import Registry

log = logging.getLogger(__name__)

MAX_FRAME = 4096
CLOSE_AUTH = 4401
CLOSE_SLOW = 4008
CLOSE_PROTOCOL = 4400
CLOSE_ORIGIN = 4403
ORIGINS_ENV = "IOE_WEB_ORIGINS"
ANY_ORIGIN = "*"


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


def origins_from_env(environ: dict[str, str] | None = None) -> list[str]:
    raw = (environ if environ is not None else os.environ).get(ORIGINS_ENV, "")
    return [o for o in (part.strip() for part in raw.split(",")) if o]


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """May a page of ``origin`` open the websocket of the server reached as ``host``?

    Allowed: no ``Origin`` (not a browser page), the server's own host, a configured origin,
    or any origin when ``*`` is configured."""
    if origin is None:
        return True
    wanted = normalize_origin(origin)
    configured = {normalize_origin(o) for o in allowed}
    if ANY_ORIGIN in configured or wanted in configured:
        return True
    netloc = urlsplit(wanted).netloc if "://" in wanted else ""
    return bool(host) and bool(netloc) and netloc == host.strip().lower()


@dataclass
class WsContext:
    hub: Hub
    verifier: tokens.Verifier
    registry: Registry
    metrics: WebMetrics
    limits: Limits
    heartbeat_s: float = 15.0
    auth_timeout_s: float = 10.0
    #: origins allowed besides the server's own host (normalized; "*" = any)
    allowed_origins: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Ending:
    reason: str
    code: int = 1000
    frame: str | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def error_frame(code: str, message: str, channel: str | None = None) -> str:
    extra = {"channel": channel} if channel else {}
    return control_frame("error", code=code, message=message, **extra)


def default_channels(principal: tokens.Principal) -> list[str]:
    """What a client of this principal usually wants (the clients may subscribe to less)."""
    if principal.role == "member":
        cid = principal.community_id or ""
        return [str(Channel.member(cid, principal.member_id or "")),
                str(Channel.community(cid))]
    channels = []
    for cid in principal.communities:
        channels += [str(Channel.community(cid)), str(Channel.operators(cid))]
    return channels


def channel_exists(registry: Registry, channel: Channel) -> bool:
    community = registry.community(channel.community_id)
    if community is None:
        return False
    return channel.kind is not ChannelKind.MEMBER or \
        community.member(channel.member_id or "") is not None


class Connection:
    """One websocket client from accept to close."""

    def __init__(self, ws: WebSocket, ctx: WsContext) -> None:
        self.ws = ws
        self.ctx = ctx
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        stats = SessionStats(on_conflated=ctx.metrics.frames_conflated.inc,
                             on_sent=ctx.metrics.frames_sent.inc)
        self.session = Session(ws.send_text, limits=ctx.limits, name=f"ws {peer}", stats=stats)
        self.principal: tokens.Principal | None = None
        self.token = ""

    def refuse(self, code: str, message: str, channel: str | None = None) -> str:
        who = self.principal.describe() if self.principal else "unauthenticated client"
        log.warning("refused %s on %s: %s (%s)%s", who, self.session.name, code, message,
                    f" channel {channel}" if channel else "")
        self.ctx.metrics.refusals.labels("ws", code).inc()
        return error_frame(code, message, channel)

    async def run(self) -> None:
        origin = self.ws.headers.get("origin")
        if not origin_allowed(origin, self.ws.headers.get("host"), self.ctx.allowed_origins):
            # accepted only to say why: a handshake refused with HTTP 403 tells a page nothing
            await self.ws.accept()
            frame = self.refuse("origin_not_allowed",
                                f"pages of origin {origin!r} may not open this websocket")
            self.ctx.metrics.disconnects.labels("origin_not_allowed").inc()
            await self._close(Ending("origin_not_allowed", CLOSE_ORIGIN, frame))
            return
        await self.ws.accept()
        self.ctx.metrics.clients.inc()
        self.ctx.hub.add(self.session)
        tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._pump()),
                 asyncio.create_task(self._heartbeat())]
        ending = Ending("closed")
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is None and task.result():
                    ending = task.result()
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.ctx.hub.remove(self.session)
            self.ctx.metrics.clients.dec()
        if ending.reason != "client_closed":
            self.ctx.metrics.disconnects.labels(ending.reason).inc()
            await self._close(ending)

    async def _close(self, ending: Ending) -> None:
        try:
            if ending.frame:
                await asyncio.wait_for(self.ws.send_text(ending.frame), 1.0)
            await asyncio.wait_for(self.ws.close(ending.code), 1.0)
        except Exception:  # the peer is gone or stuck: nothing more to tell it
            log.debug("close of %s did not complete", self.session.name)

    async def _pump(self) -> Ending:
        reason = await self.session.pump()
        if reason in ("slow_client", "send_stalled"):
            return Ending(reason, CLOSE_SLOW, error_frame(
                reason, "the connection could not keep up and was closed; reconnect"))
        return Ending(reason, CLOSE_PROTOCOL if reason == "protocol" else 1000)

    async def _heartbeat(self) -> Ending:
        while True:
            await asyncio.sleep(self.ctx.heartbeat_s)
            if self.principal is None:
                continue
            try:
                self.ctx.verifier.verify(self.token)
            except tokens.TokenError as exc:
                frame = self.refuse(exc.code, exc.message)
                return Ending(exc.code, CLOSE_AUTH, frame)
            self.session.send_control(control_frame("heartbeat", ts_ms=_now_ms()))

    async def _receive(self) -> Any:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            text = message["bytes"].decode("utf-8", "replace")
        return text or ""

    async def _read(self) -> Ending:
        try:
            first = await asyncio.wait_for(self._receive(), self.ctx.auth_timeout_s)
        except TimeoutError:
            return Ending("auth_timeout", CLOSE_AUTH, self.refuse(
                "auth_required", "send {\"op\":\"auth\",\"token\":…} first"))
        if first is None:
            return Ending("client_closed")
        ending = self._authenticate(first)
        if ending is not None:
            return ending
        while True:
            text = await self._receive()
            if text is None:
                return Ending("client_closed")
            self._handle(text)

    def _authenticate(self, text: str) -> Ending | None:
        request = _parse(text)
        if request is None or request.get("op") != "auth" or not isinstance(
                request.get("token"), str):
            return Ending("auth_required", CLOSE_AUTH, self.refuse(
                "auth_required", "the first frame must be {\"op\":\"auth\",\"token\":…}"))
        try:
            self.principal = self.ctx.verifier.verify(request["token"])
        except tokens.TokenError as exc:
            return Ending(exc.code, CLOSE_AUTH, self.refuse(exc.code, exc.message))
        self.token = request["token"]
        self.session.name = f"{self.session.name} {self.principal.describe()}"
        self.session.send_control(control_frame(
            "hello", principal=self.principal.to_public(), heartbeat_s=self.ctx.heartbeat_s,
            channels=default_channels(self.principal), ts_ms=_now_ms()))
        return None

    def _handle(self, text: str) -> None:
        assert self.principal is not None
        request = _parse(text)
        if request is None:
            self.session.send_control(self.refuse("bad_request", "frames are JSON objects "
                                                  f"of at most {MAX_FRAME} bytes"))
            return
        op = request.get("op")
        if op in ("subscribe", "unsubscribe"):
            channels = request.get("channels", [request.get("channel")])
            if not isinstance(channels, list):
                channels = [channels]
            for channel in channels:
                self._subscription(op, channel)
        elif op == "ping":
            self.session.send_control(control_frame("pong", ts_ms=_now_ms(),
                                                    id=request.get("id")))
        elif op in ("pong", "auth"):
            pass
        else:
            self.session.send_control(self.refuse("bad_request", f"unknown op {op!r}"))

    def _subscription(self, op: str, name: Any) -> None:
        assert self.principal is not None
        if not isinstance(name, str) or not name:
            self.session.send_control(self.refuse("bad_request", "a channel name is needed"))
            return
        try:
            channel = Channel.parse(name)
        except MessageError:
            if op == "unsubscribe":  # nothing can be subscribed under a name that is not one
                self.session.send_control(control_frame("unsubscribed", channel=name))
            else:
                self.session.send_control(self.refuse("forbidden", tokens.UNKNOWN_CHANNEL,
                                                      name))
            return
        if op == "unsubscribe":
            self.ctx.hub.unsubscribe(self.session, str(channel))
            self.session.send_control(control_frame("unsubscribed", channel=name))
            return
        refusal = tokens.channel_refusal(self.principal, channel)
        if refusal is not None:
            self.session.send_control(self.refuse("forbidden", refusal, name))
            return
        if not channel_exists(self.ctx.registry, channel):
            self.session.send_control(self.refuse("unknown_channel",
                                                  "no such community or member", name))
            return
        if not self.ctx.hub.subscribe(self.session, str(channel)):
            self.session.send_control(self.refuse(
                "too_many_channels", f"at most {self.ctx.limits.max_channels} channels",
                name))


def _parse(text: str) -> dict[str, Any] | None:
    if len(text) > MAX_FRAME:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
