"""``ioe control``: send a command by hand, validate a rule file, show the log, run the rules,
and ``ocpp``: the OCPP 1.6J central system the EV chargers connect to.

``send`` is also the hand test of the whole path: it goes through the permission and bounds
checks, the ``ioe.commands.<community>`` topic, the edge or bridge that owns the device, the device, and
back on ``ioe.command-results``; it prints the result as one JSON line and exits 0 only when
the device acknowledged (2: refused, failed or expired).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

from ioe.settings import get_settings

log = logging.getLogger(__name__)

NOT_DONE = 2
RATE_ENV = "IOE_CONTROL_RATE_PER_MIN"
#: after the deadline, how long ``send`` still waits for a result in flight
GRACE_MS = 2000


def configure(parser: argparse.ArgumentParser) -> None:
    settings = get_settings()
    sub = parser.add_subparsers(dest="action", required=True)
    send = sub.add_parser("send", help="send one command and print its result")
    send.add_argument("--device", required=True, help="registry device id")
    send.add_argument("--set", dest="setting", required=True, metavar="KEY=VALUE",
                      help="e.g. power_limit_pct=50, relay=on, ev_current_a=10, KEY=none")
    send.add_argument("--as", dest="requester", default="operator:cli",
                      help="operator:<name> (default operator:cli) or member:<member_id>")
    send.add_argument("--reason", default="manual command (ioe control send)")
    send.add_argument("--ttl-s", type=float, default=30.0,
                      help="deadline: not executed after this many seconds")
    send.add_argument("--revert-s", type=int, default=None,
                      help="device-side revert timeout (inverters, batteries; a charger's "
                      "profile duration, default 900 s)")
    send.add_argument("--dry-run", action="store_true", help="check and store, do not send")
    send.add_argument("--registry", type=Path, default=None,
                      help=f"registry YAML (default $IOE_REGISTRY or {settings.registry_path})")
    send.add_argument("--no-store", action="store_true", help="do not write the command log")
    send.add_argument("--rate-per-min", type=int, default=_default_rate(),
                      help="at most this many manual commands per device per minute, counted "
                      "in the command log (default $IOE_CONTROL_RATE_PER_MIN or "
                      "%(default)s)")
    rules = sub.add_parser("rules", help="rule files")
    rules_sub = rules.add_subparsers(dest="rules_action", required=True)
    validate = rules_sub.add_parser("validate", help="check a rule file (file:line errors)")
    validate.add_argument("file", type=Path)
    validate.add_argument("--registry", type=Path, default=None,
                          help="also check devices and members against this registry")
    show = sub.add_parser("log", help="the last commands with their results")
    show.add_argument("--community", default=None)
    show.add_argument("--device", default=None)
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    run = sub.add_parser("run", help="evaluate rule files on ioe.live and send their commands")
    run.add_argument("--rules", type=Path, action="append", required=True,
                     help="rule file (repeatable, one per community)")
    run.add_argument("--registry", type=Path, default=None)
    run.add_argument("--interval-s", type=float, default=1.0)
    run.add_argument("--no-store", action="store_true")
    ocpp = sub.add_parser("ocpp", help="OCPP 1.6J central system: EV chargers connect here; "
                          "their meter values become readings, ev_current_a/ev_power_w "
                          "commands become charging profiles")
    ocpp.add_argument("--host", default="0.0.0.0")
    ocpp.add_argument("--port", type=int, default=8887,
                      help="chargers connect to ws://HOST:PORT/<chargePointId> (default 8887)")
    ocpp.add_argument("--registry", type=Path, default=None,
                      help=f"registry YAML (default $IOE_REGISTRY or {settings.registry_path})")
    ocpp.add_argument("--no-follow-registry", action="store_true",
                      help="do not follow the ioe.registry topic (YAML only)")
    ocpp.add_argument("--heartbeat-s", type=int, default=60,
                      help="heartbeat interval given to chargers at boot")
    ocpp.add_argument("--timeout-s", type=float, default=10.0,
                      help="how long to wait for a charger's answer")
    ocpp.add_argument("--group-id", default=None,
                      help="consumer group of the command topics (one per central system)")
    ocpp.add_argument("--require-auth", action="store_true",
                      help="refuse chargers whose registry entry has no auth_key_env")
    ocpp.add_argument("--log-frames", action="store_true",
                      help="log every OCPP frame (id tags included: for debugging only)")


def run(args: argparse.Namespace) -> int:
    if args.action == "send":
        return _send(args)
    if args.action == "rules":
        return _validate(args)
    if args.action == "log":
        return _log(args)
    if args.action == "ocpp":
        return _ocpp(args)
    return _run(args)


def _default_rate() -> int:
    """``IOE_CONTROL_RATE_PER_MIN`` or the built-in default (a bad value is said, not used)."""
    from control.commands import DEFAULT_RATE_PER_MIN

    text = os.environ.get(RATE_ENV, "")
    try:
        return int(text) if text else DEFAULT_RATE_PER_MIN
    except ValueError:
        print(f"control: {RATE_ENV}={text!r} is not an integer; using "
              f"{DEFAULT_RATE_PER_MIN}", file=sys.stderr)
        return DEFAULT_RATE_PER_MIN


def _registry(path: Path | None) -> Any:
    from ioe.registry import load_registry

    return load_registry(path or get_settings().registry_path)


def _store(settings: Any, enabled: bool) -> Any:
    if not enabled:
        return None
    from control.store import CommandLog

    try:
        return CommandLog(settings)
    except Exception as exc:  # noqa: BLE001 - the command still goes; say it is not logged
        print(f"control: command log unavailable ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return None


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


def _send(args: argparse.Namespace) -> int:
    from control.bus import ResultWatcher, now_ms, send_command, send_result
    from control.commands import (
        RateLimit,
        Refused,
        Requester,
        is_rate_limited,
        issue,
        parse_set,
    )
    from ioe.kafka import make_producer
    from ioe.messages import CommandResult, CommandStatus
    from ioe.registry import RegistryError

    settings = get_settings()
    try:
        registry = _registry(args.registry)
        key, value = parse_set(args.setting)
        requester = Requester.parse(args.requester)
        rate = RateLimit(args.rate_per_min)
    except (RegistryError, Refused, ValueError) as exc:
        print(f"control send: {exc}", file=sys.stderr)
        return NOT_DONE
    store = _store(settings, not args.no_store)
    try:
        now = now_ms()
        previous: list[int] = []
        if store is not None:  # the log is the counter every `send` process shares
            previous = store.manual_sent_ms(args.device, now - rate.window_ms)
        elif not args.dry_run:
            print("control send: no command log: the per-device rate limit is not enforced",
                  file=sys.stderr)
        issued = issue(registry, requester, args.device, key, value, reason=args.reason,
                       now_ms=now, ttl_s=args.ttl_s, revert_s=args.revert_s,
                       dry_run=args.dry_run, rate_limit=rate, previous_ms=previous)
        if store is not None:
            store.add_commands([issued])
        command = issued.command
        if issued.status == "refused":
            print(f"control send: refused: {issued.refusal}", file=sys.stderr)
            _emit({"command_id": command.command_id, "device_id": command.device_id,
                   "key": key, "status": "refused", "detail": issued.refusal,
                   "rate_limited": is_rate_limited(issued)})
            return NOT_DONE
        if issued.status == "dry_run":
            _emit({"command_id": command.command_id, "device_id": command.device_id,
                   "key": key, "value": command.value, "status": "dry_run"})
            return 0
        watcher = ResultWatcher(settings)
        producer = make_producer(settings)
        try:
            send_command(producer, settings, command)
            found = watcher.wait({command.command_id}, command.deadline_ms + GRACE_MS)
            result = found.get(command.command_id)
            if result is None:  # nobody executed it in time: it is expired, for everyone
                result = CommandResult.expired(command, "control", now_ms())
                result = CommandResult(**{**_fields(result), "detail": result.detail +
                                          " (no executor answered: device or edge offline?)"})
                send_result(producer, settings, result)
        finally:
            producer.close(timeout=5)
            watcher.close()
        if store is not None:
            store.add_results([result])
        _emit(result.to_dict())
        if result.status != CommandStatus.ACKNOWLEDGED:
            print(f"control send: {result.status}: {result.detail}", file=sys.stderr)
            return NOT_DONE
        return 0
    finally:
        if store is not None:
            store.close()


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _validate(args: argparse.Namespace) -> int:
    from control.rules import RuleError, load_rules, rules_summary
    from ioe.registry import RegistryError

    try:
        registry = _registry(args.registry) if args.registry else None
        rules = load_rules(args.file, registry)
    except (RuleError, RegistryError) as exc:
        print(str(exc), file=sys.stderr)
        return NOT_DONE
    print(f"{args.file}: ok, {len(rules.rules)} rules for {rules.community_id}")
    for line in rules_summary(rules):
        print(f"  {line}")
    return 0


def _log(args: argparse.Namespace) -> int:
    from control.store import CommandLog

    store = CommandLog(get_settings())
    try:
        rows = store.recent(args.community, args.device, args.limit)
    finally:
        store.close()
    if args.json:
        for r in rows:
            _emit({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()})
        return 0
    from datetime import UTC, datetime

    print(f"{'issued (UTC)':<20} {'device':<24} {'setting':<26} {'by':<22} {'status':<13} "
          f"{'read back':<10} reason")
    for r in rows:
        when = datetime.fromtimestamp(r["issued_at_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = r["result"] or r["status"]
        setting = f"{r['key']}={orjson.loads(r['value']) if r['value'] else None}"
        readback = orjson.loads(r["readback"]) if r["readback"] else None
        why = r["refusal"] or r["detail"] or ""
        print(f"{when:<20} {r['device_id']:<24} {setting:<26} {r['requested_by']:<22} "
              f"{status:<13} {readback!s:<10} {r['reason']}{' — ' + why if why else ''}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from control.run import ControlLoop
    from control.run import run as run_loop

    settings = get_settings()
    loop = ControlLoop(settings, _registry(args.registry), list(args.rules),
                       store=_store(settings, not args.no_store))
    if not loop.rule_sets:
        print("control run: no valid rule file", file=sys.stderr)
        return NOT_DONE
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run_loop(loop, stop, args.interval_s)
    return 0


def _ocpp(args: argparse.Namespace) -> int:
    from control.ocpp.central import WIRE, CentralSystem
    from ioe.registry import Registry, RegistryError
    from ioe.registry_follower import RegistryFollower

    settings = get_settings()
    path = args.registry or settings.registry_path
    try:
        registry = _registry(path) if Path(path).exists() or args.no_follow_registry \
            else Registry()
    except RegistryError as exc:
        print(f"control ocpp: {exc}", file=sys.stderr)
        return NOT_DONE
    if args.log_frames:
        WIRE.setLevel(logging.INFO)
    follower = None if args.no_follow_registry else RegistryFollower(settings, registry)
    if follower is not None:
        follower.start_thread()
    central = CentralSystem(settings, registry, host=args.host, port=args.port,
                            heartbeat_s=args.heartbeat_s, timeout_s=args.timeout_s,
                            group_id=args.group_id, require_auth=args.require_auth)
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        central.start()
        stop.wait()
    finally:
        central.stop()
        if follower is not None:
            follower.stop()
    return 0
