"""Exports of a community's readings, balances or alarms to Parquet or CSV, streamed in chunks.

Why streamed: a year of a large community is tens of millions of readings; rows are read with
clickhouse-driver's ``execute_iter`` (the server sends blocks as it goes) and written a chunk at a
time (a Parquet row group, or CSV lines), so memory stays flat. Every export reads with
``FINAL``: a replayed or re-versioned row appears once, so the file's totals are ClickHouse's.

Times leave as UTC instants (Parquet ``timestamp(tz=UTC)``, CSV ISO 8601 with ``Z``); the
``--from``/``--to`` days are calendar days of ``--tz`` (the community's zone, default
Europe/Madrid), ``--to`` inclusive.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

RowSource = Callable[[str, Mapping[str, Any], int], Iterator[tuple[Any, ...]]]


@dataclass(frozen=True)
class Column:
    name: str
    sql: str
    kind: str  # a key of KINDS


# kind → (Arrow type, CSV text of a non-null value)
KINDS: dict[str, tuple[pa.DataType, Callable[[Any], str]]] = {
    "str": (pa.string(), str),
    "int": (pa.int64(), lambda v: str(int(v))),
    "float": (pa.float64(), repr),
    "bool": (pa.bool_(), lambda v: "true" if v else "false"),
    "time_s": (pa.timestamp("s", tz="UTC"),
               lambda v: datetime.fromtimestamp(int(v), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
    "time_ms": (pa.timestamp("ms", tz="UTC"),
                lambda v: datetime.fromtimestamp(int(v) / 1000, UTC)
                .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
}


@dataclass(frozen=True)
class Dataset:
    table: str
    time_filter: str  # the column the day range applies to
    columns: tuple[Column, ...]
    order_by: str


def _cols(spec: str) -> tuple[Column, ...]:
    """``name:kind`` or ``name=sql:kind`` items, space separated (a compact table). ClickHouse
    aliases are visible in WHERE: an alias may shadow the filtered time column only with the
    same epoch seconds (``interval_start=toUInt32(interval_start)``), hence ``ts_utc`` for the
    milliseconds of readings."""
    columns = []
    for item in spec.split():
        head, kind = item.rsplit(":", 1)
        name, _, sql = head.partition("=")
        columns.append(Column(name, sql or name, kind))
    return tuple(columns)


DATASETS: dict[str, Dataset] = {
    "readings": Dataset("readings", "ts", _cols(
        "community_id:str device_id:str ts_utc=ts_ms:time_ms ts_ms:int source:str quality:str "
        "power_w:float energy_wh:float energy_returned_wh:float interval_s:int "
        "interval_energy_wh:float interval_energy_returned_wh:float voltage_v:float "
        "current_a:float frequency_hz:float power_factor:float status:str version:int"),
        "device_id, ts_ms"),
    "balances": Dataset("balances", "interval_start", _cols(
        "community_id:str member_id:str cups:str interval_start=toUInt32(interval_start):time_s "
        "interval_s:int coefficient:float generation_wh:float consumption_wh:float "
        "assigned_wh:float self_consumed_wh:float surplus_wh:float import_wh:float source:str "
        "complete:bool computed_at=toUInt32(computed_at):time_s version:int"),
        "member_id, interval_s, interval_start"),
    "alarms": Dataset("anomalies", "opened_at", _cols(
        "alarm_id:str community_id:str device_id:str member_id:str kind:str severity:str "
        "state:str opened_at=toUInt32(opened_at):time_s closed_at=toUInt32(closed_at):time_s "
        "evidence:str updated_at=toUInt32(updated_at):time_s version:int"),
        "opened_at, alarm_id"),
}
FORMATS = ("parquet", "csv")


def utc_bounds(first: date, last: date, tz: str) -> tuple[int, int]:
    """[start of ``first``, start of the day after ``last``) in ``tz``, as UTC epoch seconds."""
    zone = ZoneInfo(tz)
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    return int(start.timestamp()), int(end.timestamp())


def export_sql(dataset: Dataset, db: str) -> tuple[str, str]:
    """(the streaming SELECT, its COUNT) for parameters community, a, b (epoch seconds)."""
    where = (f"FROM {db}.{dataset.table} FINAL WHERE community_id = %(community)s "
             f"AND {dataset.time_filter} >= toDateTime(%(a)s) "
             f"AND {dataset.time_filter} < toDateTime(%(b)s)")
    select = ", ".join(f"{c.sql} AS {c.name}" if c.sql != c.name else c.name
                       for c in dataset.columns)
    return (f"SELECT {select} {where} ORDER BY {dataset.order_by}",
            f"SELECT count() {where}")


class Progress:
    """A tqdm bar on a terminal; plain lines (at most one per ``every_s``) in logs and pipes."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 every_s: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self._last = 0.0
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="rows", desc=label, file=self.stream)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            pct = 100.0 * self.done / self.total if self.total else 100.0
            print(f"{self.label}: {self.done}/{self.total} rows ({pct:.0f}%)", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _chunks(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _arrow_batch(columns: tuple[Column, ...], chunk: list[tuple[Any, ...]],
                 schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for i, column in enumerate(columns):
        values = [row[i] for row in chunk]
        if column.kind == "bool":
            values = [None if v is None else bool(v) for v in values]
        arrays.append(pa.array(values, type=schema.field(column.name).type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write(rows: Iterable[tuple[Any, ...]], dataset: Dataset, fmt: str, out: Path,
          progress: Progress, chunk_rows: int) -> int:
    """Write rows chunk by chunk; returns how many. A partial file never replaces ``out``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    columns = dataset.columns
    tmp = out.with_name(out.name + ".part")
    written = 0
    if fmt == "parquet":
        schema = pa.schema([(c.name, KINDS[c.kind][0]) for c in columns])
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for chunk in _chunks(rows, chunk_rows):
                writer.write_batch(_arrow_batch(columns, chunk, schema))
                written += len(chunk)
                progress.update(len(chunk))
            if written == 0:
                writer.write_table(schema.empty_table())
    else:
        texts = [KINDS[c.kind][1] for c in columns]
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            out_csv = csv.writer(handle)
            out_csv.writerow([c.name for c in columns])
            for chunk in _chunks(rows, chunk_rows):
                out_csv.writerows([["" if v is None else f(v) for f, v in
                                    zip(texts, row, strict=True)] for row in chunk])
                written += len(chunk)
                progress.update(len(chunk))
    tmp.replace(out)
    return written


def export(source: RowSource, count: Callable[[str, Mapping[str, Any]], int], db: str, *,
           community: str, what: str, first: date, last: date, fmt: str, out: Path,
           tz: str = "Europe/Madrid", chunk_rows: int = 50_000,
           stream: TextIO | None = None) -> int:
    """Export one dataset of one community and day range; returns the number of rows."""
    if what not in DATASETS:
        raise ValueError(f"--what must be one of {', '.join(DATASETS)}")
    if last < first:
        raise ValueError("--to is before --from")
    dataset = DATASETS[what]
    a, b = utc_bounds(first, last, tz)
    params = {"community": community, "a": a, "b": b}
    select, counting = export_sql(dataset, db)
    progress = Progress(count(counting, params), f"export {what}", stream)
    try:
        return write(source(select, params, chunk_rows), dataset, fmt, out, progress, chunk_rows)
    finally:
        progress.close()
