"""One Modbus device: its settings (quirks), its connection, and one poll -> readings.

Quirks are settings, not code paths: a Huawei dongle needs a pause after connect, many
gateways accept one TCP connection only and mix up interleaved requests, busy devices answer
exception 0x06 and must be asked again a little later. So every device talks through a
:class:`Link` (one connection, a lock serialising requests; devices behind the same gateway
or serial line share it), and each request is retried on 0x06 with a growing back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.modbus_edge import sunspec
from connectors.modbus_edge.maps import RegisterMap, decode_points, load_map, parse_map
from connectors.modbus_edge.planner import MAX_REGISTERS, Request, plan
from ioe.reading import Reading, ReadingError, auxiliary_checked

log = logging.getLogger(__name__)

BUSY = 0x06
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 5: "acknowledge", 6: "device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target failed to respond"}


class ModbusReadError(RuntimeError):
    """A request that failed: which one, and the exception code when the device sent one."""

    def __init__(self, device: str, fc: int, address: int, count: int,
                 code: int | None, detail: str) -> None:
        what = (f"exception 0x{code:02X} ({EXCEPTION_NAMES.get(code, 'unknown')})"
                if code is not None else detail)
        super().__init__(f"{device}: fc {fc} address {address} count {count}: {what}")
        self.device, self.fc, self.address, self.count = device, fc, address, count
        self.code, self.detail = code, detail

    @property
    def kind(self) -> str:
        """Label for the error counters: ``exception_06`` or ``io``."""
        return f"exception_{self.code:02x}" if self.code is not None else "io"


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    map: str | RegisterMap
    host: str | None = None
    port: int = 502
    unit: int = 1
    transport: str = "tcp"  # tcp | rtu
    serial_port: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    poll_interval_s: float = 10.0
    timeout_s: float = 3.0
    delay_after_connect_s: float = 0.0
    max_registers: int = MAX_REGISTERS
    busy_retries: int = 3
    busy_backoff_s: float = 0.5
    #: channels to publish ("main" = the device itself, "meter", …); None = every channel
    channels: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def link_key(self) -> tuple[str, ...]:
        if self.transport == "rtu":
            return ("rtu", str(self.serial_port))
        return ("tcp", str(self.host), str(self.port))


DEVICE_KEYS = {f for f in DeviceConfig.__dataclass_fields__ if f not in ("extra",)}


def device_from_dict(raw: Mapping[str, Any]) -> DeviceConfig:
    """Build a device from its config entry; the map's defaults fill what is not given."""
    if not isinstance(raw.get("id"), str) or not raw.get("id"):
        raise ValueError(f"a device needs an 'id': {dict(raw)!r}")
    map_spec = raw.get("map")
    if isinstance(map_spec, dict):
        register_map: RegisterMap = parse_map(map_spec, source=f"device {raw['id']} map")
    elif isinstance(map_spec, str):
        register_map = load_map(map_spec)
    else:
        raise ValueError(f"device {raw['id']}: 'map' must be a map name, a path or a mapping")
    values: dict[str, Any] = {k: v for k, v in register_map.defaults.items() if k in DEVICE_KEYS}
    values.update({k: v for k, v in raw.items() if k in DEVICE_KEYS})
    unknown = set(raw) - DEVICE_KEYS
    if unknown:
        raise ValueError(f"device {raw['id']}: unknown settings {sorted(unknown)}")
    values["map"] = register_map
    if values.get("channels") is not None:
        values["channels"] = tuple("" if c == "main" else str(c) for c in values["channels"])
    if values.get("transport", "tcp") not in ("tcp", "rtu"):
        raise ValueError(f"device {raw['id']}: transport must be tcp or rtu")
    return DeviceConfig(**values)


class Link:
    """One connection (TCP socket or serial line) with a lock: requests never interleave."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._client: ModbusTcpClient | ModbusSerialClient | None = None

    def _make_client(self) -> ModbusTcpClient | ModbusSerialClient:
        c = self.config
        if c.transport == "rtu":
            return ModbusSerialClient(str(c.serial_port), baudrate=c.baudrate, parity=c.parity,
                                      stopbits=c.stopbits, bytesize=c.bytesize,
                                      timeout=c.timeout_s, retries=0)
        return ModbusTcpClient(str(c.host), port=c.port, timeout=c.timeout_s, retries=0)

    def ensure_connected(self, device: DeviceConfig) -> ModbusTcpClient | ModbusSerialClient:
        """Connect when needed; a fresh connection waits the device's delay-after-connect."""
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = self._make_client()
        if not client.connect():
            client.close()
            where = device.serial_port if device.transport == "rtu" else \
                f"{device.host}:{device.port}"
            raise ModbusReadError(device.id, 0, 0, 0, None, f"cannot connect to {where}")
        self._client = client
        if device.delay_after_connect_s > 0:
            time.sleep(device.delay_after_connect_s)
        return client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None


def read_registers(link: Link, device: DeviceConfig, fc: int, address: int,
                   count: int, sleep: Callable[[float], None] = time.sleep) -> list[int]:
    """One read (fc 3 or 4), retried with back-off while the device answers 'busy'."""
    attempt = 0
    while True:
        try:
            client = link.ensure_connected(device)
            call = client.read_holding_registers if fc == 3 else client.read_input_registers
            response = call(address, count=count, device_id=device.unit)
        except ModbusReadError:
            raise
        except (ModbusException, OSError) as exc:
            link.close()  # the connection state is unknown after an I/O failure: start over
            raise ModbusReadError(device.id, fc, address, count, None,
                                  f"{type(exc).__name__}: {exc}") from None
        if not response.isError():
            registers = list(response.registers)
            if len(registers) < count:
                link.close()
                raise ModbusReadError(device.id, fc, address, count, None,
                                      f"short answer ({len(registers)} registers)")
            return registers[:count]
        code = getattr(response, "exception_code", None)
        if code == BUSY and attempt < device.busy_retries:
            sleep(device.busy_backoff_s * (2 ** attempt))
            attempt += 1
            continue
        raise ModbusReadError(device.id, fc, address, count, code, "exception reply")


@dataclass
class PollResult:
    readings: list[Reading]
    values: dict[str, float | str | None]
    points_read: int
    requests: int
    #: channel readings the contract refused (data, error): dead letters, never dropped
    rejected: list[tuple[dict[str, Any], ReadingError]] = field(default_factory=list)


class Poller:
    """Polls one device: discovers (SunSpec), plans once, reads, decodes, builds readings."""

    def __init__(self, device: DeviceConfig, link: Link) -> None:
        self.device = device
        self.link = link
        self.register_map: RegisterMap | None = None
        self.requests: list[Request] = []
        self._last_ts = 0
        if isinstance(device.map, RegisterMap) and device.map.discovery is None:
            self._set_map(device.map)

    def _set_map(self, register_map: RegisterMap) -> None:
        self.register_map = register_map
        self.requests = plan(register_map.points, max_registers=self.device.max_registers,
                             defined=register_map.defined)

    def _read(self, fc: int, address: int, count: int) -> list[int]:
        return read_registers(self.link, self.device, fc, address, count)

    def _ensure_map(self) -> RegisterMap:
        if self.register_map is None:
            base, models, found = sunspec.discover(self._read)
            log.info("%s: SunSpec at %d, models %s", self.device.id, base,
                     [m.id for m in models])
            self._set_map(found)
        assert self.register_map is not None
        return self.register_map

    def poll(self, now_ms: int | None = None) -> PollResult:
        """Read every request (holding the link lock); raises ModbusReadError on failure."""
        with self.link.lock:
            register_map = self._ensure_map()
            ts_ms = int(time.time() * 1000) if now_ms is None else now_ms
            ts_ms = max(ts_ms, self._last_ts + 1)  # (device_id, ts_ms) is the dedup key
            registers: dict[tuple[int, int], int] = {}
            for request in self.requests:
                words = self._read(request.fc, request.address, request.count)
                for offset, word in enumerate(words):
                    registers[(request.fc, request.address + offset)] = word
        self._last_ts = ts_ms
        values = decode_points(register_map.points, registers)
        readings, rejected = build_readings(self.device.id, register_map, values, ts_ms,
                                            self.device.channels)
        points = sum(1 for v in values.values() if v is not None)
        return PollResult(readings, values, points, len(self.requests), rejected)

    def forget_map(self) -> None:
        """After a failure a SunSpec device is rediscovered (its firmware may have changed)."""
        if isinstance(self.device.map, RegisterMap) and self.device.map.discovery:
            self.register_map = None
            self.requests = []


def build_readings(device_id: str, register_map: RegisterMap,
                   values: Mapping[str, float | str | None], ts_ms: int,
                   channels: tuple[str, ...] | None = None
                   ) -> tuple[list[Reading], list[tuple[dict[str, Any], ReadingError]]]:
    """One validated reading per channel that has at least one contract value."""
    by_channel: dict[str, dict[str, Any]] = {}
    for point in register_map.points:
        value = values.get(point.name)
        if point.field is None or value is None:
            continue
        if channels is not None and point.channel not in channels:
            continue
        fields = by_channel.setdefault(point.channel, {})
        if point.field == "status":
            fields["status"] = str(value)
        elif not isinstance(value, str):
            fields.setdefault(point.field, float(value))
    readings: list[Reading] = []
    rejected: list[tuple[dict[str, Any], ReadingError]] = []
    for channel in sorted(by_channel):
        # the contract's one rule for auxiliary values (0 V of an inverter asleep, an
        # unconnected phase's frequency): the same as the MQTT decoders apply
        fields = {k: v for k, v in auxiliary_checked(by_channel[channel]).items()
                  if v is not None}
        if not fields:
            continue  # only implausible auxiliary values: nothing measured on this channel
        data = {"device_id": f"{device_id}:{channel}" if channel else device_id,
                "ts_ms": ts_ms, "source": register_map.source, **fields}
        try:
            readings.append(Reading.from_dict(data))  # the contract's checks, once
        except ReadingError as exc:
            rejected.append((data, exc))
    return readings, rejected


def make_links(devices: Sequence[DeviceConfig]) -> dict[tuple[str, ...], Link]:
    links: dict[tuple[str, ...], Link] = {}
    for device in devices:
        links.setdefault(device.link_key, Link(device))
    return links
