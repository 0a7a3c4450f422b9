"""Commands and results on Kafka: send one and wait for its result; the executors' loop.

The executor loop (:class:`ExecutorLoop`) is what a connector runs to act on ``ioe.commands``:
it reads with its own consumer group and committed offsets, so an edge that was offline picks
up the commands sent meanwhile — and answers ``expired`` for every one whose deadline passed,
without touching the device. A command is never executed late by surprise. Dry-run commands
and commands for devices the connector does not own are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from ioe.kafka import make_producer
from ioe.messages import Command, CommandResult, CommandStatus, MessageError
from ioe.settings import Settings
from ioe.topics import COMMAND_RESULTS, COMMANDS

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def send_command(producer: Any, settings: Settings, command: Command) -> None:
    """Send and wait for the broker's acknowledgement (a command is never silently lost)."""
    producer.send(settings.topic(COMMANDS), key=command.community_id,
                  value=command.encode()).get(timeout=30)


def send_result(producer: Any, settings: Settings, result: CommandResult) -> None:
    producer.send(settings.topic(COMMAND_RESULTS), key=result.community_id,
                  value=result.encode()).get(timeout=30)


class ResultWatcher:
    """Follows ``ioe.command-results`` from *now* (all partitions, no group), so results of
    commands sent after :meth:`start` are never missed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                      group_id=None, enable_auto_commit=False)
        topic = settings.topic(COMMAND_RESULTS)
        partitions = self.consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + 20
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = self.consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(assigned)
        self.consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the end offsets now, before the command is sent
            self.consumer.position(tp)

    def wait(self, command_ids: set[str], until_ms: int) -> dict[str, CommandResult]:
        """Results of ``command_ids`` that arrive before ``until_ms`` (wall time)."""
        found: dict[str, CommandResult] = {}
        while len(found) < len(command_ids) and now_ms() < until_ms:
            batches = self.consumer.poll(timeout_ms=max(50, min(500, until_ms - now_ms())))
            for records in batches.values():
                for record in records:
                    try:
                        result = CommandResult.decode(record.value)
                    except MessageError as exc:
                        log.warning("bad command result: %s", exc)
                        continue
                    if result.command_id in command_ids:
                        found[result.command_id] = result
        return found

    def close(self) -> None:
        self.consumer.close()


#: handles(command) -> True when this executor owns the device; execute(command) -> result,
#: or None when the executor answers later itself through :meth:`ExecutorLoop.report` (the OCPP
#: central system: a charger's command waits for its charger without holding up the others)
Handles = Callable[[Command], bool]
Execute = Callable[[Command], CommandResult | None]


class ExecutorLoop:
    """Consume ``ioe.commands`` for the devices a connector owns, execute, report.

    Runs on its own thread; :meth:`start` returns once the group has its partitions, so a
    command sent after it is seen."""

    def __init__(self, settings: Settings, *, group_id: str, executor: str, handles: Handles,
                 execute: Execute, clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.group_id = group_id
        self.executor = executor
        self.handles = handles
        self.execute = execute
        self.clock = clock
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.executed = 0
        self.expired = 0
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._producer: Any = None

    def start(self, timeout_s: float = 30.0) -> ExecutorLoop:
        self._producer = make_producer(self.settings)
        topic = self.settings.topic(COMMANDS)
        self._consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="latest", max_poll_records=50)
        # know the topic's partitions before joining: a join without them is assigned nothing
        deadline = time.monotonic() + timeout_s
        while not self._consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
            time.sleep(0.2)
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, name=f"commands-{self.executor}",
                                        daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout_s):
            log.warning("%s: no partitions of %s after %.0f s", self.executor,
                        self.settings.topic(COMMANDS), timeout_s)
        return self

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self.stop_event.is_set():
                try:
                    self._poll_once(consumer)
                except Exception:  # noqa: BLE001 - a broker hiccup must not end the loop
                    log.exception("%s: command loop error; retrying", self.executor)
                    self.stop_event.wait(1.0)
        finally:
            self.ready.set()

    def _poll_once(self, consumer: KafkaConsumer) -> None:
        batches = consumer.poll(timeout_ms=200)
        if consumer.assignment() and not self.ready.is_set():
            # commit where we start: if this edge goes offline before any command arrives,
            # it resumes from here (and expires what it missed) instead of jumping to
            # "latest" and never answering those commands
            consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1)
                             for tp in consumer.assignment()})
            self.ready.set()
        for records in batches.values():
            for record in records:
                self._one(record.value)
        if batches:
            consumer.commit()

    def _one(self, raw: bytes) -> None:
        try:
            command = Command.decode(raw)
        except MessageError as exc:
            log.warning("%s: bad command: %s", self.executor, exc)
            return
        if command.dry_run or not self.handles(command):
            return
        now = self.clock()
        if command.expired(now):
            result = CommandResult.expired(command, self.executor, now)
            self.expired += 1
            log.warning("%s: command %s for %s expired before it could run (deadline %d, "
                        "now %d): not executed", self.executor, command.command_id,
                        command.device_id, command.deadline_ms, now)
        else:
            try:
                outcome = self.execute(command)
            except Exception as exc:  # noqa: BLE001 - reported as a failed command
                outcome = CommandResult(command.command_id, command.community_id,
                                        command.device_id, command.key, CommandStatus.FAILED,
                                        command.value, None, self.executor, self.clock(),
                                        f"{type(exc).__name__}: {exc}")
            if outcome is None:  # deferred: the executor reports it through report()
                return
            result = outcome
            self.executed += 1
            log.info("%s: %s %s=%r by %s -> %s (read back %r)", self.executor,
                     command.device_id, command.key, command.value, command.requested_by,
                     result.status, result.readback)
        send_result(self._producer, self.settings, result)

    def report(self, result: CommandResult) -> None:
        """The result of a command whose :data:`Execute` returned None (any thread)."""
        if result.status == CommandStatus.EXPIRED:
            self.expired += 1
        else:
            self.executed += 1
        log.info("%s: %s %s=%r -> %s (read back %r)", self.executor, result.device_id,
                 result.key, result.requested, result.status, result.readback)
        send_result(self._producer, self.settings, result)

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.close(timeout=5)
