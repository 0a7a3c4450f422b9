"""Fixtures of the Modbus edge tests: simulated devices on loopback, a small registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from connectors.modbus_edge.simserver import SimServer


@pytest.fixture
def modbus_server() -> Iterator[Callable[..., SimServer]]:
    """Start real pymodbus servers: ``modbus_server({unit: image}, on_read=…)``."""
    started: list[SimServer] = []

    def start(images: dict[int, dict[int, int]], **kwargs: object) -> SimServer:
        server = SimServer(images, **kwargs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
