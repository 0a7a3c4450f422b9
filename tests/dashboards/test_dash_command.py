"""``ioe web`` as a real process: it serves health, the OpenAPI document and the clients, and
follows the ``ioe.registry`` topic (a community published there becomes usable live)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from dash_helpers import free_port, wait_for, with_web
from websockets.sync.client import connect

from dashboards import tokens
from ioe.kafka import make_producer
from ioe.registry import load_registry
from ioe.settings import ROOT, Settings
from ioe.topics import REGISTRY

pytestmark = pytest.mark.stack


@pytest.fixture
def web_process(kafka_settings: Settings, tmp_path: Path, registry_file: Path
                ) -> Iterator[tuple[str, Settings]]:
    settings = with_web(kafka_settings, tmp_path, registry_file)
    port = free_port()
    env = {**os.environ, "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_TOKEN_SECRET": settings.token_secret, "IOE_LOCAL_DIR": str(settings.local_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ioe.cli", "web", "--port", str(port), "--registry",
         str(registry_file)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(url + "/health", timeout=2).json()["live"]["consuming"]
        except httpx.HTTPError:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            return False

    try:
        wait_for(healthy, 60, "ioe web to start")
        yield url, settings
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
        assert settings.token_secret not in output  # no secrets in logs


def test_ioe_web_serves_clients_and_follows_the_registry_topic(
        web_process: tuple[str, Settings]) -> None:
    url, settings = web_process
    for path, marker in (("/member", 'data-layout="mobile"'), ("/tablet", 'data-layout="tablet"'),
                         ("/control", 'id="members-table"'), ("/", 'id="token-form"')):
        response = httpx.get(url + path)
        assert response.status_code == 200 and marker in response.text, path
    js = httpx.get(url + "/static/common.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx.get(url + "/openapi.json").json()["info"]["title"]

    # a new community published to ioe.registry is followed without a restart
    community = load_registry(settings.registry_path).community("ce-other")
    assert community is not None
    renamed = community.to_dict() | {"id": "ce-new", "name": "Nueva"}
    renamed["devices"] = [d | {"community_id": "ce-new"} for d in renamed["devices"]]
    producer = make_producer(settings)
    producer.send(settings.topic(REGISTRY), key="ce-new", value=orjson.dumps(renamed))
    producer.flush(30)
    producer.close()
    wait_for(lambda: "ce-new" in httpx.get(url + "/health").json()["communities"],
             what="the registry update")
    token, _ = tokens.issue(settings, role="member", communities=["ce-new"], member_id="x1")
    with connect(url.replace("http", "ws") + "/ws") as ws:
        ws.send(orjson.dumps({"op": "auth", "token": token}).decode())
        assert orjson.loads(ws.recv(timeout=10))["op"] == "hello"
        ws.send(orjson.dumps({"op": "subscribe", "channel": "member:ce-new:x1"}).decode())
        assert orjson.loads(ws.recv(timeout=10))["op"] == "snapshot"
