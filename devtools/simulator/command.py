"""``ioe simulate``: run a community's meters and inverters with the real protocols.

Examples::

    ioe simulate                                   # example community, real time, until Ctrl-C
    ioe simulate --speed 60 --duration 24m         # one simulated day in 24 real minutes
    ioe simulate --start 2026-06-21T06:00 --speed 120 \\
        --fault offline:tasmota_913B5D@30-90 --fault inverter-fault:inv-huawei-1@120

``--start`` without an offset is local time of the (first) community; ``--duration`` is real
time; fault START/END are minutes of simulated time after the start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from devtools.simulator.engine import SimConfig, Simulator
from devtools.simulator.faults import KINDS, FaultError, parse_fault
from ioe.registry import RegistryError, load_registry
from ioe.settings import get_settings

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``24m`` / ``2h`` / ``1d`` → seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 24m, 2h)")
    return float(match[1]) * _UNITS[match[2]]


def parse_start(text: str, timezone: str) -> int:
    """ISO date/time → UTC epoch ms; without an offset it is local time of ``timezone``."""
    if text == "now":
        return int(datetime.now().timestamp() * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start {text!r}: expected ISO date/time, e.g. "
                         "2026-06-21T10:00 or 2026-06-21T08:00:00+00:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return int(when.timestamp() * 1000)


def day_shift_ms(when: str, timezone: str, now_ms: int | None = None) -> int:
    """How far to move the sun and the load profiles so that they are where they are at
    ``HH:MM`` local time today, or at an ISO date/time (local unless it has an offset: a
    fixed day, so the same sky every run)."""
    now = datetime.fromtimestamp((now_ms if now_ms is not None else time.time() * 1000) / 1000,
                                 ZoneInfo(timezone))
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", when.strip())
    if match:
        target = now.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
    elif re.fullmatch(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d.*", when.strip()):
        try:
            target = datetime.fromisoformat(when.strip())
        except ValueError:
            raise ValueError(f"--as-if {when!r}: not a date/time") from None
        if target.tzinfo is None:
            target = target.replace(tzinfo=ZoneInfo(timezone))
    else:
        raise ValueError(f"--as-if {when!r}: expected HH:MM (e.g. 12:30) or an ISO date/time "
                         "(e.g. 2026-06-21T12:30)")
    # epoch arithmetic: two datetimes of one zone subtract as wall clocks (DST would be lost)
    return int(round((target.timestamp() - now.timestamp()) * 1000))


def configure(parser: argparse.ArgumentParser) -> None:
    settings = get_settings()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "fault kinds:\n" + "\n".join(f"  {k:<15}{v}" for k, v in KINDS.items())
    parser.add_argument("--registry", type=Path, default=settings.registry_path,
                        help="registry YAML (default IOE_REGISTRY or the example community)")
    parser.add_argument("--community", action="append", default=None,
                        help="simulate only this community (repeatable; default all)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="time acceleration; 60 = one simulated day in 24 minutes")
    parser.add_argument("--start", default=None,
                        help="simulated start, ISO (local time of the community unless an "
                             "offset is given); default now")
    parser.add_argument("--as-if", default=None, metavar="HH:MM|DATE_TIME",
                        help="the plant and the households behave as at HH:MM local time "
                             "now (timestamps stay true; e.g. a demo at night)")
    parser.add_argument("--duration", type=parse_duration, default=None,
                        help="stop after this much real time (90s, 24m, 2h); default never")
    parser.add_argument("--mqtt-host", default=settings.mqtt_host)
    parser.add_argument("--mqtt-port", type=int, default=settings.mqtt_port)
    parser.add_argument("--modbus-host", default="127.0.0.1",
                        help="interface the inverters' Modbus servers listen on")
    parser.add_argument("--modbus-base-port", type=int, default=None,
                        help="serve the inverters on BASE, BASE+1, … instead of the registry "
                             "ports (in registry port order)")
    parser.add_argument("--state-dir", type=Path, default=settings.local_dir / "simulator",
                        help="where the counters persist between runs")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND:DEVICE[@M[-M]]",
                        help="inject a fault (repeatable); minutes of simulated time")
    parser.add_argument("--min-interval", type=float, default=1.0,
                        help="minimum real seconds between two messages of one meter")
    parser.add_argument("--emonhub-format", choices=["nodevar", "json"], default="nodevar",
                        help="emonhub topics: emon/<node>/<key> (default, no timestamp) or the "
                             "JSON variant on emon/<node> with 'time' (keeps the simulated "
                             "time when --speed > 1)")
    parser.add_argument("--no-meters", action="store_true", help="do not run the MQTT meters")
    parser.add_argument("--no-inverters", action="store_true",
                        help="do not run the Modbus inverters")


def build_config(args: argparse.Namespace) -> SimConfig:
    registry = load_registry(args.registry)
    communities = args.community or sorted(registry.communities)
    missing = [c for c in communities if c not in registry.communities]
    if missing:
        raise ValueError(f"unknown community {missing[0]!r} in {args.registry}")
    timezone = registry.communities[communities[0]].timezone
    return SimConfig(
        registry_path=args.registry, seed=args.seed, speed=args.speed,
        start_ms=parse_start(args.start, timezone) if args.start else None,
        duration_s=args.duration, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
        modbus_host=args.modbus_host, modbus_base_port=args.modbus_base_port,
        state_dir=args.state_dir, faults=[parse_fault(f) for f in args.fault],
        min_interval_s=args.min_interval, communities=communities,
        enable_meters=not args.no_meters, enable_inverters=not args.no_inverters,
        emonhub_format=args.emonhub_format,
        day_shift_ms=day_shift_ms(args.as_if, timezone) if args.as_if else 0)


async def _main(simulator: Simulator) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, simulator.request_stop)
    return await simulator.run()


def run(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        print("ioe simulate: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        config = build_config(args)
        simulator = Simulator(config)
    except (RegistryError, FaultError, ValueError, OSError) as exc:
        print(f"ioe simulate: {exc}", file=sys.stderr)
        return 2
    for line in simulator.describe():
        print(line, flush=True)
    print("Ctrl-C stops and saves the counters.", flush=True)
    try:
        summary = asyncio.run(_main(simulator))
    except OSError as exc:  # a port in use, the broker unreachable
        print(f"ioe simulate: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"ioe simulate: {exc}", file=sys.stderr)
        return 1
    print(f"stopped: {summary['published']} MQTT messages published; counters saved in "
          f"{config.state_dir}", flush=True)
    return 0
