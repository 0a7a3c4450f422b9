"""Migrations, views and the product's own queries (dashboards/store.py) on both engines: the
18.16 server and the current engine (chdb). Values are from wh_data's hand-worked table."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from wh_data import CID, CUPS1, D1, H0, H1, H2, H3, MARCH_29, load

from dashboards.store import Store
from ioe.clickhouse import (
    TYPE_GATES,
    migrate_engine,
    migration_files,
    parse_version,
    render,
    split_gated,
    split_statements,
)
from ioe.settings import ROOT, get_settings

# The 18.16 DDL as it was before the migrations became templates: it must not change.
HISTORICAL_TYPES = {
    "readings": {"community_id": "String", "device_id": "String", "ts": "DateTime",
                 "ts_ms": "UInt64", "source": "String", "quality": "String",
                 "power_w": "Nullable(Float64)", "energy_wh": "Nullable(Float64)",
                 "energy_returned_wh": "Nullable(Float64)", "interval_s": "Nullable(UInt32)",
                 "interval_energy_wh": "Nullable(Float64)",
                 "interval_energy_returned_wh": "Nullable(Float64)",
                 "voltage_v": "Nullable(Float64)", "current_a": "Nullable(Float64)",
                 "frequency_hz": "Nullable(Float64)", "power_factor": "Nullable(Float64)",
                 "status": "Nullable(String)", "version": "UInt64"},
    "balances": {"community_id": "String", "member_id": "String", "cups": "String",
                 "interval_start": "DateTime", "interval_s": "UInt32", "coefficient": "Float64",
                 "generation_wh": "Float64", "consumption_wh": "Float64",
                 "assigned_wh": "Float64", "self_consumed_wh": "Float64",
                 "surplus_wh": "Float64", "import_wh": "Float64", "source": "String",
                 "complete": "UInt8", "computed_at": "DateTime", "version": "UInt64"},
    "anomalies": {"alarm_id": "String", "community_id": "String", "device_id": "String",
                  "member_id": "String", "kind": "String", "severity": "String",
                  "state": "String", "opened_at": "DateTime", "closed_at": "Nullable(DateTime)",
                  "evidence": "String", "updated_at": "DateTime", "version": "UInt64"},
}


def _columns(warehouse: Any) -> dict[str, dict[str, str]]:
    rows = warehouse.query("SELECT table, name, type FROM system.columns "
                           "WHERE database = %(d)s", {"d": warehouse.db})  # in table order
    found: dict[str, dict[str, str]] = {}
    for table, name, type_ in rows:
        found.setdefault(table, {})[name] = type_
    return found


def test_schema_per_engine(warehouse: Any) -> None:
    columns = _columns(warehouse)
    for table, historical in HISTORICAL_TYPES.items():
        assert list(columns[table]) == list(historical), table  # same names, same order
        if warehouse.engine.version() < (20, 3):
            assert columns[table] == historical, table
        else:
            assert columns[table]["community_id"] == "LowCardinality(String)"
            assert columns[table]["version"] == "UInt64"  # codecs are not part of the type
    if warehouse.engine.version() >= (20, 3):
        assert columns["balances"]["interval_start"] == "DateTime('UTC')"
        codecs = dict(warehouse.query(
            "SELECT name, compression_codec FROM system.columns WHERE database = %(d)s "
            "AND table = 'readings'", {"d": warehouse.db}))
        assert codecs["ts_ms"] == "CODEC(Delta(8), ZSTD(1))"


def test_rendering_for_18_16_is_the_historical_ddl() -> None:
    """Every type token resolves to its legacy type on 18.16, and only tokens are templated."""
    for _, _, path in migration_files():
        text = path.read_text()
        legacy = "\n".join(split_statements(render(text, (18, 16, 1), "db")))
        current = "\n".join(split_statements(render(text, (26, 9), "db")))
        assert "{" not in legacy and "LowCardinality" not in legacy and "CODEC" not in legacy
        undo = current
        for gate in TYPE_GATES:
            assert gate.legacy in legacy or f"{{{gate.token}}}" not in text
            undo = undo.replace(gate.current, gate.legacy)
        assert undo == legacy


def test_unknown_tokens_are_errors() -> None:
    with pytest.raises(ValueError, match="BOGUS"):
        render("CREATE TABLE {db}.t (a {BOGUS}) ENGINE = Memory", (18, 16), "db")


def test_migrations_are_idempotent(warehouse: Any) -> None:
    assert migrate_engine(warehouse.engine, warehouse.db) == []
    done = [r[0] for r in warehouse.query("SELECT version FROM {db}.schema_migrations "
                                          "ORDER BY version")]
    assert done == sorted(set(done))  # each migration recorded once


def test_gated_statements_are_parsed() -> None:
    sql = "CREATE TABLE a (x UInt8) ENGINE = Memory;\n-- requires: access_management\n" \
          "CREATE ROLE IF NOT EXISTS r;\n"
    assert split_gated(sql) == [(None, "CREATE TABLE a (x UInt8) ENGINE = Memory"),
                                ("access_management", "CREATE ROLE IF NOT EXISTS r")]


MONTHS = [("m1", date(2026, 1, 1), 0.9, 0.0, 0.0, 0.0, 0.9, 2),
          ("m2", date(2026, 1, 1), 0.2, 0.0, 0.0, 0.0, 0.2, 2),
          ("m1", date(2026, 2, 1), 0.5, 0.6, 0.2, 0.4, 0.3, 2),
          ("m2", date(2026, 2, 1), 0.7, 0.4, 0.4, 0.0, 0.3, 2)]


@pytest.mark.parametrize("view,period_col", [("member_monthly", "month"),
                                             ("member_daily", "day")])
def test_member_views(warehouse: Any, view: str, period_col: str) -> None:
    load(warehouse)
    rows = warehouse.query(
        f"SELECT member_id, {period_col}, consumption_kwh, assigned_kwh, self_consumed_kwh, "
        f"surplus_kwh, import_kwh, hours FROM {{db}}.{view} WHERE community_id = %(c)s "
        f"ORDER BY {period_col}, member_id", {"c": CID})
    # the data's Madrid days are 31 Jan and 1 Feb: one day per month
    want = MONTHS if view == "member_monthly" else [
        (m, date(2026, 1, 31) if p.month == 1 else p, *rest) for m, p, *rest in MONTHS]
    assert [r[:2] for r in rows] == [w[:2] for w in want]
    for got, expected in zip(rows, want, strict=True):
        assert list(got[2:]) == pytest.approx(list(expected[2:]))


@pytest.mark.parametrize("view,period_col", [("community_monthly", "month"),
                                             ("community_daily", "day")])
def test_community_views(warehouse: Any, view: str, period_col: str) -> None:
    load(warehouse)
    rows = warehouse.query(
        f"SELECT {period_col}, consumption_kwh, assigned_kwh, self_consumed_kwh, surplus_kwh, "
        f"import_kwh FROM {{db}}.{view} WHERE community_id = %(c)s ORDER BY {period_col}",
        {"c": CID})
    assert [list(r[1:]) for r in rows] == [pytest.approx([1.1, 0, 0, 0, 1.1]),
                                           pytest.approx([1.2, 1.0, 0.6, 0.4, 0.6])]


class EngineStore(Store):
    """The product's Store with its SQL sent to a test engine (not a mock: the real queries run
    on a real engine; only the transport differs)."""

    def __init__(self, warehouse: Any) -> None:
        settings = warehouse.settings or dataclasses.replace(
            get_settings(), clickhouse_database=warehouse.db)
        super().__init__(settings)
        self.warehouse = warehouse

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.warehouse.engine.execute(sql, params)  # type: ignore[no-any-return]


def test_store_member_hours(warehouse: Any) -> None:
    load(warehouse)
    hours = EngineStore(warehouse).member_hours(CID, "m2", H0, H3 + 3600)
    assert [h.ts for h in hours] == [H0, H1, H2, H3]
    assert [h.consumption_wh for h in hours] == [100.0, 100.0, 200.0, 500.0]  # v2 wins over 999
    assert [h.source for h in hours] == ["meter", "meter", "datadis", "meter"]
    assert [h.complete for h in hours] == [True, False, True, True]
    assert (hours[3].assigned_wh, hours[3].self_consumed_wh, hours[3].import_wh) == (400, 400, 100)
    assert EngineStore(warehouse).member_cups(CID, "m1", H0, H3 + 3600) == [CUPS1]


def test_store_community_hours(warehouse: Any) -> None:
    load(warehouse)
    rows = EngineStore(warehouse).community_hours(CID, H0, H3 + 3600)
    assert rows == [(H0, 0.0, 600.0, 0.0, 0.0, 0.0, 600.0), (H1, 0.0, 500.0, 0.0, 0.0, 0.0, 500.0),
                    (H2, 0.0, 500.0, 0.0, 0.0, 0.0, 500.0),
                    (H3, 1000.0, 700.0, 1000.0, 600.0, 400.0, 100.0)]


def test_store_last_readings_and_alarms(warehouse: Any) -> None:
    load(warehouse)
    store = EngineStore(warehouse)
    assert store.last_readings(CID, H0) == {D1: (H3 * 1000, None),
                                            "shelly-m1:0": (MARCH_29 * 1000, 100.0)}
    recent = store.alarms(CID, H3)
    assert [a["alarm_id"] for a in recent] == ["a4", "a2", "a1"]
    assert all(a["closed_at_ms"] is None and a["evidence"] == {} for a in recent)
    everything = store.alarms(CID, H0)
    assert {a["alarm_id"] for a in everything} == {"a1", "a2", "a3", "a4"}
    closed = next(a for a in everything if a["alarm_id"] == "a3")
    assert (closed["state"], closed["closed_at_ms"]) == ("closed", (H1 + 1800) * 1000)
    assert [a["alarm_id"] for a in store.alarms(CID, H0, member_id="m2")] == ["a2"]
    assert H2 > H1


def test_compose_image_is_the_engine_the_tests_prove(chdb_engine: Any) -> None:
    """infra/docker-compose.yml runs the ClickHouse release whose engine chdb embeds."""
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    tag = compose["services"]["clickhouse"]["image"].split(":")[1]
    assert parse_version(tag)[:2] == chdb_engine.version()[:2]
    assert Path(ROOT / "infra" / "docker-compose.yml").is_file()
