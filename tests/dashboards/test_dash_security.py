"""Hardening of ``ioe web`` as a real process (issue 16): what reaches its logs, and who may
open its websocket.

- Credentials in URLs (``?token=``, ``?access_token=``) never appear in the access log, for
  HTTP requests and websocket handshakes alike (the server does not accept them either).
- A client-supplied string with a line break (a websocket channel name) writes one line with
  the break escaped, never a forged second line.
- The websocket ``Origin`` allow-list: the server's own host and the configured origins
  (``IOE_WEB_ORIGINS``, ``--allow-origin``) are accepted; any other page is refused with close
  code 4403, an error frame, a log line and a counter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from dash_helpers import CID, free_port, wait_for, with_web
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from dashboards import tokens
from dashboards.ws import origin_allowed
from ioe.settings import ROOT, Settings

pytestmark = pytest.mark.stack

URL_SECRETS = ("URLSECRET1", "URLSECRET2", "URLSECRET3", "URLSECRET4")
ENV_ORIGIN = "https://panel.example.org"
FLAG_ORIGIN = "https://tablet.example.net:8443"


class WebProcess:
    def __init__(self, url: str, settings: Settings, process: subprocess.Popen[bytes]) -> None:
        self.url, self.settings, self.process = url, settings, process
        self.ws_url = url.replace("http", "ws") + "/ws"
        self.output = ""

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            self.output = self.process.communicate(timeout=30)[0].decode()
        return self.output


@pytest.fixture
def web(kafka_settings: Settings, tmp_path: Path, registry_file: Path) -> Iterator[WebProcess]:
    settings = with_web(kafka_settings, tmp_path, registry_file)
    port = free_port()
    env = {**os.environ, "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_TOKEN_SECRET": settings.token_secret, "IOE_LOCAL_DIR": str(settings.local_dir),
           "IOE_WEB_ORIGINS": ENV_ORIGIN}
    process = subprocess.Popen(
        [sys.executable, "-m", "ioe.cli", "web", "--port", str(port), "--registry",
         str(registry_file), "--allow-origin", FLAG_ORIGIN], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    web = WebProcess(f"http://127.0.0.1:{port}", settings, process)

    def healthy() -> bool:
        try:
            return httpx.get(web.url + "/health", timeout=2).json()["live"]["consuming"]
        except httpx.HTTPError:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            return False

    try:
        wait_for(healthy, 60, "ioe web to start")
        yield web
    finally:
        web.stop()


def operator_token(web: WebProcess) -> str:
    return tokens.issue(web.settings, role="operator", communities=[CID])[0]


def test_credentials_in_urls_never_reach_the_log(web: WebProcess) -> None:
    one, two, three, four = URL_SECRETS
    assert httpx.get(f"{web.url}/health?token={one}").status_code == 200
    # a token in the URL is not accepted: REST wants Authorization: Bearer
    refused = httpx.get(f"{web.url}/api/me?access_token={two}&x=1")
    assert refused.status_code == 401
    with connect(f"{web.ws_url}?token={three}") as ws:
        ws.send(orjson.dumps({"op": "subscribe", "channel": f"community:{CID}"}).decode())
        assert orjson.loads(ws.recv(timeout=10))["code"] == "auth_required"
    with connect(f"{web.ws_url}?a=b&access_token={four}") as ws:
        ws.send(orjson.dumps({"op": "auth", "token": operator_token(web)}).decode())
        assert orjson.loads(ws.recv(timeout=10))["op"] == "hello"
    output = web.stop()
    # the access log did log these requests, with the credentials blanked out
    assert re.search(r'"GET /health\?token=\[REDACTED\] HTTP/1\.1" 200', output), output
    assert re.search(r"/api/me\?access_token=\[REDACTED\]&x=1", output), output
    assert "/ws?token=[REDACTED]" in output, output
    for secret in URL_SECRETS:
        assert secret not in output
    assert web.settings.token_secret not in output


def test_a_line_break_in_a_channel_name_cannot_forge_a_log_line(web: WebProcess) -> None:
    forged = "INFO dashboards.ws: operator of ce-test logged in as root"
    with connect(web.ws_url) as ws:
        ws.send(orjson.dumps({"op": "auth", "token": operator_token(web)}).decode())
        assert orjson.loads(ws.recv(timeout=10))["op"] == "hello"
        ws.send(orjson.dumps({"op": "subscribe",
                              "channel": f"community:nowhere\n{forged}\r\x1b[2J"}).decode())
        error = orjson.loads(ws.recv(timeout=10))
        assert error["op"] == "error" and error["code"] == "forbidden"
    output = web.stop()
    lines = [line for line in output.splitlines() if "logged in as root" in line]
    assert len(lines) == 1, output  # one line: the refusal, with the break escaped in it
    assert "refused operator of ce-test" in lines[0]
    assert f"community:nowhere\\n{forged}\\r\\x1b[2J" in lines[0]
    assert not any(line.startswith(forged) for line in output.splitlines())
    assert "\x1b" not in output


ORIGIN_CASES = [
    (None, True),                                     # not a browser page
    ("self", True),                                   # the server's own host
    (ENV_ORIGIN, True),                               # IOE_WEB_ORIGINS
    (FLAG_ORIGIN.upper() + "/", True),                # --allow-origin (case, trailing /)
    ("https://evil.example.com", False),
    ("https://panel.example.org.evil.example.com", False),
    ("null", False),                                  # sandboxed frames, file:// pages
]


def test_websocket_origin_allow_list(web: WebProcess) -> None:
    refused = []
    for origin, allowed in ORIGIN_CASES:
        header = web.url if origin == "self" else origin
        with connect(web.ws_url, origin=header) as ws:  # type: ignore[arg-type]
            if allowed:
                ws.send(orjson.dumps({"op": "auth", "token": operator_token(web)}).decode())
                assert orjson.loads(ws.recv(timeout=10))["op"] == "hello", origin
                continue
            error = orjson.loads(ws.recv(timeout=10))
            assert error["op"] == "error" and error["code"] == "origin_not_allowed", origin
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            refused.append(header)
    metrics = httpx.get(web.url + "/metrics").text
    assert re.search(r'ioe_web_refusals_total\{code="origin_not_allowed",route="ws"\} 3\.0',
                     metrics), metrics
    output = web.stop()
    for header in refused:
        assert f"origin {header!r} may not open this websocket" in output, output


def test_origin_rule() -> None:
    """The rule on its own: exact origins, the server's own host, ``*``."""
    host = "dash.example.org"
    assert origin_allowed(None, host, [])
    assert origin_allowed("https://dash.example.org", host, [])
    assert not origin_allowed("https://dash.example.org", "other.example.org", [])
    assert not origin_allowed("https://dash.example.org:444", host, [])
    assert origin_allowed("http://a.example", host, ["http://a.example/"])
    assert not origin_allowed("http://a.example:81", host, ["http://a.example"])
    assert origin_allowed("https://anything.example", host, ["*"])
    assert not origin_allowed("", host, [])
    assert not origin_allowed("dash.example.org", host, [])  # not an origin at all
