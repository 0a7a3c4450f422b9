"""Shared fixtures: the real local stack, with a private namespace per test.

Every test that touches Kafka gets its own topic prefix, and every test that touches ClickHouse
its own database, so tests never see each other's data and can run in any order.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest

from devtools import stack
from ioe.settings import Settings, get_settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the real servers (through ``local_stack`` and the fixtures built on
    it) is marked ``stack``, so ``pytest -m 'not stack' tests/streams/energy`` runs the pure
    tests in seconds on a machine without servers."""
    for item in items:
        if "local_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def local_stack() -> Settings:
    """The running stack; started here if `make test` did not start it already."""
    settings = get_settings()
    stack.up(settings, out=lambda line: None)
    return settings


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_settings(local_stack: Settings, unique_id: str) -> Settings:
    """Settings with a private topic prefix; the design's topics exist (3 partitions each)."""
    from ioe.kafka import ensure_topics

    settings = dataclasses.replace(local_stack, topic_prefix=f"t{unique_id}.", partitions=3)
    ensure_topics(settings)
    return settings


@pytest.fixture
def ch_settings(local_stack: Settings, unique_id: str) -> Iterator[Settings]:
    """Settings pointing at a private, migrated ClickHouse database, dropped afterwards."""
    from ioe.clickhouse import client, migrate

    settings = dataclasses.replace(local_stack, clickhouse_database=f"t_{unique_id}")
    migrate(settings)
    yield settings
    ch = client(settings)
    ch.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    ch.disconnect()


@pytest.fixture
def stack_settings(kafka_settings: Settings, unique_id: str) -> Iterator[Settings]:
    """Kafka topics and a ClickHouse database, both private to the test."""
    from ioe.clickhouse import client, migrate

    settings = dataclasses.replace(kafka_settings, clickhouse_database=f"t_{unique_id}")
    migrate(settings)
    yield settings
    ch = client(settings)
    ch.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    ch.disconnect()
