"""``ioe demo``: the whole system on the example community, with one command.

It starts the local stack, applies the schema and the registry, then runs as child processes the
simulator, the MQTT bridge, the Modbus edge, one stream worker and the web server, issues a member
and an operator token, prints the URLs of the three views, and on Ctrl-C (or SIGTERM) stops
everything it started, and nothing else.

Active control is part of it: the worker evaluates the rule file (``--rules``, default
``infra/examples/rules.yaml``: an export limit on the SunSpec inverter and a member's water heater
on her surplus), the Modbus edge writes the inverter's limit and the MQTT bridge switches the
heater's relay, and the control centre's command log shows who acted and why. Rules need sun:
at night (local time outside 10:00–16:00) the simulated plant and households behave as at
12:30 (``--as-if``; ``--as-if now`` keeps the real time of day), every timestamp staying true.

``ioe demo --check`` runs the same for a bounded time and exits 0 only if live values reached
``ioe.live`` and every rule of the rule file had a command acknowledged by its device (what CI
or a final acceptance run calls).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml

from connectors.modbus_edge.agent import EDGE_KEYS
from connectors.modbus_edge.device import DEVICE_KEYS
from dashboards.app import PAGES
from ioe.messages import CommandResult, LiveCommunity, LiveMember, MessageError, decode_live
from ioe.registry import Registry, load_registry
from ioe.settings import ROOT, Settings, get_settings


@dataclass(frozen=True)
class Part:
    """One process of the demo: its name and its ``ioe`` arguments."""

    name: str
    args: tuple[str, ...]


@dataclass
class Child:
    part: Part
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Demo:
    settings: Settings
    registry: Path
    work_dir: Path
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    # -- children ----------------------------------------------------------------------------
    def start(self, part: Part) -> Child:
        log_path = self.work_dir / f"{part.name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "ioe.cli", *part.args],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True)
        log.close()
        child = Child(part, proc, log_path)
        self.children.append(child)
        print(f"  {part.name:<13} started (pid {proc.pid}, log {log_path})", flush=True)
        return child

    def stop_all(self, grace_s: float = 15.0) -> None:
        """SIGTERM each child we started (its own process group), then SIGKILL stragglers."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                print(f"  {child.part.name} did not stop in {grace_s:g}s; killing it", flush=True)
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait(timeout=5)
        for child in self.children:
            print(f"  {child.part.name:<13} stopped (exit {child.proc.returncode})", flush=True)

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.proc.poll() is not None]


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def modbus_edge_config(registry_path: Path, out: Path, control: bool = True) -> Path:
    """An edge configuration listing every Modbus device of the registry.

    The edge's own format is owned by the Modbus edge (``DEVICE_KEYS``, ``EDGE_KEYS``); this
    writes ``devices: [{id, community_id, host, port, unit, map, poll_interval_s}]`` and the
    registry path, so the edge can also resolve anything else it needs from there.
    """
    registry = load_registry(registry_path)
    devices: list[dict[str, Any]] = []
    for device in registry.devices():
        protocol = device.protocol
        if protocol.get("type") != "modbus" or "via" in protocol:
            continue  # a channel of another device (e.g. an inverter's grid meter)
        devices.append({
            "id": device.id, "community_id": device.community_id,
            "host": str(protocol.get("host", "127.0.0.1")), "port": int(protocol.get("port", 502)),
            "unit": int(protocol.get("unit", 1)), "map": str(protocol.get("map", "sunspec")),
            "poll_interval_s": float(device.expected_interval_s),
        })
    devices = [{k: v for k, v in d.items() if k in DEVICE_KEYS} for d in devices]
    edge: dict[str, Any] = {"registry": str(Path(registry_path).resolve()),
                            "queue_path": str(out.parent / "modbus-edge.sqlite")}
    edge = {k: v for k, v in edge.items() if k in EDGE_KEYS}
    out.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"edge": edge, "devices": devices}
    if control:  # the edge also executes the commands for its devices (the inverter limits)
        document["control"] = {"enabled": True, "group_id": "modbus-edge-demo"}
    out.write_text("# written by `ioe demo` from " + str(registry_path) + "\n"
                   + yaml.safe_dump(document, sort_keys=False))
    return out


DEFAULT_WEB_PORT = 8000
#: page file of the dashboards app → the view it is
VIEW_OF_PAGE = {"member": "mobile", "mobile": "mobile", "m": "mobile", "tablet": "tablet",
                "control": "control centre"}


def dashboard_urls(host: str = "127.0.0.1", port: int = DEFAULT_WEB_PORT) -> dict[str, str]:
    """URLs of the three views, from the pages the web app serves (``dashboards.app.PAGES``)."""
    views = {VIEW_OF_PAGE[Path(filename).stem]: path for path, filename in PAGES.items()
             if Path(filename).stem in VIEW_OF_PAGE}
    return {name: f"http://{host}:{port}{path}" for name, path in views.items()}


def issue_token(env: dict[str, str], args: list[str]) -> str | None:
    """Run ``ioe tokens issue …`` (in the demo's environment, so with its secret); the token."""
    try:
        out = subprocess.run([sys.executable, "-m", "ioe.cli", "tokens", "issue", *args],
                             capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return lines[-1] if out.returncode == 0 and lines else None


def configure(parser: argparse.ArgumentParser) -> None:
    settings = get_settings()
    parser.add_argument("--registry", type=Path, default=settings.registry_path,
                        help="registry YAML (default: the example community)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulator time acceleration (default 1: live, real time)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault", action="append", default=[],
                        help="passed to the simulator (see `ioe simulate --help`)")
    parser.add_argument("--check", action="store_true",
                        help="run for a bounded time, verify live values reach ioe.live, "
                             "stop everything, exit 0 (seen) or 1 (not seen)")
    parser.add_argument("--check-timeout", type=float, default=240.0,
                        help="seconds --check waits for live values and the rules' commands "
                             "(default 240)")
    parser.add_argument("--rules", type=Path, action="append", default=None, metavar="FILE",
                        help="rule files the worker evaluates (default "
                             "infra/examples/rules.yaml; --no-rules for none)")
    parser.add_argument("--no-rules", action="store_true", help="monitoring only: no rules")
    parser.add_argument("--as-if", default="auto", metavar="HH:MM|DATE_TIME|now|auto",
                        help="the simulated plant and households behave as at HH:MM local "
                             "time, or at a date/time (e.g. 2026-06-21T12:30: a fixed sky); "
                             "default auto: 12:30 at night, the real time by day")


#: the example community's rules: used when the registry has their community
EXAMPLE_RULES = ROOT / "infra" / "examples" / "rules.yaml"
#: outside these local hours the simulated community lives as at AS_IF (``--as-if auto``)
DAYLIGHT_HOURS = range(10, 16)
AS_IF = "12:30"


def rule_files(args: argparse.Namespace, registry: Registry) -> list[Path]:
    """The rule files the demo's worker evaluates (each validated against the registry)."""
    from control.rules import load_rules

    if args.no_rules:
        return []
    files = [Path(f) for f in args.rules] if args.rules else [EXAMPLE_RULES]
    if not args.rules and load_rules(EXAMPLE_RULES).community_id not in registry.communities:
        return []  # another registry and no rules of its own: monitoring only
    for path in files:
        load_rules(path, registry)  # RuleError (file:line) before anything starts
    return files


def as_if(choice: str, timezone: str, now: datetime | None = None) -> str | None:
    """``--as-if`` for the simulator: None for the real time of day."""
    if choice == "now":
        return None
    if choice != "auto":
        return choice
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone))
    return None if local.hour in DAYLIGHT_HOURS else AS_IF


def _ports_busy(registry_path: Path) -> list[int]:
    from devtools.stack import port_open

    registry = load_registry(registry_path)
    return [int(d.protocol["port"]) for d in registry.devices()
            if d.protocol.get("type") == "modbus" and "port" in d.protocol
            and port_open(str(d.protocol.get("host", "127.0.0.1")), int(d.protocol["port"]))]


def _end_consumer(settings: Settings, name: str):  # noqa: ANN202 - kafka-python consumer
    """A consumer on a topic positioned at its end (only what this demo produces counts)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=1000)
    topic = settings.topic(name)
    partitions = consumer.partitions_for_topic(topic) or {0}
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_end(*assigned)
    for tp in assigned:
        consumer.position(tp)  # resolve the end offsets now, before anything is produced
    return consumer


def live_value_seen(message: bytes | None) -> bool:
    """A live update that carries a real power value (not only nulls/stale)."""
    if not message:
        return False
    try:
        live = decode_live(message)
    except (MessageError, orjson.JSONDecodeError):
        return False
    if not isinstance(live, LiveMember | LiveCommunity):
        return False
    return live.generation_w is not None or live.consumption_w is not None


def run(args: argparse.Namespace) -> int:
    from control.rules import load_rules
    from devtools import stack
    from ioe.commands.registry import publish
    from ioe.commands.schema import apply_schema
    from ioe.topics import COMMAND_RESULTS, LIVE

    settings = get_settings()
    work_dir = settings.local_dir / "demo"
    work_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not env.get("IOE_TOKEN_SECRET"):
        # one secret per demo run, shared by the token issuer and the web server (never printed)
        env["IOE_TOKEN_SECRET"] = secrets.token_urlsafe(32)
    env["IOE_REGISTRY"] = str(Path(args.registry).resolve())
    demo = Demo(settings=settings, registry=args.registry, work_dir=work_dir, env=env)

    stop_requested = {"flag": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested["flag"] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    consumer = results = None
    try:
        print("== stack", flush=True)
        stack.up(settings)
        print("== schema and registry", flush=True)
        apply_schema()
        published = publish(args.registry, settings)
        print(f"registry    published        {', '.join(published)}", flush=True)
        registry = load_registry(args.registry)
        rules = rule_files(args, registry)
        timezone = next(iter(registry.communities.values())).timezone
        sun = as_if(args.as_if, timezone)
        busy = _ports_busy(args.registry)
        if busy:
            print(f"ioe demo: Modbus port(s) {', '.join(map(str, busy))} already in use "
                  "(another simulator running?)", file=sys.stderr)
            return 2
        if args.check:
            consumer = _end_consumer(settings, LIVE)
            results = _end_consumer(settings, COMMAND_RESULTS)
        print("== processes", flush=True)
        config = modbus_edge_config(args.registry, work_dir / "modbus-edge.yaml")
        edge_args = ("modbus-edge", "run", "--config", str(config),
                     "--registry", str(args.registry))
        sim_args = ["simulate", "--registry", str(args.registry), "--speed", f"{args.speed:g}",
                    "--seed", str(args.seed)]
        for fault in args.fault:
            sim_args += ["--fault", fault]
        if sun:
            sim_args += ["--as-if", sun]
            print(f"daytime     the simulated community lives as at {sun} ({timezone}; "
                  "--as-if now keeps the real time of day)", flush=True)
        worker_args = ["worker"]
        for path in rules:
            worker_args += ["--rules", str(path)]
        print(f"rules       {', '.join(map(str, rules)) or 'none (monitoring only)'}", flush=True)
        parts = [
            Part("simulator", tuple(sim_args)),
            Part("mqtt-bridge", ("mqtt-bridge", "run", "--control")),
            Part("modbus-edge", edge_args),
            Part("worker", tuple(worker_args)),
            Part("web", ("web",)),
        ]
        for part in parts:
            if stop_requested["flag"]:
                break
            demo.start(part)
        _print_access(demo, args.registry)
        if args.check:
            expected = {r.id for path in rules for r in load_rules(path).rules}
            return _check(demo, consumer, results, expected, args.check_timeout,
                          stop_requested)
        print("\nCtrl-C stops everything started here.", flush=True)
        reported: set[int] = set()
        while not stop_requested["flag"]:
            for child in demo.dead():
                if child.proc.pid not in reported:
                    reported.add(child.proc.pid)
                    print(f"!! {child.part.name} exited with {child.proc.returncode}; "
                          f"last lines of {child.log_path}:\n{_tail(child.log_path)}",
                          flush=True)
            time.sleep(0.5)
        return 0
    except Exception as exc:  # noqa: BLE001 - report, then still stop what was started
        print(f"ioe demo: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\n== stopping", flush=True)
        demo.stop_all()
        for opened in (consumer, results):
            if opened is not None:
                opened.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_access(demo: Demo, registry_path: Path) -> None:
    registry = load_registry(registry_path)
    community = next(iter(registry.communities.values()))
    member = community.members[0].id if community.members else None
    print("\n== open in a browser", flush=True)
    for name, url in dashboard_urls().items():
        print(f"  {name:<15} {url}", flush=True)
    member_token = issue_token(demo.env, ["--member", f"{community.id}:{member}"]) \
        if member else None
    operator_token = issue_token(demo.env, ["--operator", "--community", community.id])
    print(f"  member token   ({community.id}:{member}): {member_token or '(could not issue)'}",
          flush=True)
    print(f"  operator token ({community.id}): {operator_token or '(could not issue)'}",
          flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def acknowledged_rule(message: bytes | None) -> tuple[str, CommandResult] | None:
    """(rule id, result) of a rule's command its device acknowledged; None for anything else.

    A rule's command ids are ``<rule id>:<ms>`` (``control.rules.evaluate``)."""
    if not message:
        return None
    try:
        result = CommandResult.decode(message)
    except (MessageError, orjson.JSONDecodeError):
        return None
    if result.status != "acknowledged" or ":" not in result.command_id:
        return None
    return result.command_id.rsplit(":", 1)[0], result


def _shown_in_command_log(settings: Settings, acted: dict[str, CommandResult],
                          deadline: float) -> bool:
    """Wait until the command log the control centre reads (ClickHouse, stored by the worker's
    sink) shows every acknowledged command: what an operator sees is the proof."""
    from dashboards.command_log import recent

    wanted = {r.command_id for r in acted.values()}
    communities = {r.community_id for r in acted.values()}
    while time.monotonic() < deadline + 60:
        shown = {e.command_id for cid in communities for e in recent(settings, cid, 200)
                 if e.state == "acknowledged"}
        if wanted <= shown:
            print(f"CHECK control centre: the command log shows {len(wanted)} acknowledged "
                  "rule command(s), with who asked and why", flush=True)
            return True
        time.sleep(1)
    return False


def _check(demo: Demo, consumer: Any, results: Any, rules: set[str], timeout_s: float,
           stop: dict[str, bool]) -> int:
    """Live values on ``ioe.live``, then an acknowledged command of every rule."""
    needed = {"simulator", "mqtt-bridge", "worker", "modbus-edge"}
    print(f"\n== check: waiting up to {timeout_s:g}s for live values on ioe.live"
          + (f" and a command of each rule ({', '.join(sorted(rules))}) acknowledged by its "
             "device" if rules else ""), flush=True)
    started = time.monotonic()
    deadline = started + timeout_s
    seen = 0
    acted: dict[str, CommandResult] = {}
    reported: set[str] = set()
    while time.monotonic() < deadline and not stop["flag"]:
        if not seen:
            for records in consumer.poll(timeout_ms=500).values():
                seen += sum(1 for r in records if live_value_seen(r.value))
            if seen:
                print(f"CHECK live: {seen} live update(s) with values after "
                      f"{time.monotonic() - started:.0f}s", flush=True)
        for records in results.poll(timeout_ms=500).values():
            for record in records:
                found = acknowledged_rule(record.value)
                if found and found[0] in rules and found[0] not in acted:
                    rule, result = found
                    acted[rule] = result
                    print(f"CHECK rule {rule}: {result.device_id} {result.key}="
                          f"{result.requested!r} acknowledged, read back {result.readback!r} "
                          f"after {time.monotonic() - started:.0f}s", flush=True)
        if seen and set(acted) >= rules:
            if not rules or _shown_in_command_log(demo.settings, acted, deadline):
                print("CHECK OK", flush=True)
                return 0
            print("CHECK FAILED: the control centre's command log does not show the rules' "
                  "acknowledged commands", flush=True)
            return 1
        for child in demo.dead():
            if child.part.name in reported:
                continue
            reported.add(child.part.name)
            print(f"!! {child.part.name} exited with {child.proc.returncode}:\n"
                  f"{_tail(child.log_path)}", flush=True)
            if child.part.name in needed:
                print("CHECK FAILED: a part the live path needs has stopped", flush=True)
                return 1
    missing = ("no live values on ioe.live" if not seen else
               f"no acknowledged command of {', '.join(sorted(rules - set(acted)))}")
    print(f"CHECK FAILED: {missing} within {timeout_s:g}s; logs in {demo.work_dir}", flush=True)
    return 1
