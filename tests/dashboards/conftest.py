"""Fixtures of the dashboards tests: a small registry, token settings, a real uvicorn server.

The server runs the real app (``create_app``) under uvicorn in a thread, on a free port,
consuming the test's private ``ioe.live`` topic and querying the test's ClickHouse database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dash_helpers import REGISTRY_YAML, LiveServer, with_web
from playwright.sync_api import Browser, sync_playwright

from dashboards.hub import Limits
from ioe.registry import load_registry
from ioe.settings import Settings


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY_YAML, encoding="utf-8")
    load_registry(path)  # fail here, clearly, if the test registry itself is wrong
    return path


@pytest.fixture
def web_settings(tmp_path: Path, registry_file: Path) -> Settings:
    """Settings for tests that need no stack (tokens, pure logic)."""
    return with_web(Settings(), tmp_path, registry_file)


@pytest.fixture
def server_factory(tmp_path: Path, registry_file: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(settings: Settings, **options: Any) -> LiveServer:
        server = LiveServer(with_web(settings, tmp_path, registry_file), **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_server(stack_settings: Settings, server_factory: Callable[..., LiveServer]
                ) -> LiveServer:
    """A server on the test's Kafka topics and ClickHouse database."""
    return server_factory(stack_settings, heartbeat_s=1.0,
                          limits=Limits(max_conflations=200, send_timeout_s=3.0))




@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (one per test module)."""
    from browser_helpers import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()
