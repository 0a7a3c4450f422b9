"""The read-only analyst: can SELECT, cannot INSERT, DROP, CREATE or lift its limits.

On 18.16 the analyst is the XML user of infra/clickhouse/users.d (installed by ``ioe stack up``;
the running server reloads users.d by itself). The SQL variant (migration 0003) needs a server
with access management, which neither 18.16 nor chdb is: there it must be skipped cleanly.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from clickhouse_driver.errors import Error as ClickHouseError
from wh_data import Warehouse, load

from devtools.stack import install_clickhouse_users_d
from ioe.clickhouse import ServerEngine, client, migrate_engine, supports
from ioe.settings import Settings

ANALYST = ("analyst", "ioe-analyst-local")


def _analyst(settings: Settings) -> Any:
    """Connect as the analyst, waiting for the server to reload users.d (every few seconds)."""
    install_clickhouse_users_d(settings.local_dir / "clickhouse")
    deadline = time.monotonic() + 60
    while True:
        ch = client(settings, database=settings.clickhouse_database, user=ANALYST[0],
                    password=ANALYST[1])
        try:
            ch.execute("SELECT 1")
            return ch
        except ClickHouseError:
            ch.disconnect()
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.stack
def test_analyst_reads_but_cannot_write(ch_settings: Settings) -> None:
    admin = client(ch_settings)
    db = ch_settings.clickhouse_database
    load(Warehouse(ServerEngine(admin), db, ch_settings))
    ch = _analyst(ch_settings)
    try:
        assert ch.execute(f"SELECT count() FROM {db}.balances FINAL WHERE interval_s = 3600") \
            == [(8,)]
        limits = dict(ch.execute("SELECT name, value FROM system.settings WHERE name IN "
                                 "('readonly', 'max_execution_time', 'max_memory_usage')"))
        assert limits == {"readonly": "1", "max_execution_time": "60",
                          "max_memory_usage": "2000000000"}
        refused = [f"INSERT INTO {db}.balances (community_id) VALUES ('x')",
                   f"DROP TABLE {db}.balances",
                   f"CREATE TABLE {db}.mine (a UInt8) ENGINE = Memory",
                   f"ALTER TABLE {db}.balances DELETE WHERE 1",
                   "SET max_execution_time = 0"]
        for sql in refused:
            with pytest.raises(ClickHouseError) as caught:
                ch.execute(sql)
            assert "readonly" in str(caught.value).lower(), sql
    finally:
        ch.disconnect()
    # nothing changed
    assert admin.execute(f"SELECT count() FROM {db}.balances") == [(11,)]
    assert {r[0] for r in admin.execute(f"SHOW TABLES FROM {db}")} >= {"balances"}
    admin.disconnect()


def test_sql_access_control_is_skipped_where_unsupported(warehouse: Any) -> None:
    """Neither engine here can manage access: 0003 ran nothing and is still pending."""
    assert not supports(warehouse.engine, "access_management")
    done = {r[0] for r in warehouse.query("SELECT version FROM {db}.schema_migrations")}
    assert 3 not in done and {1, 2} <= done
    assert migrate_engine(warehouse.engine, warehouse.db) == []
