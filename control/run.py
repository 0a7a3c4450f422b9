"""The rules, live: :class:`ControlLoop` folds live values and turns them into commands.

Two hosts run the same loop. The stream worker (``ioe worker --rules FILE``,
:mod:`streams.control`) feeds it the live state it has just computed for the communities whose
partitions it owns — the design's place for the rules, with no extra hop and no second copy of
the state. ``ioe control run`` feeds it from ``ioe.live`` instead (a deployment that keeps the
rules out of the workers, or a dry run beside them). Rule files are reloaded when they change
on disk; a file that no longer validates is refused with its ``file:line`` error and the
previous rules stay in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from control.bus import ResultWatcher, now_ms, send_command
from control.commands import Issued, check_command
from control.live import LiveState
from control.rules import RuleError, RuleMemory, RuleSet, evaluate, load_rules
from ioe.kafka import make_producer
from ioe.messages import CommandResult, LiveMessage, MessageError, decode_live
from ioe.registry import Registry
from ioe.settings import Settings
from ioe.topics import COMMAND_RESULTS, LIVE

log = logging.getLogger(__name__)

#: how often the loop re-reads the manual overrides from the command log
HOLDS_REFRESH_MS = 5000


@dataclass
class _Loaded:
    path: Path
    mtime: float
    rules: RuleSet


@dataclass
class ControlLoop:
    """Holds the live state and the rules' memory of every community with a rule file."""

    settings: Settings
    registry: Registry
    rule_files: Sequence[Path]
    store: Any = None  # control.store.CommandLog, or None (tests without ClickHouse)
    send: bool = True
    loaded: dict[Path, _Loaded] = field(default_factory=dict)
    live: dict[str, LiveState] = field(default_factory=dict)
    memory: dict[str, dict[str, RuleMemory]] = field(default_factory=dict)
    issued: list[Issued] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._producer: Any = make_producer(self.settings) if self.send else None
        self._holds_cache: dict[str, tuple[int, dict[tuple[str, str], Any]]] = {}
        self._paused: dict[str, set[str]] = {}
        self.reload()

    # -- rules -------------------------------------------------------------------------------
    def reload(self) -> None:
        """Load new or changed rule files; a broken file keeps its previous rules."""
        for path in self.rule_files:
            try:
                mtime = path.stat().st_mtime
            except OSError as exc:
                log.error("rules %s: %s", path, exc)
                continue
            known = self.loaded.get(path)
            if known is not None and known.mtime == mtime:
                continue
            try:
                rules = load_rules(path, self.registry)
            except RuleError as exc:
                log.error("rules not reloaded, previous rules stay in force: %s", exc)
                if known is not None:
                    known.mtime = mtime
                continue
            self.loaded[path] = _Loaded(path, mtime, rules)
            log.info("rules %s: %d rules for %s", path, len(rules.rules), rules.community_id)

    @property
    def rule_sets(self) -> list[RuleSet]:
        return [loaded.rules for loaded in self.loaded.values()]

    # -- live values -------------------------------------------------------------------------
    def apply(self, raw: bytes) -> None:
        try:
            message = decode_live(raw)
        except MessageError as exc:
            log.debug("live message not used: %s", exc)
            return
        self.apply_message(message)

    def apply_message(self, message: LiveMessage) -> None:
        """Fold one live value in (communities without a rule file are not kept)."""
        community = message.channel.community_id
        if any(rs.community_id == community for rs in self.rule_sets):
            state = self.live.get(community) or LiveState(community)
            self.live[community] = state.apply(message)

    def forget_live(self) -> None:
        """Drop every community's live state (a rebalance may have moved it to another worker:
        until this host computes a community's live values again, its rules see nothing, so
        they neither act nor renew — two hosts never act on one community at once)."""
        self.live.clear()

    # -- one evaluation ----------------------------------------------------------------------
    def step(self, now: int | None = None) -> list[Issued]:
        now = now_ms() if now is None else now
        out: list[Issued] = []
        for rules in self.rule_sets:
            live = self.live.get(rules.community_id) or LiveState(rules.community_id)
            memory = self.memory.get(rules.community_id, {})
            rules, memory = self._pause_overridden(rules, memory, now)
            evaluation = evaluate(rules, live, memory, now)
            self.memory[rules.community_id] = evaluation.memory
            for command in evaluation.commands:
                issued = check_command(self.registry, command)
                out.append(issued)
                if issued.status == "sent" and self._producer is not None:
                    send_command(self._producer, self.settings, issued.command)
                log.info("rule %s: %s %s=%r (%s): %s%s", command.rule_id, command.device_id,
                         command.key, command.value, command.reason, issued.status,
                         f" ({issued.refusal})" if issued.refusal else "")
        if out and self.store is not None:
            self.store.add_commands(out)
        self.issued.extend(out)
        return out

    def _pause_overridden(self, rules: RuleSet, memory: dict[str, RuleMemory], now: int
                          ) -> tuple[RuleSet, dict[str, RuleMemory]]:
        """The rules without those whose point a manual override holds (from the command
        log, so an override from the control centre or ``ioe control send`` counts wherever
        the rules run). A paused rule forgets what it held: when the override ends it decides
        afresh from the live values, not from a state the operator has since changed."""
        holds = self._holds(rules.community_id, now)
        paused = {r.id for r in rules.rules if (r.device, r.key) in holds}
        before = self._paused.get(rules.community_id, set())
        for rule in rules.rules:
            if rule.id in paused and rule.id not in before:
                hold = holds[(rule.device, rule.key)]
                log.info("rule %s paused: %s holds %s %s until %d (%s)", rule.id,
                         hold.requested_by, rule.device, rule.key, hold.until_ms, hold.reason)
            elif rule.id in before and rule.id not in paused:
                log.info("rule %s resumed: the manual override ended", rule.id)
        self._paused[rules.community_id] = paused
        if not paused:
            return rules, memory
        kept = tuple(r for r in rules.rules if r.id not in paused)
        fresh = {k: v for k, v in memory.items() if k not in paused}
        return replace(rules, rules=kept), fresh

    def _holds(self, community_id: str, now: int) -> dict[tuple[str, str], Any]:
        """Manual overrides in force, re-read from the log at most every HOLDS_REFRESH_MS."""
        if self.store is None:
            return {}
        cached = self._holds_cache.get(community_id)
        if cached is None or now - cached[0] >= HOLDS_REFRESH_MS:
            try:
                cached = (now, self.store.manual_holds(community_id, now))
            except Exception:  # the log unreachable: rules act as without overrides
                log.exception("manual overrides of %s not read", community_id)
                cached = (now, {})
            self._holds_cache[community_id] = cached
        return {point: hold for point, hold in cached[1].items() if hold.until_ms > now}

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)


def live_consumer(settings: Settings) -> KafkaConsumer:
    """``ioe.live`` from now on, every partition, no group (a follower, like the web)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    topic = settings.topic(LIVE)
    partitions = consumer.partitions_for_topic(topic) or set()
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_end(*assigned)
    for tp in assigned:
        consumer.position(tp)
    return consumer


def store_results(settings: Settings, stop: threading.Event,
                  ready: threading.Event | None = None) -> None:
    """Follow ``ioe.command-results`` into the command log (a thread of ``run``, with its own
    ClickHouse connection: a client is not shared between threads). Every executor's results
    land in the same table this way — Modbus edge, MQTT bridge and the OCPP central system all
    report on the one topic. ``ready`` is set once the follower reads from the topic's end:
    a result reported after that is never missed."""
    from control.store import CommandLog

    store = CommandLog(settings)
    watcher = ResultWatcher(settings)
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            batches = watcher.consumer.poll(timeout_ms=500)
            results = []
            for records in batches.values():
                for record in records:
                    try:
                        results.append(CommandResult.decode(record.value))
                    except MessageError as exc:
                        log.warning("bad result on %s: %s", COMMAND_RESULTS, exc)
            if results:
                store.add_results(results)
    finally:
        watcher.close()
        store.close()


def run(loop: ControlLoop, stop: threading.Event, interval_s: float = 1.0) -> None:
    consumer = live_consumer(loop.settings)
    results: threading.Thread | None = None
    if loop.store is not None:
        results = threading.Thread(target=store_results, args=(loop.settings, stop),
                                   name="control-results", daemon=True)
        results.start()
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    loop.apply(record.value)
            if time.monotonic() >= next_at:
                next_at = time.monotonic() + interval_s
                loop.reload()
                loop.step()
    finally:
        consumer.close()
        loop.close()
        if results is not None:
            results.join(5)
