"""Commands and results on Kafka: send one and wait for its result; the executors' loop.

Commands travel on one topic per community, ``ioe.commands.<community>`` (:mod:`ioe.topics`),
so an edge's Kafka ACL lets it read its own community's commands and nobody else's.

The executor loop (:class:`ExecutorLoop`) is what a connector runs to act on them: it reads with
its own consumer group and committed offsets, so an edge that was offline picks up the commands
sent meanwhile — and answers ``expired`` for every one whose deadline passed, without touching
the device. A command is never executed late by surprise. Dry-run commands and commands for
devices the connector does not own are skipped. An edge subscribes to its communities' topics
by name (its credentials allow no more); a server-side executor (the MQTT bridge, the OCPP
central system) subscribes to all of them by pattern, and a community registered while it runs
is read from its first command.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from ioe.kafka import ensure_topics, make_producer
from ioe.messages import Command, CommandResult, CommandStatus, MessageError
from ioe.settings import Settings
from ioe.topics import COMMAND_RESULTS, COMMANDS_PREFIX, commands_spec, commands_topic

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


_known_command_topics: set[tuple[str, str]] = set()


def send_command(producer: Any, settings: Settings, command: Command) -> None:
    """Send on the community's command topic and wait for the broker's acknowledgement (a
    command is never silently lost). The topic is created on first use in this process when
    ``ioe registry apply`` has not made it yet (issuers run with the service's credentials)."""
    known = (settings.kafka_bootstrap, settings.topic(commands_topic(command.community_id)))
    if known not in _known_command_topics:
        ensure_topics(settings, [commands_spec(command.community_id)])
        _known_command_topics.add(known)
    producer.send(known[1], key=command.community_id, value=command.encode()).get(timeout=30)


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


def commands_pattern(settings: Settings) -> str:
    """Every community's command topic (of this deployment's topic prefix)."""
    return "^" + re.escape(settings.topic(COMMANDS_PREFIX)) + ".+$"


class _NoteAssignments(ConsumerRebalanceListener):
    """Notes what the group assigned; the loop's thread looks at it after the poll (a listener
    runs on kafka-python's I/O thread, where no blocking call is allowed)."""

    def __init__(self, loop: ExecutorLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.loop._just_assigned = self.loop._just_assigned | set(assigned)
        self.loop._joined = True


class ExecutorLoop:
    """Consume the command topics for the devices a connector owns, execute, report.

    ``communities``: the communities whose topics to read (an edge: its own); None reads every
    community's topic by pattern, and ``known`` (a server process's registry communities) are
    created at start as ``ioe registry apply`` does, so a first command is not held back by the
    pattern's discovery of a new topic (up to ``metadata_max_age_ms`` and a rebalance).
    ``client_options``: kafka-python security options (an
    enrolment bundle's SASL_SSL credentials, :meth:`ioe.edge.bundle.Bundle.kafka_client_options`),
    used by both the consumer and the results' producer.

    Runs on its own thread; :meth:`start` returns once the group has its partitions, so a
    command sent after it is seen."""

    def __init__(self, settings: Settings, *, group_id: str, executor: str, handles: Handles,
                 execute: Execute, clock: Callable[[], int] = now_ms,
                 communities: set[str] | None = None, known: Iterable[str] = (),
                 client_options: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.group_id = group_id
        self.executor = executor
        self.handles = handles
        self.execute = execute
        self.clock = clock
        self.communities = communities
        self.known = known
        self.client_options = dict(client_options or {})
        self._just_assigned: set[TopicPartition] = set()
        self._joined = False
        self.started_ms = 0
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.executed = 0
        self.expired = 0
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._producer: Any = None

    @property
    def topics(self) -> list[str]:
        """The topics read (by name); empty when every community's is read by pattern."""
        return sorted(self.settings.topic(commands_topic(c)) for c in self.communities or ())

    def start(self, timeout_s: float = 30.0) -> ExecutorLoop:
        self.started_ms = now_ms()  # wall time, as the records' timestamps
        self._producer = make_producer(self.settings, **self.client_options)
        consumer = self._consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group_id,
            # where a partition without a committed offset starts: see _start_where_new
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=50,
            # a pattern subscription sees a new community's topic at the next refresh
            metadata_max_age_ms=5_000, **self.client_options)
        listener = _NoteAssignments(self)
        if self.communities is None:
            what = commands_pattern(self.settings)
            known = sorted(self.known)
            if known:
                ensure_topics(self.settings, [commands_spec(c) for c in known])
            consumer.subscribe(pattern=what, listener=listener)
        else:
            # know the topics' partitions before joining: a join without them is assigned
            # nothing. An edge with credentials of its own may not create them (`ioe registry
            # apply` and `ioe edge enrol` do); one on the trusted loopback creates them as the
            # service processes do.
            what = ", ".join(self.topics)
            if "sasl_plain_username" not in self.client_options:
                ensure_topics(self.settings, [commands_spec(c) for c in sorted(self.communities)])
            deadline = time.monotonic() + timeout_s
            while (not all(consumer.partitions_for_topic(t) for t in self.topics)
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            consumer.subscribe(self.topics, listener=listener)
        self._thread = threading.Thread(target=self._run, name=f"commands-{self.executor}",
                                        daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout_s):
            log.warning("%s: no partitions of %s after %.0f s", self.executor, what, timeout_s)
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
        if self._just_assigned:
            assigned, self._just_assigned = self._just_assigned, set()
            fresh = {tp for tp in assigned if consumer.committed(tp) is None}
            if fresh:
                self._start_where_new(consumer, fresh)
                batches = {tp: records for tp, records in batches.items() if tp not in fresh}
        if self._joined and not self.ready.is_set():
            self.ready.set()
        for records in batches.values():
            for record in records:
                self._one(record.value)
        if batches:
            consumer.commit()

    def _start_where_new(self, consumer: KafkaConsumer, fresh: set[TopicPartition]) -> None:
        """A partition this group never committed starts at the first command sent since the
        executor started: older ones were meant for whoever ran before (or nobody), and a
        community registered while the executor runs is read from its first command. The start
        is committed at once: if this edge goes offline before any command arrives, it resumes
        from here (and expires what it missed) instead of never answering those commands."""
        since = consumer.offsets_for_times({tp: self.started_ms for tp in fresh})
        for tp in fresh:
            found = since.get(tp)
            if found is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found.offset)
        consumer.commit({tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in fresh})

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
