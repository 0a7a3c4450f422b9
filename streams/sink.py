"""The ClickHouse sink: readings, balances, anomalies and command results in batches, at least
once, idempotent.

A plain aiokafka consumer group (``<app id>-sink``) rather than a Faust agent, because the
guarantee we need is simple and must be explicit: offsets are committed *only after* the
insert of everything fetched so far succeeded. A crash between insert and commit replays the
batch, which is harmless: every table is a ``ReplacingMergeTree(version)`` keyed by its natural
key, and a replayed row carries the same version (a reading's ``ts_ms``, a balance's
``version``), so queries with ``FINAL`` see it once. Faust's exactly-once is not relied on.

Several workers share the sink's partitions like any consumer group; an insert that fails is
retried with back-off (the rows stay in memory, the offsets stay uncommitted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.errors import CommitFailedError
from prometheus_client import CollectorRegistry, Counter

from ioe.clickhouse import client as ch_client
from ioe.kafka import make_async_consumer
from ioe.messages import (
    ALARM_COLUMNS,
    BALANCE_COLUMNS,
    COMMAND_RESULT_TABLE_COLUMNS,
    READING_COLUMNS,
    Alarm,
    Balance,
    Column,
    CommandResult,
    MessageError,
    column_names,
    command_result_row,
    row,
)
from ioe.reading import Reading, ReadingError
from ioe.registry import Registry
from ioe.settings import Settings
from ioe.topics import ANOMALIES, BALANCES, COMMAND_RESULTS, READINGS

log = logging.getLogger(__name__)

#: ClickHouse table -> its column names, derived from the message types (ioe/messages.py).
#: Command results are here so that every executor's result is stored whether or not an
#: ``ioe control`` process is running (its own follower reads from the topic's end only).
TABLES: dict[str, tuple[str, ...]] = {
    "readings": column_names(READING_COLUMNS), "balances": column_names(BALANCE_COLUMNS),
    "anomalies": column_names(ALARM_COLUMNS), "command_results": COMMAND_RESULT_TABLE_COLUMNS}


class Sink:
    def __init__(self, settings: Settings, registry: Registry, *, group_id: str,
                 batch_size: int = 5000, flush_s: float = 1.0,
                 metrics: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.group_id = group_id
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.metrics = metrics or CollectorRegistry()
        self.rows_written = Counter("ioe_sink_rows", "rows inserted into ClickHouse",
                                    ["table"], registry=self.metrics)
        self.skipped = Counter("ioe_sink_skipped", "messages the sink could not map to a row",
                               ["topic"], registry=self.metrics)
        self.insert_errors = Counter("ioe_sink_insert_errors", "failed ClickHouse inserts",
                                     registry=self.metrics)
        self._topics = {
            settings.topic(READINGS): ("readings", self._reading),
            settings.topic(BALANCES): ("balances", self._typed(Balance.decode, BALANCE_COLUMNS)),
            settings.topic(ANOMALIES): ("anomalies", self._typed(Alarm.decode, ALARM_COLUMNS)),
            settings.topic(COMMAND_RESULTS): ("command_results", self._command_result),
        }

    # -- mapping ------------------------------------------------------------------------------
    def _reading(self, value: bytes) -> tuple[Any, ...] | None:
        """Valid readings of known devices; the readings agent dead-letters the others."""
        try:
            reading = Reading.from_json(value)
        except ReadingError:
            return None
        device = self.registry.device(reading.device_id)
        if device is None:
            return None
        return row(reading.with_community(device.community_id), READING_COLUMNS)

    @staticmethod
    def _command_result(value: bytes) -> tuple[Any, ...] | None:
        try:
            return command_result_row(CommandResult.decode(value))
        except (MessageError, KeyError, TypeError, ValueError):
            return None

    @staticmethod
    def _typed(decode: Callable[[bytes], object], columns: tuple[Column, ...]
               ) -> Callable[[bytes], tuple[Any, ...] | None]:
        def convert(value: bytes) -> tuple[Any, ...] | None:
            try:
                return row(decode(value), columns)
            except (MessageError, KeyError, TypeError, ValueError):
                return None
        return convert

    # -- loop ---------------------------------------------------------------------------------
    async def run(self, ready: asyncio.Event | None = None) -> None:
        if ready is not None:
            await ready.wait()  # readings of unknown communities are only known after the registry
        consumer = make_async_consumer(self.settings, group_id=self.group_id,
                                       auto_offset_reset="earliest",
                                       max_poll_records=self.batch_size)
        consumer.subscribe(list(self._topics))
        await consumer.start()
        rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
        first_at: float | None = None
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                for tp, messages in batch.items():
                    table, convert = self._topics[tp.topic]
                    for message in messages:
                        values = convert(message.value) if message.value is not None else None
                        if values is None:
                            self.skipped.labels(tp.topic).inc()
                            continue
                        rows[table].append(values)
                if batch and first_at is None:
                    first_at = time.monotonic()
                count = sum(len(r) for r in rows.values())
                if first_at is None:
                    continue
                if count >= self.batch_size or time.monotonic() - first_at >= self.flush_s:
                    await self._insert_all(rows)
                    try:
                        await consumer.commit()
                    except CommitFailedError as exc:  # rebalanced: the new owner replays
                        log.warning("sink commit failed after insert (harmless replay): %s", exc)
                    rows = {name: [] for name in TABLES}
                    first_at = None
        finally:
            await consumer.stop()

    async def _insert_all(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self._insert_sync, rows)
                return
            except Exception as exc:
                self.insert_errors.inc()
                log.error("ClickHouse insert failed (will retry in %.1fs): %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _insert_sync(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        db = self.settings.clickhouse_database
        ch = ch_client(self.settings)
        try:
            for table, batch in rows.items():
                if not batch:
                    continue
                columns = ", ".join(TABLES[table])
                ch.execute(f"INSERT INTO {db}.{table} ({columns}) VALUES", batch)
                self.rows_written.labels(table).inc(len(batch))
        finally:
            ch.disconnect()
