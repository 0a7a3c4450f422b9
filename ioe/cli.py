"""The ``ioe`` command: one entry point for every process of the system (DESIGN.md §7).

Commands are a table: each names the module that implements it. A module provides
``configure(parser)`` (its arguments) and ``run(args) -> int`` (its exit code). Only the module of
the command being run is imported, so ``ioe --help`` stays fast and a command whose module is not
there yet says so clearly and exits non-zero (never a fake success).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from ioe import logsafe


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str


COMMANDS: tuple[Command, ...] = (
    Command("stack", "start, stop or check the local Kafka, ClickHouse and Mosquitto",
            "devtools.commands.stack"),
    Command("schema", "create the Kafka topics and apply ClickHouse migrations",
            "ioe.commands.schema"),
    Command("registry", "validate the community registry, or publish it to ioe.registry",
            "ioe.commands.registry"),
    Command("worker", "run a stream worker (live shares, balances, anomalies, ClickHouse sink)",
            "streams.command"),
    Command("workers", "the stream workers' group: members, partitions, lag, rate, stalls",
            "streams.fleet_command"),
    Command("web", "serve the live websocket, the history API and the dashboards",
            "dashboards.command"),
    Command("tokens", "issue or revoke dashboard access tokens for members and operators",
            "dashboards.tokens_command"),
    Command("mqtt-bridge", "bridge MQTT energy meters (Shelly, Tasmota, emonhub…) to Kafka",
            "connectors.mqtt_bridge.command"),
    Command("modbus-edge", "poll Modbus inverters and meters, store and forward to Kafka",
            "connectors.modbus_edge.command"),
    Command("datadis", "fetch official hourly data from Datadis (sync, backfill, fetch, import)",
            "connectors.datadis.command"),
    Command("simulate", "simulate a community with real MQTT and Modbus devices",
            "devtools.simulator.command"),
    Command("settle", "offline hourly settlement from Datadis-style CSV files",
            "streams.settle_command"),
    Command("coefficients", "validate or convert distributor coefficient files",
            "streams.coefficients_command"),
    Command("demo", "run the whole system on the example community", "devtools.commands.demo"),
    Command("export", "export a community's readings, balances or alarms to Parquet or CSV",
            "warehouse.command"),
    Command("control", "active control: send a command, validate rules, the command log, run",
            "control.command"),
    Command("edge", "edge identities and maintenance: enrol, revoke, renew, list, push-config, logs, restart",
            "ioe.edge.command"),
)
BY_NAME = {c.name: c for c in COMMANDS}
NOT_AVAILABLE = 3


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioe",
        description="IoE Comunidades: real-time monitoring for Spanish energy communities.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {c.name:<14}{c.help}" for c in COMMANDS),
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("command", nargs="?", help="one of the commands below")
    return parser


def _load(command: Command):  # noqa: ANN202 - returns a module
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if exc.name and command.module.startswith(exc.name):
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # split "ioe [--log-level X] COMMAND rest…"
    index = next((i for i, a in enumerate(argv) if a in BY_NAME), None)
    if index is None:
        top.parse_args(argv[:1] if argv and argv[0] in ("-h", "--help") else argv)
        top.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    head = top.parse_args(argv[:index])
    command = BY_NAME[argv[index]]
    logging.basicConfig(level=getattr(logging, str(head.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # client input reaches log lines (channels, topics, device ids, URLs): one filter escapes
    # control characters and redacts credentials on every handler (ioe/logsafe.py)
    logsafe.install()
    for noisy in ("kafka", "aiokafka", "pymodbus", "urllib3"):  # their INFO is per connection
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    module = _load(command)
    if module is None:
        print(f"ioe {command.name}: not yet available in this version ({command.help}); "
              f"module {command.module} is not installed", file=sys.stderr)
        return NOT_AVAILABLE
    parser = argparse.ArgumentParser(prog=f"ioe {command.name}", description=command.help)
    module.configure(parser)
    args = parser.parse_args(argv[index + 1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
