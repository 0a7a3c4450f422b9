"""Rate limit on failed authentication (issue 18, the web side), on a real uvicorn server.

After ``max_failures`` failed token checks from one client address within the window (HTTP
401s of the API and websocket closes 4401 count together), that address gets 429 with
``Retry-After`` on the API, and its websocket an error frame and close 1008, until the window
has passed — even with a valid token. Other addresses are not affected; pages are still served.
The client address is the connection's, or ``X-Forwarded-For`` only from a configured trusted
proxy. Counted in the web metrics; the refused tokens never reach a log line.
The limiter's clock is injected: the tests move time, they do not wait for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from security_helpers import FakeClock, WebServer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dashboards.security import FailureLimiter
from ioe.settings import Settings

BAD = "Bearer BADTOKEN-not-a-jwt-7f3a"
WINDOW = 60.0


# -- the limiter alone ---------------------------------------------------------------------------
def test_blocks_after_n_failures_within_the_window_until_it_passes() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, WINDOW, clock=clock)
    assert limiter.failure("a") is False and limiter.failure("a") is False
    assert limiter.retry_after("a") is None
    assert limiter.failure("a") is True  # the third within 60 s
    assert limiter.retry_after("a") == pytest.approx(WINDOW)
    assert limiter.retry_after("b") is None  # per client
    clock.now += 59.5
    assert limiter.retry_after("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.retry_after("a") is None  # the window has passed: a clean slate
    assert limiter.failure("a") is False


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, WINDOW, clock=clock)
    limiter.failure("a")
    limiter.failure("a")
    clock.now += WINDOW + 1
    assert limiter.failure("a") is False
    assert limiter.failure("a") is False
    assert limiter.failure("a") is True


def test_memory_is_bounded() -> None:
    limiter = FailureLimiter(5, WINDOW, clock=FakeClock(), max_clients=100)
    for i in range(10_000):
        limiter.failure(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) <= 100


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        FailureLimiter(0, 10)
    assert FailureLimiter.from_env({"IOE_WEB_AUTH_MAX_FAILURES": "7",
                                    "IOE_WEB_AUTH_WINDOW_S": "30"}).max_failures == 7


# -- wired into the server -----------------------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start(web_settings: Settings, clock: FakeClock) -> Iterator[Callable[..., WebServer]]:
    servers: list[WebServer] = []

    def run(**options: Any) -> WebServer:
        server = WebServer(web_settings, auth_limiter=FailureLimiter(3, WINDOW, clock=clock),
                           **options).start()
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.stop()


def client_from(address: str) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (127.0.0.0/8 is all loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address))


def ws_auth(server: WebServer, token: str, **kw: Any) -> tuple[list[dict[str, Any]], int]:
    """Open the websocket, authenticate, return the frames received and the close code."""
    frames: list[dict[str, Any]] = []
    ws = connect(server.ws_url, open_timeout=10, **kw)
    try:
        with contextlib.suppress(ConnectionClosed):  # a refused socket may be closed already
            ws.send(orjson.dumps({"op": "auth", "token": token}).decode())
        while True:
            frames.append(orjson.loads(ws.recv(timeout=10)))
            if frames[-1]["op"] == "hello":
                ws.close()
    except ConnectionClosed:
        pass
    finally:
        with contextlib.suppress(ConnectionClosed):
            ws.close()
    assert ws.close_code is not None
    return frames, ws.close_code


def test_rest_401s_lead_to_429_until_the_window_passes(
        start: Callable[..., WebServer], clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    server = start()
    good = {"authorization": f"Bearer {server.token()}"}
    caplog.set_level(logging.DEBUG)
    with client_from("127.0.0.1") as http, client_from("127.0.0.2") as other:
        assert http.get(server.url + "/api/me", headers=good).status_code == 200
        for _ in range(3):
            assert http.get(server.url + "/api/me",
                            headers={"authorization": BAD}).status_code == 401
        refused = http.get(server.url + "/api/me", headers=good)  # a valid token, too late
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
        assert refused.json()["error"] == "too_many_auth_failures"
        assert refused.headers["content-security-policy"]  # refusals carry the headers too
        assert http.get(server.url + "/member").status_code == 200  # pages are not guarded
        assert http.get(server.url + "/api/communities/ce-test/overview").status_code == 429
        # another address is not affected
        assert other.get(server.url + "/api/me", headers=good).status_code == 200
        clock.now += 30
        assert http.get(server.url + "/api/me", headers=good).headers["retry-after"] == "30"
        clock.now += 30
        assert http.get(server.url + "/api/me", headers=good).status_code == 200
    assert server.metric("ioe_web_auth_failures_total", {"route": "rest"}) == 3
    assert server.metric("ioe_web_auth_rate_limited_total", {"route": "rest"}) == 3
    assert "BADTOKEN" not in caplog.text
    assert "blocked" in caplog.text and "127.0.0.1" in caplog.text


def test_websocket_auth_failures_count_and_the_socket_is_refused(
        start: Callable[..., WebServer], clock: FakeClock) -> None:
    server = start()
    good = server.token()
    frames, code = ws_auth(server, good)
    assert frames[0]["op"] == "hello" and code == 1000
    for _ in range(2):
        frames, code = ws_auth(server, "BADTOKEN")
        assert code == 4401 and frames[0]["code"] == "invalid_token"
    with client_from("127.0.0.1") as http:  # websocket and REST failures add up
        assert http.get(server.url + "/api/me", headers={"authorization": BAD}).status_code == 401
        assert http.get(server.url + "/api/me",
                        headers={"authorization": f"Bearer {good}"}).status_code == 429
    frames, code = ws_auth(server, good)
    assert code == 1008
    assert frames == [{"op": "error", "code": "too_many_auth_failures",
                       "message": "too many failed authentications from this address; "
                                  "retry after 60 s", "retry_after_s": 60}]
    assert server.metric("ioe_web_auth_failures_total", {"route": "ws"}) == 2
    assert server.metric("ioe_web_auth_rate_limited_total", {"route": "ws"}) == 1
    clock.now += WINDOW
    frames, code = ws_auth(server, good)
    assert frames[0]["op"] == "hello"


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
        start: Callable[..., WebServer]) -> None:
    def xff(address: str) -> dict[str, str]:
        return {"authorization": BAD, "x-forwarded-for": address}

    # not configured: rotating X-Forwarded-For does not escape the limit
    plain = start()
    with httpx.Client() as http:
        for i in range(3):
            assert http.get(plain.url + "/api/me", headers=xff(f"203.0.113.{i}")
                            ).status_code == 401
        assert http.get(plain.url + "/api/me", headers=xff("203.0.113.99")).status_code == 429

    # behind a trusted proxy: each forwarded client is counted on its own
    proxied = start(trusted_proxies=["127.0.0.1"])
    good = {"authorization": f"Bearer {proxied.token()}"}
    with httpx.Client() as http:
        for _ in range(3):
            assert http.get(proxied.url + "/api/me", headers=xff("203.0.113.5")
                            ).status_code == 401
        assert http.get(proxied.url + "/api/me",
                        headers={**good, "x-forwarded-for": "203.0.113.5"}).status_code == 429
        assert http.get(proxied.url + "/api/me",
                        headers={**good, "x-forwarded-for": "203.0.113.6"}).status_code == 200
        # the proxy's own address was never blocked
        assert http.get(proxied.url + "/api/me", headers=good).status_code == 200
    # the websocket through the proxy, same rule
    frames, code = ws_auth(proxied, proxied.token(),
                           additional_headers={"X-Forwarded-For": "203.0.113.5"})
    assert code == 1008 and frames[0]["code"] == "too_many_auth_failures"
