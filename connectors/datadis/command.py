"""``ioe datadis sync|backfill|fetch|import``: official hourly data from Datadis.

- ``sync``: the daily job. Every member (and plant) CUPS of the registry, from its checkpoint
  to the open month, re-reading the previous month for late corrections (24 h rule permitting).
- ``backfill --year YYYY [--cups …]``: the yearly history, month by month with a progress bar;
  resumable (published months are skipped, queries already asked are answered from the ledger).
- ``fetch … --print``: one CUPS, readings as JSON lines (debugging, export to other tools).
- ``import PATH [--force]``: Datadis CSV/JSON downloads sent by members by hand; files already
  imported (same content, by SHA-256, whatever their name) are skipped with a message.

Long jobs (backfill, import) show a progress bar on a terminal and plain progress lines in logs.

Exit codes: 0 all went well, 1 some months failed (recorded; a later run asks again) — and for
``fetch``, a month not asked because of the 24 h rule after a recent failure —, 2 bad usage or
configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from connectors.datadis import redact
from connectors.datadis.client import PUBLIC_BASE_URL, DatadisClient
from connectors.datadis.config import (
    ConfigError,
    DatadisConfig,
    SupplyConfig,
    community_account,
    load_config,
    read_password_file,
)
from connectors.datadis.connector import (
    DatadisConnector,
    KafkaSink,
    PrintSink,
    Progress,
    RunReport,
    Sink,
    Target,
    parse_ym,
)
from connectors.datadis.files import ImportFormatError, find_files, group_by_cups, read_file
from connectors.datadis.ledger import Ledger
from connectors.datadis.metrics import DatadisMetrics
from connectors.datadis.readings import convert_rows
from ioe.datadis_time import months_between
from ioe.deadletter import dead_letter
from ioe.registry import Registry, RegistryError, load_registry
from ioe.settings import Settings, get_settings

log = redact.get_logger(__name__)

USAGE_ERROR = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="Datadis YAML config (default: $IOE_DATADIS_CONFIG)")
    parser.add_argument("--state-dir", type=Path,
                        help="ledger and checkpoints (default: .local/datadis)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for an answer (120)")
    parser.add_argument("--api-version", type=int, choices=(1, 2),
                        help="Datadis private API version (2: wrapped answers)")
    sub = parser.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser, registry: bool = True) -> None:
        if registry:
            p.add_argument("--registry", type=Path, help="registry YAML (default: $IOE_REGISTRY)")
        p.add_argument("--quarter-hourly", action="store_true",
                       help="measurementType 1 (15 min) instead of hourly")
        p.add_argument("--base-url", help=f"Datadis base URL (default {PUBLIC_BASE_URL})")

    sync = sub.add_parser("sync", help="daily job: every registry CUPS since its checkpoint")
    common(sync)
    sync.add_argument("--community", action="append", help="only these communities")
    sync.add_argument("--max-queries", type=int, help="stop after this many Datadis calls")
    sync.add_argument("--metrics-file", type=Path,
                      help="write the run's counters here (node_exporter textfile format)")

    backfill = sub.add_parser("backfill", help="one year of history, month by month")
    common(backfill)
    backfill.add_argument("--year", type=int, required=True)
    backfill.add_argument("--cups", action="append", help="only these CUPS (repeatable)")
    backfill.add_argument("--max-queries", type=int, help="stop after this many Datadis calls")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar")
    backfill.add_argument("--metrics-file", type=Path,
                          help="write the run's counters here (node_exporter textfile format)")

    fetch = sub.add_parser("fetch", help="one CUPS and month range, printed as JSON lines")
    common(fetch, registry=False)
    fetch.add_argument("--username", help="NIF of the Datadis account ($IOE_DATADIS_USERNAME)")
    secret = fetch.add_mutually_exclusive_group()
    secret.add_argument("--password", help="prefer --password-file or $IOE_DATADIS_PASSWORD")
    secret.add_argument("--password-file", type=Path)
    fetch.add_argument("--cups", required=True)
    fetch.add_argument("--distributor", help="distributorCode (default: from get-supplies)")
    fetch.add_argument("--point-type", type=int, help="pointType (default: from get-supplies)")
    fetch.add_argument("--authorized-nif", help="NIF of the holder who authorized this account")
    fetch.add_argument("--from", dest="start", required=True, help="first month YYYY-MM")
    fetch.add_argument("--to", dest="end", required=True, help="last month YYYY-MM")
    fetch.add_argument("--timezone", default="Europe/Madrid")
    fetch.add_argument("--print", action="store_true",
                       help="print readings (JSON lines) instead of publishing to Kafka")
    fetch.add_argument("--registry", type=Path,
                       help="registry to find the community of the CUPS when publishing")

    imp = sub.add_parser("import", help="Datadis CSV/JSON downloads from a folder")
    imp.add_argument("path", type=Path)
    imp.add_argument("--registry", type=Path, help="registry YAML (default: $IOE_REGISTRY)")
    imp.add_argument("--print", action="store_true", help="print readings instead of publishing")
    imp.add_argument("--timezone", default="Europe/Madrid",
                     help="time zone of CUPS that are not in the registry")
    imp.add_argument("--force", action="store_true",
                     help="import files again even if their content was imported before")


def run(args: argparse.Namespace) -> int:
    redact.install()
    settings = get_settings()
    try:
        config = load_config(args.config, settings)
    except ConfigError as exc:
        log.error("%s", exc)
        return USAGE_ERROR
    if args.state_dir:
        config.state_dir = args.state_dir
    if args.timeout:
        config.timeout_s = args.timeout
    if args.api_version:
        config.api_version = args.api_version
    if getattr(args, "base_url", None):
        config.base_url = args.base_url
    handler = {"sync": _sync, "backfill": _backfill, "fetch": _fetch, "import": _import}
    try:
        return handler[args.action](args, config, settings)
    except (ConfigError, RegistryError, ValueError) as exc:
        log.error("%s", exc)
        return USAGE_ERROR


# -- sync and backfill -------------------------------------------------------------------
def registry_targets(registry: Registry, config: DatadisConfig,
                     communities: list[str] | None = None,
                     cups: list[str] | None = None) -> dict[str, list[Target]]:
    """Every member and plant CUPS of the registry, grouped by community."""
    wanted = {c.upper()[:20] for c in cups or []}
    out: dict[str, list[Target]] = defaultdict(list)
    for community in registry.communities.values():
        if communities and community.id not in communities:
            continue
        all_cups = [m.cups for m in community.members] + [p.cups for p in community.plants
                                                           if p.cups]
        for c in all_cups:
            if wanted and c[:20] not in wanted:
                continue
            out[community.id].append(Target(c, community.id, community.timezone,
                                             config.supply(c)))
    return out


def _sync(args: argparse.Namespace, config: DatadisConfig, settings: Settings) -> int:
    return _registry_run(args, config, settings, year=None)


def _backfill(args: argparse.Namespace, config: DatadisConfig, settings: Settings) -> int:
    return _registry_run(args, config, settings, year=args.year)


def _registry_run(args: argparse.Namespace, config: DatadisConfig, settings: Settings,
                  year: int | None) -> int:
    registry = load_registry(args.registry or settings.registry_path)
    groups = registry_targets(registry, config, getattr(args, "community", None),
                              getattr(args, "cups", None))
    if not groups:
        log.error("no CUPS to fetch (check --community/--cups and the registry)")
        return USAGE_ERROR
    ledger = Ledger(config.state_dir)
    sink = KafkaSink(settings)
    metrics = DatadisMetrics()
    total = RunReport()
    budget = args.max_queries
    try:
        for community_id, targets in groups.items():
            account = community_account(config, community_id)
            if account is None:
                log.error("community %s: no Datadis credentials (IOE_DATADIS_USERNAME/"
                          "PASSWORD or the config file)", community_id)
                total.failures.append(f"{community_id}: no credentials")
                continue
            targets = [t if t.supply.authorized_nif or not account.authorized_nif else
                       Target(t.cups, t.community_id, t.timezone,
                              SupplyConfig(t.supply.distributor_code, t.supply.point_type,
                                           account.authorized_nif)) for t in targets]
            client = DatadisClient(username=account.username, password=account.password,
                                   ledger=ledger, base_url=config.base_url,
                                   timeout_s=config.timeout_s, api_version=config.api_version,
                                   metrics=metrics)
            connector = DatadisConnector(
                client, ledger, sink, metrics=metrics,
                measurement_type=1 if args.quarter_hourly else 0, max_queries=budget,
                progress=year is not None and not args.no_progress)
            try:
                resolved = connector.resolve(targets)
                if year is None:
                    plan = [(r, connector.sync_months(r.target)) for r in resolved]
                else:
                    plan = [(r, connector.backfill_months(r.target, year)) for r in resolved]
                report = connector.run(plan, desc=f"{community_id} {year or 'sync'}")
            finally:
                client.close()
            _merge(total, report)
            if budget is not None:
                budget = max(0, budget - report.queries)
    finally:
        sink.close()
        ledger.close()
        if args.metrics_file:
            from prometheus_client import write_to_textfile

            write_to_textfile(str(args.metrics_file), metrics.registry)
    _summary(total)
    return 0 if total.ok else 1


def _merge(total: RunReport, report: RunReport) -> None:
    for name, value in vars(report).items():
        if isinstance(value, bool):
            setattr(total, name, getattr(total, name) or value)
        elif isinstance(value, list):
            getattr(total, name).extend(value)
        else:
            setattr(total, name, getattr(total, name) + value)


def _summary(report: RunReport) -> None:
    log.info("datadis: %d months published, %d unchanged, %d empty, %d deferred, %d failed, "
             "%d skipped; %d readings, %d rows rejected, %d queries%s",
             report.months_published, report.months_unchanged, report.months_empty,
             report.months_deferred, report.months_failed, report.months_skipped,
             report.readings, report.rejected, report.queries,
             " (stopped at the query budget)" if report.stopped_early else "")


# -- fetch -----------------------------------------------------------------------------------
def _fetch(args: argparse.Namespace, config: DatadisConfig, settings: Settings) -> int:
    username = args.username or os.environ.get("IOE_DATADIS_USERNAME") or (
        config.default_account.username if config.default_account else None)
    password = args.password
    if args.password_file:
        password = read_password_file(args.password_file)
    password = password or os.environ.get("IOE_DATADIS_PASSWORD") or (
        config.default_account.password if config.default_account else None)
    if not username or not password:
        log.error("fetch needs --username and a password (--password-file, "
                  "$IOE_DATADIS_PASSWORD or --password)")
        return USAGE_ERROR
    first, last = parse_ym(args.start), parse_ym(args.end)
    if last < first:
        raise ValueError("--to is before --from")
    cups = args.cups.strip().upper()
    community_id = None
    timezone = args.timezone
    if not args.print:
        registry = load_registry(args.registry or settings.registry_path)
        community_id, timezone, cups = _lookup(registry, cups, timezone)
    supply = config.supply(cups)
    supply = SupplyConfig(args.distributor or supply.distributor_code,
                          args.point_type or supply.point_type,
                          args.authorized_nif or supply.authorized_nif)
    target = Target(cups, community_id, timezone, supply)
    ledger = Ledger(config.state_dir)
    sink: Sink = PrintSink() if args.print else KafkaSink(settings)
    client = DatadisClient(username=username, password=password, ledger=ledger,
                           base_url=config.base_url, timeout_s=config.timeout_s,
                           api_version=config.api_version)
    try:
        connector = DatadisConnector(client, ledger, sink,
                                     measurement_type=1 if args.quarter_hourly else 0)
        resolved = connector.resolve([target])
        report = connector.run([(r, months_between(first, last)) for r in resolved])
        if not resolved:
            return 1
    finally:
        client.close()
        sink.close()
        ledger.close()
    _summary(report)
    if report.months_deferred:
        log.error("%d month(s) not fetched now (see above for why and when to retry)",
                  report.months_deferred)
        return 1
    return 0 if report.ok else 1


def _lookup(registry: Registry, cups: str, timezone: str) -> tuple[str | None, str, str]:
    for community in registry.communities.values():
        for candidate in [m.cups for m in community.members] + [p.cups for p in community.plants
                                                                if p.cups]:
            if candidate[:20] == cups[:20]:
                return community.id, community.timezone, candidate
    return None, timezone, cups


# -- import ----------------------------------------------------------------------------------
def _import(args: argparse.Namespace, config: DatadisConfig, settings: Settings) -> int:
    registry = None
    if not args.print or args.registry:
        registry = load_registry(args.registry or settings.registry_path)
    files = find_files(args.path)
    if not files:
        log.error("no .csv or .json files under %s", args.path)
        return USAGE_ERROR
    sink: Sink = PrintSink() if args.print else KafkaSink(settings)
    ledger = None if args.print else Ledger(config.state_dir)  # printing records nothing
    metrics = DatadisMetrics()
    failures = skipped = readings_total = 0
    progress = Progress(len(files), "datadis import", "file")
    try:
        for path in files:
            count, bad, skip = _import_file(sink, ledger, metrics, registry, path, args)
            readings_total += count
            failures += bad
            skipped += skip
            progress.update()
    finally:
        progress.close()
        sink.close()
        if ledger is not None:
            ledger.close()
    log.info("datadis import: %d files (%d skipped: already imported), %d readings, "
             "%d problems", len(files), skipped, readings_total, failures)
    return 0 if failures == 0 else 1


def _import_file(sink: Sink, ledger: Ledger | None, metrics: DatadisMetrics, registry: Registry | None,
                 path: Path, args: argparse.Namespace) -> tuple[int, int, int]:
    """(readings, problems, skipped) of one file. A file is remembered by content hash only
    when it was *published* without problems: printing publishes nothing, and a file with
    problems (unknown CUPS, Kafka down) must stay importable once they are fixed."""
    try:
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        before = ledger.imported(sha256) if ledger is not None else None
        if before is not None and not args.force:
            when = datetime.fromtimestamp(before.imported_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            log.info("%s: skipped — the same content was imported at %s (as %s, %d readings); "
                     "use --force to import it again", path.name, when, before.name,
                     before.readings)
            return 0, 0, 1
        rows = read_file(path)
    except (ImportFormatError, ValueError, OSError) as exc:
        log.error("%s: not a Datadis download: %s", path.name, exc)
        _file_dead_letter(sink, metrics, "decode_error", f"{path.name}: {exc}", {})
        return 0, 1, 0
    readings = problems = 0
    for cups, cups_rows in group_by_cups(rows):
        try:
            count, bad = _import_cups(sink, metrics, registry, cups, cups_rows, args.timezone,
                                      path.name)
        except Exception as exc:  # Kafka refused: report, keep going, re-import later
            log.error("%s: %s not published: %s", path.name, cups, exc)
            count, bad = 0, 1
        readings += count
        problems += bad
    if problems == 0 and ledger is not None:
        ledger.remember_import(sha256, path.name, readings)
    return readings, problems, 0


def _import_cups(sink: Sink, metrics: DatadisMetrics, registry: Registry | None, cups: str,
                 rows: list[dict[str, Any]], timezone: str, file_name: str) -> tuple[int, int]:
    community_id, tz_name = None, timezone
    if registry is not None:
        community_id, tz_name, cups = _lookup(registry, cups, timezone)
        if community_id is None:
            log.error("%s: CUPS %s is not in the registry", file_name, cups)
            _file_dead_letter(sink, metrics, "unknown_device",
                              f"{file_name}: CUPS not in the registry",
                              {"device_id": f"datadis:{cups}", "rows": len(rows)})
            return 0, 1
    interval_s = 900 if any(_is_quarter(r) for r in rows) else 3600
    converted = convert_rows(rows, device_id=f"datadis:{cups}", community_id=community_id,
                             tz=ZoneInfo(tz_name), interval_s=interval_s)
    for item in converted.rejected:
        log.warning("%s: row rejected (%s): %s", file_name, item.reason, item.detail)
        _file_dead_letter(sink, metrics, "invalid_reading", f"{item.reason}: {item.detail}",
                          {"device_id": f"datadis:{cups}", "problem": item.reason},
                          payload=orjson.dumps(dict(item.row)))
    if converted.readings:
        sink.publish(community_id or f"datadis:{cups}", converted.readings)
        metrics.readings.inc(len(converted.readings))
    return len(converted.readings), len(converted.rejected)


def _is_quarter(row: dict[str, Any]) -> bool:
    label = str(row.get("time", ""))
    return ":" in label and not label.endswith(":00")


def _file_dead_letter(sink: Sink, metrics: DatadisMetrics, reason: str, detail: str,
                      extra: dict[str, Any], payload: bytes | None = None) -> None:
    metrics.dead_letters.labels(reason).inc()
    sink.dead_letter(dead_letter(source="datadis", reason=reason, detail=detail,
                                 payload=payload, decoder="datadis-file", extra=extra))

