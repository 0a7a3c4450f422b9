"""``ioe export`` round trips: Parquet and CSV files hold ClickHouse's FINAL totals (replays and
old versions once), on both engines, and the command end to end on the server."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from wh_data import CID, D1, H0, load

from ioe.cli import main
from warehouse.export import DATASETS, Progress, export, utc_bounds

DAYS = (date(2026, 1, 31), date(2026, 2, 1))  # Madrid days: h0..h3 (and not 29 March)


def _run(warehouse: Any, what: str, fmt: str, out: Path, chunk_rows: int = 3) -> int:
    engine = warehouse.engine

    def source(sql: str, params: Mapping[str, Any], chunk: int) -> Iterator[tuple[Any, ...]]:
        if engine.name == "server":  # the command's own path: blocks streamed by the server
            return engine.ch.execute_iter(sql, dict(params), settings={"max_block_size": chunk})
        return iter(engine.execute(sql, params))

    def count(sql: str, params: Mapping[str, Any]) -> int:
        return int(engine.execute(sql, params)[0][0])

    return export(source, count, warehouse.db, community=CID, what=what, first=DAYS[0],
                  last=DAYS[1], fmt=fmt, out=out, chunk_rows=chunk_rows, stream=io.StringIO())


def _read(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _num(v: Any) -> float:
    return float(v) if v not in (None, "") else 0.0


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_balances_round_trip(warehouse: Any, tmp_path: Path, fmt: str) -> None:
    load(warehouse)
    out = tmp_path / f"b.{fmt}"
    assert _run(warehouse, "balances", fmt, out) == 9  # 8 member-hours + one 15-min row
    rows = _read(out, fmt)
    assert len(rows) == 9
    a, b = utc_bounds(*DAYS, "Europe/Madrid")
    (expected,) = warehouse.query(
        "SELECT sum(consumption_wh), sum(import_wh), sum(self_consumed_wh) FROM {db}.balances "
        "FINAL WHERE community_id = %(c)s AND interval_start >= toDateTime(%(a)s) "
        "AND interval_start < toDateTime(%(b)s)", {"c": CID, "a": a, "b": b})
    # by hand: hourly C = 900 + 200 + 500 + 700, plus the 15-minute row's 9999
    assert expected[0] == pytest.approx(2300 + 9999)
    got = [sum(_num(r[k]) for r in rows) for k in ("consumption_wh", "import_wh",
                                                    "self_consumed_wh")]
    assert got == pytest.approx(list(expected))
    m2_h0 = [r for r in rows if r["member_id"] == "m2" and int(r["interval_s"]) == 3600
             and (r["interval_start"].timestamp() if fmt == "parquet"
                  else r["interval_start"] == "2026-01-31T21:00:00Z") in (H0, True)]
    assert len(m2_h0) == 1 and _num(m2_h0[0]["consumption_wh"]) == 100.0  # version 2, not 999
    assert [r["version"] for r in m2_h0] in ([2], ["2"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_readings_and_alarms_round_trip(warehouse: Any, tmp_path: Path, fmt: str) -> None:
    load(warehouse)
    readings = tmp_path / f"r.{fmt}"
    assert _run(warehouse, "readings", fmt, readings) == 8  # the replayed Datadis row once
    rows = _read(readings, fmt)
    assert sum(_num(r["interval_energy_wh"]) for r in rows if r["device_id"] == D1) == 1450.0
    assert [r["device_id"] for r in rows] == [D1] * 4 + ["shelly-m1:0"] * 4
    alarms = tmp_path / f"a.{fmt}"
    assert _run(warehouse, "alarms", fmt, alarms) == 4
    states = {r["alarm_id"]: r["state"] for r in _read(alarms, fmt)}
    assert states == {"a1": "open", "a2": "open", "a3": "closed", "a4": "open"}


def test_parquet_types() -> None:
    """Times are UTC instants; the schema is the dataset table's."""
    from warehouse.export import KINDS

    schema = {c.name: KINDS[c.kind][0] for c in DATASETS["balances"].columns}
    assert str(schema["interval_start"]) == "timestamp[s, tz=UTC]"
    assert str(schema["complete"]) == "bool"


def test_progress_lines_without_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(10, "export x", stream, every_s=0.0)
    progress.update(4)
    progress.update(6)
    assert stream.getvalue().splitlines() == ["export x: 4/10 rows (40%)",
                                              "export x: 10/10 rows (100%)"]


@pytest.mark.stack
def test_command_end_to_end(ch_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from wh_data import Warehouse

    from ioe.clickhouse import ServerEngine, client

    ch = client(ch_settings)
    load(Warehouse(ServerEngine(ch), ch_settings.clickhouse_database, ch_settings))
    ch.disconnect()
    monkeypatch.setenv("IOE_CLICKHOUSE_DB", ch_settings.clickhouse_database)
    out = tmp_path / "balances.parquet"
    code = main(["export", "--community", CID, "--from", "2026-01-31", "--to", "2026-02-01",
                 "--what", "balances", "--out", str(out), "--chunk-rows", "4"])
    assert code == 0
    captured = capsys.readouterr()
    assert "exported 9 balances rows" in captured.out
    assert "export balances: 9/9 rows (100%)" in captured.err  # plain progress: not a terminal
    table = pq.read_table(out)
    assert table.num_rows == 9
    assert not (tmp_path / "balances.parquet.part").exists()
    assert main(["export", "--community", CID, "--from", "2026-02-02", "--to", "2026-02-01",
                 "--what", "balances", "--out", str(tmp_path / "x.csv")]) == 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    stream = _Tty()
    progress = Progress(10, "export x", stream, every_s=0.0)
    progress.update(10)
    progress.close()
    text = stream.getvalue()
    assert "10/10" in text and "\r" in text  # tqdm's bar, not the plain lines
    assert "rows (100%)" not in text
