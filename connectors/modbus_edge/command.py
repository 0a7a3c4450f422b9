"""``ioe modbus-edge``: run the edge agent, read a device by hand, import an old INI config.

``read`` exists so an installer can check wiring and map before deploying: it prints the
readings as JSON lines (stdout stays machine-readable) and, on a Modbus error, says which
request failed and with which exception code on stderr, exiting 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import time
from typing import Any, ClassVar

import yaml

from connectors.modbus_edge.device import DeviceConfig, Link, ModbusReadError, Poller
from connectors.modbus_edge.maps import MapError, load_map

log = logging.getLogger(__name__)

MODBUS_ERROR = 2
#: the device answered, but nothing it gave is a contract value (wrong map, all sentinels)
NO_READING = 3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", help="enrolment bundle directory (`ioe edge enrol`): run "
                                         "the agent over the secure listeners as that edge; "
                                         "its devices from --config or DIR/edge.yaml")
    parser.add_argument("--config", dest="bundle_config",
                        help="with --bundle: the edge YAML config (default DIR/edge.yaml)")
    sub = parser.add_subparsers(dest="action")
    run = sub.add_parser("run", help="poll the configured devices and forward to Kafka")
    run.add_argument("--config", help="edge YAML config file (default: the bundle's)")
    run.add_argument("--bundle", dest="run_bundle", help="enrolment bundle directory")
    run.add_argument("--registry", help="registry YAML (overrides the config / IOE_REGISTRY)")
    run.add_argument("--kafka", help="Kafka bootstrap (overrides the config / IOE_KAFKA)")
    read = sub.add_parser("read", help="read one device once and print JSON lines")
    read.add_argument("--host", required=True)
    read.add_argument("--port", type=int, default=502)
    read.add_argument("--map", required=True, help="shipped map name or path to a YAML map")
    read.add_argument("--unit", type=int, help="Modbus unit id (default: the map's)")
    read.add_argument("--device-id", help="device id in the output (default host:port:unit)")
    read.add_argument("--timeout", type=float, default=3.0)
    read.add_argument("--once", action="store_true", help="read once (default)")
    read.add_argument("--count", type=int, default=1, help="polls to make (ignored with --once)")
    read.add_argument("--interval", type=float, default=1.0)
    write = sub.add_parser("write", help="write one setting through the map, read it back, "
                                         "print one JSON line (exit 2 when refused or failed)")
    write.add_argument("--host", required=True)
    write.add_argument("--port", type=int, default=502)
    write.add_argument("--map", required=True, help="shipped map name or path to a YAML map")
    write.add_argument("--unit", type=int, help="Modbus unit id (default: the map's)")
    write.add_argument("--device-id", help="device id in the output (default host:port:unit)")
    write.add_argument("--timeout", type=float, default=3.0)
    write.add_argument("--set", dest="settings", action="append", required=True,
                       metavar="KEY=VALUE", help="e.g. power_limit_pct=50, or =none to disable")
    write.add_argument("--revert-s", type=int, default=None,
                       help="revert timeout: the device drops the setting after this many s")
    imp = sub.add_parser("import-ini", help="convert an eco_modbus_tcp INI to an edge config")
    imp.add_argument("ini", help="the old config.ini")
    imp.add_argument("--queue", default="modbus-edge.sqlite", help="queue path in the output")
    imp.add_argument("--field", action="append", default=[], metavar="POINT=FIELD[:UNIT]",
                     help="contract field of a point the import cannot guess (repeatable), "
                          "e.g. --field fr_ener_h=energy_wh:kWh")


def run(args: argparse.Namespace) -> int:
    if logging.getLogger().level > logging.DEBUG:
        # pymodbus logs every failed request with a frame dump; our own error line names the
        # device, request and exception code, so its copy is noise at INFO
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    handlers = {"run": _run_agent, "read": _read, "import-ini": _import_ini}
    if args.action is None or args.action == "run":
        bundle = getattr(args, "run_bundle", None) or args.bundle
        args.bundle = bundle
        if args.action is None:
            if not bundle:
                print("ioe modbus-edge: give a command (run, read, write, import-ini) or "
                      "--bundle DIR", file=sys.stderr)
                return 2
            args.config, args.registry, args.kafka = args.bundle_config, None, None
        if not args.config:
            if not bundle:
                print("ioe modbus-edge run: --config or --bundle is required", file=sys.stderr)
                return 2
            from pathlib import Path

            args.config = str(Path(bundle) / "edge.yaml")
        return _run_agent(args)
    if args.action == "write":
        from connectors.modbus_edge.writes import write_command

        return write_command(args)
    return handlers[args.action](args)


def _read(args: argparse.Namespace) -> int:
    try:
        register_map = load_map(args.map)
    except MapError as exc:
        print(f"modbus-edge read: {exc}", file=sys.stderr)
        return 1
    if not register_map.discovery and not any(p.field for p in register_map.points):
        print(f"modbus-edge read: map {args.map!r} has no point with a contract field: it "
              "would read and publish nothing (give its points a 'field')", file=sys.stderr)
        return 1
    settings: dict[str, Any] = {k: v for k, v in register_map.defaults.items()
                                if k in ("unit", "delay_after_connect_s", "max_registers")}
    if args.unit is not None:
        settings["unit"] = args.unit
    unit = settings.get("unit", 1)
    device = DeviceConfig(id=args.device_id or f"{args.host}:{args.port}:{unit}",
                          map=register_map, host=args.host, port=args.port,
                          timeout_s=args.timeout, **settings)
    link = Link(device)
    poller = Poller(device, link)
    polls = 1 if args.once else max(1, args.count)
    try:
        for index in range(polls):
            if index:
                time.sleep(args.interval)
            try:
                result = poller.poll()
            except ModbusReadError as exc:
                code = f"0x{exc.code:02X}" if exc.code is not None else "none"
                print(f"modbus error: device {exc.device} fc {exc.fc} address {exc.address} "
                      f"count {exc.count} exception code {code}: {exc}", file=sys.stderr)
                return MODBUS_ERROR
            except Exception as exc:  # noqa: BLE001 - discovery errors and the like
                print(f"modbus error: {type(exc).__name__}: {exc}", file=sys.stderr)
                return MODBUS_ERROR
            for reading in result.readings:
                sys.stdout.write(reading.to_json().decode() + "\n")
            sys.stdout.flush()
            if not result.readings:
                print("modbus-edge read: the device answered but no point gave a contract "
                      f"value (values: {result.values})", file=sys.stderr)
                return NO_READING
    finally:
        link.close()
    return 0


def _run_agent(args: argparse.Namespace) -> int:
    from pathlib import Path

    from connectors.modbus_edge.agent import EdgeConfig, load_config

    heartbeat = None
    if args.bundle:
        from ioe.edge.bundle import BundleError, load_bundle

        try:
            bundle = load_bundle(args.bundle)
        except BundleError as exc:
            print(f"ioe modbus-edge: {exc}", file=sys.stderr)
            return 1
    try:
        config = load_config(args.config)
    except OSError as exc:
        print(f"ioe modbus-edge: edge config {args.config}: {exc.strerror}", file=sys.stderr)
        return 1

    def effective(config: EdgeConfig) -> EdgeConfig:
        """The config with what the bundle and the command line set (a pushed config too)."""
        if args.bundle:
            # the bundle's secure Kafka listener and credentials (password read from its file)
            config = dataclasses.replace(
                config,
                kafka_bootstrap=bundle.endpoints.kafka_bootstrap or config.kafka_bootstrap,
                topic_prefix=bundle.topic_prefix or config.topic_prefix,
                # an unreachable Kafka fails in seconds (the bundle's own setting), so a
                # pushed config or a restart is not held 30 s by the forwarder's bootstrap
                kafka_client={"bootstrap_timeout_ms": 5_000, **bundle.kafka_client_options()})
        if args.registry:
            config = dataclasses.replace(config, registry_path=Path(args.registry))
        if args.kafka:
            config = dataclasses.replace(config, kafka_bootstrap=args.kafka)
        return config

    if args.bundle:
        log.info("modbus edge: running as %s (bundle %s)", bundle.id, bundle.directory)
    from connectors.modbus_edge.agent import config_from_dict
    from ioe.edge.live import LiveAgent
    from ioe.edge.maintenance import RecentLines

    config_path = Path(args.config)
    document = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    recent = None
    if args.bundle:  # `ioe edge logs` answers from these (redacted again by ioe/logsafe)
        recent = RecentLines()
        logging.getLogger().addHandler(recent)
    live: LiveAgent[EdgeConfig, _Running] = LiveAgent(
        config_path, document, effective(config),
        lambda doc: effective(config_from_dict(doc, base_dir=config_path.parent)),
        lambda cfg: _Running(cfg, document.get("control")), recent=recent)

    def _stop(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        live.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    listener = None
    if args.bundle:
        from ioe.edge.heartbeat import HeartbeatSender
        from ioe.edge.maintenance import MaintenanceListener

        def _status() -> dict[str, Any]:
            agent = live.runner.agent
            return {"queue_depth": len(agent.outbox), "config_version": live.version(),
                    "errors": {d: "offline" for d, up in agent.online.items() if not up}}

        heartbeat = HeartbeatSender(bundle, status=_status).start()
        # remote maintenance (ioe/edge/maintenance.py): push-config, logs, restart
        listener = MaintenanceListener(bundle, live.handlers(), live.version).start()
    try:
        live.run()
    finally:
        if listener is not None:
            listener.stop()
        if heartbeat is not None:
            heartbeat.stop()
    if live.restart_requested:
        live.reexec()
    return 0


class _Running:
    """One agent and its command executor (a ``control:`` section), started and stopped as one:
    a pushed config replaces both, since the executor writes through the agent's links."""

    metrics_served: ClassVar[bool] = False

    def __init__(self, config: Any, control: Any) -> None:
        from connectors.modbus_edge.agent import Agent

        self.agent = Agent(config)
        self.control = control
        self.executor: Any = None

    def start(self) -> None:
        port = self.agent.config.metrics_port
        if port and _Running.metrics_served:  # its port is taken by the first agent's server
            log.warning("modbus edge: metrics on :%s keep the first agent's counters until "
                        "the agent restarts", port)
            self.agent.config = dataclasses.replace(self.agent.config, metrics_port=None)
        self.agent.start()
        _Running.metrics_served = _Running.metrics_served or bool(port)
        if self.control:
            from connectors.modbus_edge.commands import attach

            self.executor = attach(self.agent, self.control)

    def stop(self, final: bool = False) -> None:
        if self.executor is not None:
            self.executor.stop()
        # the store is durable: what is queued is sent by the next agent, so replacing it
        # does not wait for Kafka; only the last stop (exit, restart) drains a while
        self.agent.stop(drain_s=5.0 if final else 0.5)


def _import_ini(args: argparse.Namespace) -> int:
    from connectors.modbus_edge.ini_import import (
        IniImportError,
        import_ini_file,
        parse_field_option,
    )

    unmapped: list[str] = []
    try:
        fields = {}
        for option in args.field:
            name, field, unit = parse_field_option(option)
            fields[name] = (field, unit)
        document = import_ini_file(args.ini, fields=fields, unmapped=unmapped)
    except (IniImportError, OSError) as exc:
        print(f"modbus-edge import-ini: {exc}", file=sys.stderr)
        return 1
    for note in unmapped:
        print(f"modbus-edge import-ini: {note}", file=sys.stderr)
    document = {"edge": {"queue_path": args.queue}, **document}
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return 0

