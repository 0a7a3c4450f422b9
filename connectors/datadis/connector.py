"""Sync, backfill and fetch: month-per-call planning, publishing and checkpoints.

One query per CUPS and month (Datadis answers month ranges; one month per call keeps every
answer small, cacheable, and retryable on its own). The flow for each month:
ledgered query → place rows in time → readings (rejects to the dead-letter topic) → publish and
wait for Kafka's acknowledgement → checkpoint. A crash anywhere before the checkpoint means the
month is published again from the cached answer on the next run (duplicates are harmless
downstream: the sinks are idempotent), never lost.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO
from zoneinfo import ZoneInfo

import orjson

from connectors.datadis.client import ENDPOINTS, Answer, DatadisClient, DatadisError, query_key
from connectors.datadis.config import SupplyConfig
from connectors.datadis.ledger import DAY_S, Ledger
from connectors.datadis.metrics import DatadisMetrics
from connectors.datadis.readings import INTERVAL_S, Converted, Rejected, convert_rows
from connectors.datadis.redact import get_logger
from ioe.datadis_time import add_months, month_bounds_ms, month_of_ms, months_between
from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.reading import Reading
from ioe.settings import Settings
from ioe.topics import DEADLETTER, READINGS

log = get_logger(__name__)
SOURCE = "datadis"


# -- where readings go ---------------------------------------------------------------------
class Sink(Protocol):
    def publish(self, key: str, readings: Sequence[Reading]) -> None:
        """Deliver and wait for the acknowledgement; raise if any reading was not accepted."""

    def dead_letter(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class KafkaSink:
    def __init__(self, settings: Settings, producer: Any = None) -> None:
        from ioe.kafka import make_producer

        self.settings = settings
        self.producer = producer or make_producer(settings)
        self.readings_topic = settings.topic(READINGS)
        self.deadletter_topic = settings.topic(DEADLETTER)

    def publish(self, key: str, readings: Sequence[Reading]) -> None:
        futures = [self.producer.send(self.readings_topic, key=key, value=r.to_json())
                   for r in readings]
        self.producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises when Kafka did not acknowledge

    def dead_letter(self, record: dict[str, Any]) -> None:
        self.producer.send(self.deadletter_topic, key=SOURCE, value=encode_dead_letter(record))
        self.producer.flush()

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()


class PrintSink:
    """JSON lines on stdout (``fetch --print``); dead letters as JSON lines on stderr.

    ``replay_unchanged``: a month already fetched (and unchanged) is printed again from the
    stored answer — someone asking to *see* a month wants its rows, not silence."""

    replay_unchanged = True

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def publish(self, key: str, readings: Sequence[Reading]) -> None:
        for reading in readings:
            self.out.write(reading.to_json().decode() + "\n")
        self.out.flush()

    def dead_letter(self, record: dict[str, Any]) -> None:
        self.err.write(encode_dead_letter(record).decode() + "\n")

    def close(self) -> None:
        self.out.flush()


# -- progress -------------------------------------------------------------------------------
def utc_text(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Progress:
    """A tqdm bar when stderr is a terminal; otherwise plain log lines (at most one every
    ``every_s``, and the last one), because a bar's carriage returns make logs unreadable."""

    def __init__(self, total: int, desc: str, unit: str, *, every_s: float = 10.0,
                 stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.stream = stream or sys.stderr
        self.done = 0
        self._last = time.monotonic()
        self._bar: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or self.done >= self.total:
            self._last = now
            log.info("%s: %d/%d %ss done", self.desc, self.done, self.total, self.unit)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# -- what to fetch -------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One supply to fetch: the registry's CUPS (device id) and where its readings go."""

    cups: str
    community_id: str | None
    timezone: str = "Europe/Madrid"
    supply: SupplyConfig = field(default_factory=SupplyConfig)

    @property
    def device_id(self) -> str:
        return f"datadis:{self.cups}"


@dataclass(frozen=True)
class Resolved:
    """A target with what Datadis needs: its own spelling of the CUPS and the distributor."""

    target: Target
    datadis_cups: str
    distributor_code: str
    point_type: int | None
    authorized_nif: str | None


@dataclass
class RunReport:
    months_published: int = 0
    months_unchanged: int = 0
    months_empty: int = 0
    months_failed: int = 0
    months_deferred: int = 0
    months_skipped: int = 0
    readings: int = 0
    rejected: int = 0
    queries: int = 0
    stopped_early: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.months_failed == 0 and not self.failures


def ym_text(ym: tuple[int, int]) -> str:
    return f"{ym[0]:04d}-{ym[1]:02d}"


def parse_ym(text: str) -> tuple[int, int]:
    try:
        year, month = (int(x) for x in text.replace("/", "-").split("-"))
    except ValueError:
        raise ValueError(f"expected YYYY-MM, got {text!r}") from None
    if not 1 <= month <= 12:
        raise ValueError(f"expected YYYY-MM, got {text!r}")
    return year, month


class DatadisConnector:
    def __init__(self, client: DatadisClient, ledger: Ledger, sink: Sink, *,
                 metrics: DatadisMetrics | None = None, measurement_type: int = 0,
                 clock: Callable[[], float] = time.time, max_queries: int | None = None,
                 progress: bool = False) -> None:
        self.client = client
        self.ledger = ledger
        self.sink = sink
        self.metrics = metrics or client.metrics
        self.measurement_type = measurement_type
        self.interval_s = INTERVAL_S[measurement_type]
        self.clock = clock
        self.max_queries = max_queries
        self.progress = progress
        self.report = RunReport()

    # -- supplies ---------------------------------------------------------------------------
    def resolve(self, targets: Iterable[Target]) -> list[Resolved]:
        """Distributor code and point type from get-supplies unless configured; the CUPS as
        Datadis spells it (sometimes with the 2-character suffix the registry omits)."""
        targets = list(targets)
        supplies_by_nif: dict[str | None, list[dict[str, Any]] | None] = {}
        resolved = []
        for target in targets:
            nif = target.supply.authorized_nif
            configured = target.supply
            supply: dict[str, Any] | None = None
            if configured.distributor_code is None or configured.point_type is None:
                if nif not in supplies_by_nif:
                    supplies_by_nif[nif] = self._supplies(nif)
                supply = next((s for s in supplies_by_nif[nif] or []
                               if str(s.get("cups", "")).upper()[:20] == target.cups[:20]), None)
            distributor = configured.distributor_code or (
                str(supply["distributorCode"]) if supply and supply.get("distributorCode")
                is not None else None)
            point_type = configured.point_type or _int_or_none(supply.get("pointType")
                                                                if supply else None)
            if distributor is None:
                if supplies_by_nif.get(nif) is None:
                    self._fail_target(target, "datadis_error", "get-supplies unavailable and "
                                      "no distributor_code configured")
                else:
                    self._fail_target(target, "unknown_device", "supply not in get-supplies "
                                      "and no distributor_code configured")
                continue
            resolved.append(Resolved(
                target=target,
                datadis_cups=str(supply["cups"]) if supply and supply.get("cups") else target.cups,
                distributor_code=distributor, point_type=point_type, authorized_nif=nif))
        return resolved

    def _supplies(self, nif: str | None) -> list[dict[str, Any]] | None:
        try:
            answer = self.client.supplies(authorized_nif=nif)
            if not answer.cached:
                self.report.queries += 1
            return answer.items
        except DatadisError as exc:
            log.error("get-supplies failed: %s", exc)
            self._dead_letter("datadis_error", f"get-supplies: {exc}", {"kind": exc.kind},
                              payload=None)
            if exc.kind != "deferred":
                self.report.failures.append(f"get-supplies: {exc.kind}")
            return None

    def _fail_target(self, target: Target, reason: str, detail: str) -> None:
        log.error("cannot fetch %s: %s", target.cups, detail)
        self.report.failures.append(f"{reason}: {detail}")
        self._dead_letter(reason, detail, {"device_id": target.device_id}, payload=None)

    # -- plans ------------------------------------------------------------------------------
    def now_month(self, tz: ZoneInfo) -> tuple[int, int]:
        local = datetime.fromtimestamp(self.clock(), UTC).astimezone(tz)
        return local.year, local.month

    def sync_months(self, target: Target) -> list[tuple[int, int]]:
        """Since the checkpoint's month (at least the open month and the previous one: late
        corrections land there) up to the open month."""
        tz = ZoneInfo(target.timezone)
        current = self.now_month(tz)
        start = add_months(current, -1)
        last = self.ledger.last_ts_ms(target.cups, self.measurement_type)
        if last is not None:
            start = min(start, month_of_ms(last, tz))
        return months_between(start, current)

    def backfill_months(self, target: Target, year: int) -> list[tuple[int, int]]:
        """Months of ``year`` not yet published with data fetched after the month closed."""
        tz = ZoneInfo(target.timezone)
        current = self.now_month(tz)
        wanted = [ym for ym in months_between((year, 1), (year, 12)) if ym <= current]
        todo = []
        for ym in wanted:
            done = self.ledger.month(target.cups, self.measurement_type, ym_text(ym))
            closed_ms = month_bounds_ms(*ym, tz)[1]
            if done is not None and done.query_at * 1000 >= closed_ms:
                self.report.months_skipped += 1
                continue
            todo.append(ym)
        return todo

    # -- running ------------------------------------------------------------------------
    def run(self, plan: Sequence[tuple[Resolved, Sequence[tuple[int, int]]]],
            desc: str = "datadis") -> RunReport:
        steps = [(r, ym) for r, months in plan for ym in months]
        bar = Progress(len(steps), desc, "month") if self.progress else None
        try:
            for resolved, ym in steps:
                if self.max_queries is not None and self.report.queries >= self.max_queries:
                    log.info("query budget of %d reached; the rest waits for the next run",
                             self.max_queries)
                    self.report.stopped_early = True
                    break
                outcome = self.fetch_month(resolved, ym)
                if bar is not None:
                    bar.update(1)
                if outcome == "auth_failed":  # every further call would be refused too
                    log.error("Datadis refused the credentials; stopping this account's run")
                    break
        finally:
            if bar is not None:
                bar.close()
        return self.report

    def fetch_month(self, resolved: Resolved, ym: tuple[int, int]) -> str:
        target = resolved.target
        tz = ZoneInfo(target.timezone)
        month = ym_text(ym)
        try:
            answer = self.client.consumption(
                resolved.datadis_cups, resolved.distributor_code, ym, ym,
                measurement_type=self.measurement_type, point_type=resolved.point_type,
                authorized_nif=resolved.authorized_nif)
        except DatadisError as exc:
            if exc.kind == "deferred":
                self._explain_deferred(resolved, ym)
            return self._month_failed(target, month, exc)
        if not answer.cached:
            self.report.queries += 1
        done = self.ledger.month(target.cups, self.measurement_type, month)
        if answer.cached and done is not None and done.query_at == answer.asked_at:
            self.report.months_unchanged += 1
            self.metrics.months.labels("unchanged").inc()
            if getattr(self.sink, "replay_unchanged", False):
                self._replay_unchanged(answer, target, month, tz, ym)
            return "unchanged"
        converted = self.convert(answer, target, month_bounds_ms(*ym, tz))
        self._reject(converted.rejected, target)
        if not converted.readings:
            log.info("%s %s: no data yet (%d empty rows)", target.cups, month,
                     converted.empty_rows)
            self.report.months_empty += 1
            self.metrics.months.labels("empty").inc()
            return "empty"
        try:
            self.sink.publish(target.community_id or target.device_id, converted.readings)
        except Exception as exc:  # Kafka down or refusing: no checkpoint, next run republishes
            log.error("%s %s: publishing failed, month not checkpointed: %s", target.cups,
                      month, exc)
            self.report.months_failed += 1
            self.report.failures.append(f"{month}: publish")
            self.metrics.months.labels("publish_failed").inc()
            return "failed"
        # only now, after the acknowledgement, may the month count as published
        self.ledger.checkpoint(target.cups, self.measurement_type, month,
                               rows=len(converted.readings),
                               last_ts_ms=max(r.ts_ms for r in converted.readings),
                               query_at=answer.asked_at)
        self.metrics.readings.inc(len(converted.readings))
        self.metrics.months.labels("published").inc()
        self.report.months_published += 1
        self.report.readings += len(converted.readings)
        log.info("%s %s: %d readings published (%d empty, %d duplicate, %d rejected)",
                 target.cups, month, len(converted.readings), converted.empty_rows,
                 converted.duplicates, len(converted.rejected))
        return "published"

    def _replay_unchanged(self, answer: Answer, target: Target, month: str, tz: ZoneInfo,
                          ym: tuple[int, int]) -> None:
        """The stored answer's readings again (not re-sent to Datadis: the 24 h rule)."""
        converted = self.convert(answer, target, month_bounds_ms(*ym, tz))
        if converted.readings:
            self.sink.publish(target.community_id or target.device_id, converted.readings)
        log.info("%s %s: unchanged — already fetched at %s; the %d stored readings are shown "
                 "again (Datadis is asked again after %s)", target.cups, month,
                 utc_text(answer.asked_at), len(converted.readings),
                 utc_text(answer.asked_at + DAY_S))

    def convert(self, answer: Answer, target: Target, window: tuple[int, int]) -> Converted:
        return convert_rows(answer.items, device_id=target.device_id,
                            community_id=target.community_id, tz=ZoneInfo(target.timezone),
                            interval_s=self.interval_s, window_ms=window,
                            now_ms=int(self.clock() * 1000))

    def consumption_key(self, resolved: Resolved, ym: tuple[int, int]) -> str:
        """The ledger key of the month's query — the same parameters ``client.consumption``
        sends (Datadis compares the full parameter set)."""
        endpoint = ENDPOINTS["consumption"][self.client.api_version][0]
        params = {"cups": resolved.datadis_cups, "distributorCode": resolved.distributor_code,
                  "startDate": f"{ym[0]:04d}/{ym[1]:02d}", "endDate": f"{ym[0]:04d}/{ym[1]:02d}",
                  "measurementType": self.measurement_type, "pointType": resolved.point_type,
                  "authorizedNif": resolved.authorized_nif}
        return query_key(endpoint, {k: v for k, v in params.items() if v is not None})

    def _explain_deferred(self, resolved: Resolved, ym: tuple[int, int]) -> None:
        """Why a month was not asked, and from when it will be: the operator must not have to
        read the ledger to know whether to wait or to look at an error."""
        record = self.ledger.query(self.consumption_key(resolved, ym))
        month = ym_text(ym)
        if record is None:
            log.warning("%s %s: not asked (asked less than 24 h ago)", resolved.target.cups,
                        month)
            return
        why = {"failed": f"the same query failed at {utc_text(record.asked_at)} "
                         f"({record.error})",
               "pending": f"the same query was sent at {utc_text(record.asked_at)} and its "
                          "answer never arrived (interrupted)"}.get(
            record.status, f"the same query was asked at {utc_text(record.asked_at)}")
        log.warning("%s %s: not asked — %s; Datadis counts every call, failed ones too, for "
                    "its 24 h rule, so it will be retried by a run after %s",
                    resolved.target.cups, month, why, utc_text(record.asked_at + DAY_S))

    def _month_failed(self, target: Target, month: str, exc: DatadisError) -> str:
        if exc.kind == "deferred":
            log.info("%s %s deferred: %s", target.cups, month, exc)
            self.report.months_deferred += 1
            self.metrics.months.labels("deferred").inc()
            return "deferred"
        self.report.months_failed += 1
        self.report.failures.append(f"{month}: {exc.kind}")
        self.metrics.months.labels("failed").inc()
        self._dead_letter("datadis_error", str(exc),
                          {"kind": exc.kind, "device_id": target.device_id, "month": month,
                           "status": exc.status}, payload=None)
        self.report.queries += 1  # a failed call was sent (and counts for the 24 h rule)
        return "auth_failed" if exc.kind == "auth" else "failed"

    def _reject(self, rejected: Sequence[Rejected], target: Target) -> None:
        for item in rejected:
            self.report.rejected += 1
            log.warning("%s: row rejected (%s): %s", target.cups, item.reason, item.detail)
            self._dead_letter("invalid_reading", f"{item.reason}: {item.detail}",
                              {"device_id": target.device_id, "problem": item.reason},
                              payload=orjson.dumps(dict(item.row)))

    def _dead_letter(self, reason: str, detail: str, extra: dict[str, Any],
                     payload: bytes | None) -> None:
        self.metrics.dead_letters.labels(reason).inc()
        record = dead_letter(source=SOURCE, reason=reason, detail=detail, payload=payload,
                             decoder=SOURCE, extra=extra)
        try:
            self.sink.dead_letter(record)
        except Exception as exc:  # the dead-letter topic down must not stop the run
            log.error("could not write dead letter (%s): %s", reason, exc)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
