"""Engine-parametrised fixtures: every warehouse test runs on the 18.16 server AND on the current
engine (chdb, in-process), each in a private migrated database."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioe.clickhouse import Engine, ServerEngine, client, migrate_engine
from ioe.settings import Settings

# The test directory shares the name of the ``warehouse`` package: put the project root first so
# ``import warehouse`` is the package, not this directory as a namespace package.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2]))

from wh_data import Warehouse  # noqa: E402

ENGINES = [pytest.param("server", marks=pytest.mark.stack, id="ch18"),
           pytest.param("chdb", id="chdb")]


@pytest.fixture(scope="session")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """One embedded engine for the session (chdb allows one data path per process)."""
    from warehouse.engines import ChdbEngine

    return ChdbEngine(str(tmp_path_factory.mktemp("chdb")))


def _freeze(engine: Engine, db: str) -> None:
    """Stop background merges of the private tables: a merge would deduplicate the replayed
    rows behind the test's back, and a query that forgot FINAL would still pass."""
    for table in ("readings", "balances", "anomalies"):
        engine.execute(f"SYSTEM STOP MERGES {db}.{table}")


@pytest.fixture(params=ENGINES)
def warehouse(request: pytest.FixtureRequest, unique_id: str) -> Iterator[Warehouse]:
    db = f"t_{unique_id}"
    if request.param == "chdb":
        engine = request.getfixturevalue("chdb_engine")
        migrate_engine(engine, db)
        _freeze(engine, db)
        yield Warehouse(engine, db, None)
        engine.execute(f"DROP DATABASE IF EXISTS {db}")
        return
    local: Settings = request.getfixturevalue("local_stack")
    settings = dataclasses.replace(local, clickhouse_database=db)
    ch = client(settings)
    engine = ServerEngine(ch)
    migrate_engine(engine, db)
    _freeze(engine, db)
    try:
        yield Warehouse(engine, db, settings)
    finally:
        ch.execute(f"DROP DATABASE IF EXISTS {db}")
        ch.disconnect()
