"""``ioe mqtt-bridge [run|decode]``: run the bridge, or decode one message by hand.

``decode`` is the field-debugging tool: it runs exactly the decoder the bridge would pick, from
empty state, without any registry lookup, and prints the contract readings as JSON lines (exit 0)
or the reason the payload is refused (stderr, exit 2).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ioe.reading import ReadingError
from ioe.registry import Registry, RegistryError, load_registry
from ioe.settings import get_settings

from .bridge import DEFAULT_CLIENT_ID, Bridge, BridgeConfig
from .decoders import DEFAULT_SUBSCRIPTIONS, DecodeContext, DecodeError, find_decoder
from .decoders.json_map import maps_from_devices
from .decoders.routes import routes_from_devices

log = logging.getLogger("connectors.mqtt_bridge")

DECODE_FAILED = 2


def configure(parser: argparse.ArgumentParser) -> None:
    settings = get_settings()
    parser.add_argument("action", nargs="?", choices=("run", "decode"), default="run",
                        help="run the bridge (default) or decode one message")
    parser.add_argument("--registry", type=Path, default=None,
                        help=f"registry YAML (default $IOE_REGISTRY or {settings.registry_path})")
    parser.add_argument("--tz", default=settings.timezone,
                        help="time zone of devices that report local time (Tasmota)")
    run = parser.add_argument_group("run")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="serve Prometheus metrics on this port")
    run.add_argument("--metrics-addr", default="127.0.0.1",
                     help="address of the metrics endpoint (0.0.0.0 to expose it)")
    run.add_argument("--client-id", default=DEFAULT_CLIENT_ID,
                     help="fixed MQTT client id: the broker keeps its session between runs")
    run.add_argument("--topic-root", default="",
                     help="subscribe under this root only (stripped before decoding)")
    run.add_argument("--subscribe", action="append", default=None, metavar="FILTER",
                     help="MQTT filter to subscribe (repeatable; default: every known family)")
    run.add_argument("--no-follow-registry", action="store_true",
                     help="do not follow the ioe.registry topic (YAML only)")
    run.add_argument("--control", action="store_true",
                     help="also execute the commands (ioe.commands.<community>) for the registry's relays (Shelly, "
                          "Tasmota): connectors/mqtt_bridge/commands.py")
    one = parser.add_argument_group("decode")
    one.add_argument("--topic", help="MQTT topic of the message")
    one.add_argument("--payload", help="payload as text")
    one.add_argument("--received-at", default=None,
                     help="ISO 8601 receipt time (default now); used when the device gives none")


def run(args: argparse.Namespace) -> int:
    try:
        zone = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"unknown time zone {args.tz!r}", file=sys.stderr)
        return DECODE_FAILED
    if args.action == "decode":
        return decode_command(args, zone)
    return run_command(args)


def _registry(path: Path | None, required: bool) -> Registry | None:
    path = path or get_settings().registry_path
    if not path.exists():
        if required:
            raise RegistryError(f"{path}: registry file not found")
        return None
    return load_registry(path)


def _received_at_ms(text: str | None) -> int:
    if not text:
        return int(time.time() * 1000)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def decode_command(args: argparse.Namespace, zone: ZoneInfo) -> int:
    if args.topic is None or args.payload is None:
        print("decode needs --topic and --payload", file=sys.stderr)
        return DECODE_FAILED
    try:
        received = _received_at_ms(args.received_at)
    except ValueError:
        print(f"--received-at {args.received_at!r} is not ISO 8601", file=sys.stderr)
        return DECODE_FAILED
    ctx = DecodeContext(timezone=zone)
    if args.registry is not None:  # only for the JSON mappings and routes it configures
        try:
            registry = _registry(args.registry, required=True)
        except RegistryError as exc:
            print(str(exc), file=sys.stderr)
            return DECODE_FAILED
        if registry:
            ctx.json_maps = tuple(maps_from_devices(registry.devices())[0])
            ctx.routes = tuple(routes_from_devices(registry.devices())[0])
    payload = args.payload.encode()
    found = find_decoder(args.topic, ctx, payload)
    if found is None:
        print(f"no_decoder: no decoder recognises topic {args.topic!r}", file=sys.stderr)
        return DECODE_FAILED
    decoder, topic = found
    try:
        decoded = decoder.decode(topic, payload, received, ctx)
        readings = [r.validated() for r in decoded.readings]
    except DecodeError as exc:
        print(f"{exc.reason} ({decoder.name}): {exc.detail}", file=sys.stderr)
        return DECODE_FAILED
    except ReadingError as exc:
        print(f"invalid_reading ({decoder.name}): {exc}", file=sys.stderr)
        return DECODE_FAILED
    except (KeyError, TypeError, ValueError) as exc:
        print(f"decode_error ({decoder.name}): {type(exc).__name__}: {exc}", file=sys.stderr)
        return DECODE_FAILED
    for item in readings:
        sys.stdout.write(item.to_json().decode() + "\n")
    if not readings:
        print(f"{decoder.name}: no reading ({decoded.ignored})", file=sys.stderr)
    return 0


def run_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        registry = _registry(args.registry, required=args.registry is not None)
    except RegistryError as exc:
        log.error("%s", exc)
        return 1
    if registry is None:
        log.warning("no registry file: every device is unknown until ioe.registry delivers")
    config = BridgeConfig(
        settings=settings, registry=registry, client_id=args.client_id,
        topic_root=args.topic_root,
        subscriptions=tuple(args.subscribe) if args.subscribe else DEFAULT_SUBSCRIPTIONS,
        timezone=args.tz, follow_registry=not args.no_follow_registry,
        metrics_port=args.metrics_port, metrics_addr=args.metrics_addr)
    stop = threading.Event()

    def _request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the messages in hand", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    bridge = Bridge(config)
    log.info("mqtt-bridge starting: MQTT %s:%s, Kafka %s, client id %s",
             settings.mqtt_host, settings.mqtt_port, settings.kafka_bootstrap, args.client_id)
    relays = None
    if args.control:  # the same (followed) registry says which relays are whose
        from .commands import RelayCommands

        relays = RelayCommands(settings, bridge.registry, client_id=f"{args.client_id}-control",
                               topic_root=args.topic_root).start()
    try:
        return 0 if bridge.run_until(stop) else 1
    finally:
        if relays is not None:
            relays.stop()
