"""Web-side hardening of ``ioe web``: security headers, trusted proxies, failed-auth limits.

Why one pure-ASGI middleware (not Starlette's ``BaseHTTPMiddleware``): it must see every
response, including the websocket's close frames and the plain 500 of Starlette's error
handler, and must not buffer or re-wrap streamed responses (CSV export, static files).

- **Headers** on every HTTP response (``SECURITY_HEADERS``): a Content-Security-Policy that
  allows only the server's own files (every page loads vendored scripts and ``style.css`` from
  ``/static``; there is no inline script or style, so none is allowed), no framing
  (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` for older browsers), ``nosniff``
  and ``no-referrer`` (a page URL carries its token in the fragment, which browsers never send,
  but a referrer-free policy costs nothing). ``Strict-Transport-Security`` only on requests
  that arrived over TLS: announcing HSTS over plain HTTP is ignored by browsers and would make
  a loopback deployment unreachable once a TLS front is removed.
- **Proxies**: behind a TLS reverse proxy the connection comes from the proxy, so the client
  address and scheme are taken from ``X-Forwarded-For`` / ``X-Forwarded-Proto`` — only when
  the direct peer is a configured trusted proxy (``IOE_WEB_TRUSTED_PROXIES``, ``ioe web
  --trusted-proxy``), exactly as uvicorn's own ``ProxyHeadersMiddleware`` does (it is used
  here, so the semantics are uvicorn's: addresses or networks, ``*`` = any). Without that
  configuration the headers are ignored: anyone could otherwise forge HSTS or another client's
  address to escape the rate limit.
- **Failed authentication** (HTTP 401 from the API, websocket close 4401) is counted per
  client address by :class:`FailureLimiter`; after ``max_failures`` within ``window_s`` that
  address gets 429 with ``Retry-After`` on ``/api/…`` (websocket: an error frame and close
  1008, policy violation) until ``window_s`` has passed. Tokens are long random-signed JWTs,
  so this does not protect the secret; it slows down trying phished or leaked tokens and keeps
  a scanner from filling the logs. A success does not reset the count (one valid token must
  not buy unlimited guesses).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from starlette.applications import Starlette
from starlette.types import ASGIApp as StarletteASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from dashboards.metrics import WebMetrics

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRUSTED_PROXIES_ENV = "IOE_WEB_TRUSTED_PROXIES"
MAX_FAILURES_ENV = "IOE_WEB_AUTH_MAX_FAILURES"
WINDOW_ENV = "IOE_WEB_AUTH_WINDOW_S"
DEFAULT_MAX_FAILURES = 20
DEFAULT_WINDOW_S = 300.0
#: the websocket close code of the app for a failed authentication (``dashboards.ws``)
WS_CLOSE_AUTH = 4401
#: RFC 6455 "policy violation": the close code of a rate-limited websocket
WS_CLOSE_POLICY = 1008

CSP = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self'",
    "font-src 'self'", "connect-src 'self'", "manifest-src 'self'", "worker-src 'self'",
    "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"))
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
#: one year; no ``includeSubDomains``: this server does not speak for its sibling hosts
HSTS = (b"strict-transport-security", b"max-age=31536000")
#: paths whose requests check a token, refused while their client is blocked
GUARDED = ("/api/", "/ws")


def _csv(raw: str) -> list[str]:
    return [part for part in (p.strip() for p in raw.split(",")) if part]


def trusted_proxies_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """``IOE_WEB_TRUSTED_PROXIES``: comma-separated addresses or networks (``*`` = any)."""
    return _csv((environ if environ is not None else os.environ).get(TRUSTED_PROXIES_ENV, ""))


class FailureLimiter:
    """Failed authentications per client key in a sliding window; pure (injectable clock).

    ``failure(key)`` records one; when ``max_failures`` fall within ``window_s`` the key is
    blocked for ``window_s`` from that failure and ``retry_after(key)`` says for how long.
    At most ``max_clients`` keys are remembered (the stalest are forgotten first), so a flood
    of addresses cannot exhaust memory."""

    def __init__(self, max_failures: int = DEFAULT_MAX_FAILURES,
                 window_s: float = DEFAULT_WINDOW_S, *,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be >= 1 and window_s > 0")
        self.max_failures, self.window_s = max_failures, window_s
        self.clock, self.max_clients = clock, max_clients
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> FailureLimiter:
        env = environ if environ is not None else os.environ
        return cls(int(env.get(MAX_FAILURES_ENV) or DEFAULT_MAX_FAILURES),
                   float(env.get(WINDOW_ENV) or DEFAULT_WINDOW_S))

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it is not blocked."""
        until = self._blocked.get(key)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._blocked[key]
            return None
        return left

    def failure(self, key: str) -> bool:
        """Record a failed authentication of ``key``; True when it has just been blocked."""
        now = self.clock()
        times = self._failures.pop(key, None) or deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        times.append(now)
        if len(times) >= self.max_failures:
            self._blocked[key] = now + self.window_s
            return True
        self._failures[key] = times  # re-inserted last: dict order = staleness
        self._forget()
        return False

    def _forget(self) -> None:
        while len(self._failures) > self.max_clients:
            del self._failures[next(iter(self._failures))]
        while len(self._blocked) > self.max_clients:
            del self._blocked[next(iter(self._blocked))]

    def __len__(self) -> int:
        return len(self._failures) + len(self._blocked)


def client_key(scope: Scope) -> str:
    """The client's address as the app sees it (after trusted-proxy resolution)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _is_tls(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss")


@dataclass
class SecurityMiddleware:
    """Headers and the failed-auth limit around the app (see the module docstring)."""

    app: ASGIApp
    limiter: FailureLimiter
    metrics: WebMetrics | None = None
    guarded: tuple[str, ...] = GUARDED
    headers: tuple[tuple[bytes, bytes], ...] = field(default=SECURITY_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _guarded(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        return any(path == p.rstrip("/") or path.startswith(p) for p in self.guarded)

    def _failed(self, scope: Scope, route: str) -> None:
        key = client_key(scope)
        if self.metrics is not None:
            self.metrics.auth_failures.labels(route).inc()
        if self.limiter.failure(key):
            log.warning("client %s blocked for %.0f s after %d failed authentications",
                        key, self.limiter.window_s, self.limiter.max_failures)

    def _limited(self, scope: Scope, route: str) -> float | None:
        if not self._guarded(scope):
            return None
        retry = self.limiter.retry_after(client_key(scope))
        if retry is not None and self.metrics is not None:
            self.metrics.auth_rate_limited.labels(route).inc()
        return retry

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = self.headers + ((HSTS,) if _is_tls(scope) else ())

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message.get("status") == 401:
                    self._failed(scope, "rest")
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in extra if h[0] not in present)]
            await send(message)

        retry = self._limited(scope, "rest")
        if retry is not None:
            await _too_many(retry, send_secured)
            return
        await self.app(scope, receive, send_secured)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        retry = self._limited(scope, "ws")
        if retry is not None:
            await _refuse_websocket(retry, receive, send)
            return

        async def send_observed(message: Message) -> None:
            if message["type"] == "websocket.close" and message.get("code") == WS_CLOSE_AUTH:
                self._failed(scope, "ws")
            await send(message)

        await self.app(scope, receive, send_observed)


def _retry_seconds(retry: float) -> int:
    return max(1, math.ceil(retry))


async def _too_many(retry: float, send: Send) -> None:
    seconds = _retry_seconds(retry)
    body = orjson.dumps({"error": "too_many_auth_failures",
                         "message": "too many failed authentications from this address; "
                                    f"retry after {seconds} s", "retry_after_s": seconds})
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(seconds).encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(retry: float, receive: Receive, send: Send) -> None:
    """Accepted only to say why (a refused handshake tells a page nothing), then closed."""
    seconds = _retry_seconds(retry)
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": orjson.dumps({
        "op": "error", "code": "too_many_auth_failures",
        "message": f"too many failed authentications from this address; retry after "
                   f"{seconds} s", "retry_after_s": seconds}).decode()})
    await send({"type": "websocket.close", "code": WS_CLOSE_POLICY,
                "reason": f"retry after {seconds} s"})


class SecureStarlette(Starlette):
    """Starlette with :func:`secure` outside its whole stack, error handler included (so even
    a plain 500 carries the headers). Configured from ``state.auth_limiter``,
    ``state.metrics`` and ``state.trusted_proxies``, set by ``create_app``."""

    def build_middleware_stack(self) -> StarletteASGIApp:
        return cast(StarletteASGIApp, secure(
            cast(ASGIApp, super().build_middleware_stack()), limiter=self.state.auth_limiter,
            metrics=self.state.metrics, trusted_proxies=self.state.trusted_proxies))


def secure(app: ASGIApp, *, limiter: FailureLimiter, metrics: WebMetrics | None = None,
           trusted_proxies: Iterable[str] = ()) -> ASGIApp:
    """``app`` wrapped: trusted-proxy headers first (so the limiter and HSTS see the real
    client and scheme), then :class:`SecurityMiddleware`."""
    wrapped: ASGIApp = SecurityMiddleware(app, limiter, metrics)
    proxies = list(trusted_proxies)
    if proxies:
        wrapped = cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, wrapped),
                                                       trusted_hosts=proxies))
    return wrapped
