"""The edge's side of active control: execute the commands for this edge's devices.

Why through the agent's own links: a device often accepts one TCP connection only, and a write
must never interleave with a poll. The executor uses the :class:`Link` (and its lock) the
poller of the same device uses, writes through the map's ``writable`` section
(:mod:`connectors.modbus_edge.writes`: bounds, scale factor, enable flag, revert timeout, read
back) and reports on ``ioe.command-results``. A command past its deadline is answered
``expired`` by :class:`control.bus.ExecutorLoop` and never written.

It reads only the command topics of its devices' communities (``ioe.commands.<community>``),
with the credentials the agent forwards readings with — an enrolment bundle's SASL_SSL user,
whose ACL allows exactly those topics and consumer groups named ``ioe-modbus-edge-<principal>…``.

Enabled by a ``control:`` section in the edge config (``ioe modbus-edge run``)::

    control:
      enabled: true
      group_id: modbus-edge-plant-1   # one per edge: its committed offsets survive a restart
                                      # (default: ioe-modbus-edge-<bundle principal or host>)
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from connectors.modbus_edge.device import DeviceConfig, Link, ModbusReadError
from connectors.modbus_edge.maps import MapError, RegisterMap
from connectors.modbus_edge.writes import (
    Writable,
    WriteLate,
    Writer,
    WriteRefused,
    load_writables,
)
from control.bus import ExecutorLoop, now_ms
from ioe.messages import Command, CommandResult, CommandStatus
from ioe.settings import Settings

log = logging.getLogger(__name__)

EXECUTOR = "modbus-edge"


def writables_of(device: DeviceConfig) -> dict[str, Writable]:
    """The writable points of a device's shipped map (a map without them: nothing writable)."""
    source = device.map.source if isinstance(device.map, RegisterMap) else str(device.map)
    try:
        return load_writables(source)
    except MapError:
        return {}


class EdgeCommands:
    """Executes commands for the devices of one edge (``devices``: id -> config and link)."""

    def __init__(self, settings: Settings, devices: Mapping[str, tuple[DeviceConfig, Link]],
                 *, communities: set[str], group_id: str | None = None,
                 client_options: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.writers = {device_id: Writer(config, link, writables_of(config))
                        for device_id, (config, link) in devices.items()}
        options = dict(client_options or {})
        self.loop = ExecutorLoop(settings, group_id=group_id or default_group(options),
                                 executor=EXECUTOR,
                                 handles=lambda c: c.device_id in self.writers,
                                 execute=self.execute, communities=communities,
                                 client_options=options)

    def execute(self, command: Command) -> CommandResult:
        writer = self.writers[command.device_id]

        def result(status: str, readback: Any = None, detail: str = "",
                   written: list[dict[str, Any]] | None = None) -> CommandResult:
            return CommandResult(command.command_id, command.community_id, command.device_id,
                                 command.key, status, command.value, readback, EXECUTOR,
                                 now_ms(), detail, written or [])

        try:
            done = writer.write(command.key, command.value, command.revert_s,
                                not_after_ms=command.deadline_ms)
        except WriteLate as exc:  # a poll held the link past the deadline: never late
            return result(CommandStatus.EXPIRED, detail=str(exc))
        except WriteRefused as exc:
            return result(CommandStatus.FAILED, detail=f"refused by the map: {exc}")
        except ModbusReadError as exc:
            return result(CommandStatus.FAILED, detail=f"modbus: {exc}")
        detail = f"revert {done.revert}" + (f" ({done.revert_s} s)" if done.revert_s else "")
        if not done.verified:
            detail = f"write-only point: accepted by the device, cannot be read back; {detail}"
        if not done.ok:
            detail = f"read back {done.readback!r} (enabled {done.enabled}); {detail}"
        return result(CommandStatus.ACKNOWLEDGED if done.ok else CommandStatus.FAILED,
                      done.readback, detail, done.written)

    def start(self) -> EdgeCommands:
        self.loop.start()
        log.info("modbus edge: executing commands for %d devices", len(self.writers))
        return self

    def stop(self) -> None:
        self.loop.stop()


def default_group(client_options: Mapping[str, Any]) -> str:
    """``ioe-modbus-edge-<principal>`` with a bundle (the only groups its ACL allows), else
    ``ioe-modbus-edge-<host>``."""
    return f"ioe-modbus-edge-{client_options.get('sasl_plain_username') or socket.gethostname()}"


def attach(agent: Any, options: Mapping[str, Any] | None) -> EdgeCommands | None:
    """Start executing commands for a running :class:`Agent` when its config enables it."""
    options = options or {}
    if not options.get("enabled"):
        return None
    devices = {p.device.id: (p.device, p.link) for p in agent.pollers}
    registry = agent.router.registry
    communities = {known.community_id for device_id in devices
                   if registry is not None and (known := registry.device(device_id))}
    if not communities:
        log.warning("modbus edge: control enabled but none of its devices is in the registry; "
                    "no commands will be executed")
        return None
    return EdgeCommands(agent.settings, devices, communities=communities,
                        group_id=options.get("group_id"),
                        client_options=agent.config.kafka_client).start()
