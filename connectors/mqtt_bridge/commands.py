"""The MQTT bridge's side of active control: switch relays and plugs, read their state back.

Why a client of its own: the bridge's client acks in Kafka order with a persistent session;
a command is interactive and must not queue behind readings. This executor has its own clean
session, subscribes to the status topic of a device before it publishes the command, and
accepts only a fresh (not retained) status as the read-back:

* Shelly Gen1: ``shellies/<id>/relay/<n>/command`` ``on``/``off``; state on
  ``shellies/<id>/relay/<n>``;
* Shelly Gen2/Gen3: RPC ``Switch.Set`` on ``<prefix>/rpc`` (reply on ``<src>/rpc``), then
  ``Switch.GetStatus`` for the read-back (``output``);
* Tasmota: ``cmnd/<topic>/POWER[<n>]`` ``ON``/``OFF``; state on ``stat/<topic>/RESULT``
  (``{"POWER": "ON"}``) or ``stat/<topic>/POWER``.

A device is found in the registry (``protocol: {type: mqtt, decoder: …, topic_id | topic}``);
a command past its deadline is answered ``expired`` by :class:`control.bus.ExecutorLoop`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from control.bus import ExecutorLoop, now_ms
from control.commands import device_kind
from ioe.messages import Command, CommandResult, CommandStatus
from ioe.registry import Device, Registry
from ioe.settings import Settings

log = logging.getLogger(__name__)

EXECUTOR = "mqtt-bridge"
GEN1 = ("shelly-gen1", "shelly_gen1")
GEN2 = ("shelly-gen2", "shelly_gen2", "shelly-gen3")


def _base_and_channel(device: Device) -> tuple[str, int]:
    base, sep, tail = device.id.rpartition(":")
    channel = int(tail) if sep and tail.isdigit() else 0
    if not sep or not tail.isdigit():
        base = device.id
    channel = int(device.protocol.get("relay", channel))
    return base, channel


@dataclass(frozen=True)
class RelayPath:
    family: str  # gen1 | gen2 | tasmota
    command_topic: str
    status_topics: tuple[str, ...]
    channel: int


def relay_path(device: Device, root: str = "") -> RelayPath:
    """Where a relay device takes its command and publishes its state."""
    decoder = device.protocol.get("decoder")
    base, channel = _base_and_channel(device)
    topic_id = str(device.protocol.get("topic_id") or base)
    prefix = f"{root.strip('/')}/" if root.strip("/") else ""
    if decoder in GEN1:
        head = str(device.protocol.get("topic") or f"shellies/{topic_id}")
        state = f"{prefix}{head}/relay/{channel}"
        return RelayPath("gen1", f"{state}/command", (state,), channel)
    if decoder in GEN2:
        head = str(device.protocol.get("topic") or topic_id)
        return RelayPath("gen2", f"{prefix}{head}/rpc", (), channel)
    if decoder == "tasmota":
        head = str(device.protocol.get("topic") or topic_id)
        suffix = str(device.protocol["relay"]) if "relay" in device.protocol else ""
        return RelayPath("tasmota", f"{prefix}cmnd/{head}/POWER{suffix}",
                         (f"{prefix}stat/{head}/RESULT", f"{prefix}stat/{head}/POWER{suffix}"),
                         channel)
    raise ValueError(f"{device.id}: decoder {decoder!r} has no relay commands")


def tasmota_state(topic: str, payload: bytes, suffix: str) -> str | None:
    text = payload.decode(errors="replace").strip()
    if topic.endswith("/RESULT"):
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        value = data.get(f"POWER{suffix}") if isinstance(data, dict) else None
        if value is None and not suffix and isinstance(data, dict):
            value = data.get("POWER1")
        text = str(value) if value is not None else ""
    word = text.upper()
    return "on" if word in ("ON", "1") else "off" if word in ("OFF", "0") else None


class _Late(RuntimeError):
    """The deadline passed while getting ready to publish: the command is not sent."""


class _Waiter:
    def __init__(self, topics: tuple[str, ...], parse: Callable[[str, bytes], Any]) -> None:
        self.topics = topics
        self.parse = parse
        self.value: Any = None
        self.done = threading.Event()


class RelayCommands:
    """Executes ``relay`` commands for the registry's MQTT relay devices."""

    def __init__(self, settings: Settings, registry: Registry, *, client_id: str | None = None,
                 topic_root: str = "", group_id: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.registry = registry
        self.root = topic_root
        self.timeout_s = timeout_s
        self.src = client_id or f"ioe-control-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []
        self._subscribed: set[str] = set()
        self._suback: dict[int, threading.Event] = {}
        self._sub_lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.src,
                                  clean_session=True, protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.loop = ExecutorLoop(settings, group_id=group_id or f"{self.src}-commands",
                                 executor=EXECUTOR, handles=self.handles,
                                 execute=self.execute, known=registry.communities)

    # -- MQTT plumbing -----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not reason.is_failure:
            with self._lock:
                topics = sorted(self._subscribed)
            if topics:
                client.subscribe([(t, 1) for t in topics])
            self._connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        with self._sub_lock:  # the SUBACK may beat the bookkeeping in _subscribe
            event = self._suback.pop(mid, None)
        if event is not None:
            event.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
                    ) -> None:
        if message.retain:
            return  # an old state: never a read-back
        with self._lock:
            waiters = [w for w in self._waiters if message.topic in w.topics]
        for waiter in waiters:
            value = waiter.parse(message.topic, bytes(message.payload))
            if value is not None and not waiter.done.is_set():
                waiter.value = value
                waiter.done.set()

    def _subscribe(self, topics: tuple[str, ...]) -> None:
        new = [t for t in topics if t not in self._subscribed]
        if not new:
            return
        event = threading.Event()
        with self._sub_lock:
            result, mid = self.client.subscribe([(t, 1) for t in new])
            if mid is not None:
                self._suback[mid] = event
        if not event.wait(self.timeout_s):
            log.warning("no SUBACK for %s within %.0f s", new, self.timeout_s)
        with self._lock:
            self._subscribed.update(new)

    def _exchange(self, topics: tuple[str, ...], parse: Callable[[str, bytes], Any],
                  publish_topic: str, payload: bytes, until: float,
                  deadline_ms: int | None = None) -> Any:
        """Subscribe, publish, wait for the first fresh answer (None on timeout)."""
        self._subscribe(topics)  # before the clock of the answer: a broker's SUBACK is not
        until = max(until, time.monotonic() + 0.5)  # the device's time
        waiter = _Waiter(topics, parse)
        if deadline_ms is not None and now_ms() > deadline_ms:
            raise _Late(f"deadline {deadline_ms} passed before publishing")
        with self._lock:
            self._waiters.append(waiter)
        try:
            self.client.publish(publish_topic, payload, qos=1)
            waiter.done.wait(max(0.0, until - time.monotonic()))
            return waiter.value
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def _rpc(self, prefix_topic: str, method: str, params: dict[str, Any], until: float,
             deadline_ms: int | None = None) -> dict[str, Any] | None:
        request_id = next(self._ids)
        # a Gen2 device answers on "<src>/rpc": src carries the topic root too
        src = f"{self.root.strip('/')}/{self.src}" if self.root.strip("/") else self.src
        reply = f"{src}/rpc"

        def parse(topic: str, payload: bytes) -> Any:
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return None
            if isinstance(data, dict) and data.get("id") == request_id:
                return data
            return None

        body = orjson.dumps({"id": request_id, "src": src, "method": method,
                             "params": params})
        return self._exchange((reply,), parse, prefix_topic, body, until, deadline_ms)

    # -- the executor ------------------------------------------------------------------------
    def handles(self, command: Command) -> bool:
        device = self.registry.device(command.device_id)
        return device is not None and device_kind(device) == "relay"

    def execute(self, command: Command) -> CommandResult:
        device = self.registry.device(command.device_id)
        assert device is not None

        def result(status: str, readback: Any = None, detail: str = "",
                   written: list[dict[str, Any]] | None = None) -> CommandResult:
            return CommandResult(command.command_id, command.community_id, command.device_id,
                                 command.key, status, command.value, readback, EXECUTOR,
                                 now_ms(), detail, written or [])

        wanted = str(command.value).lower()
        if command.key != "relay" or wanted not in ("on", "off"):
            return result(CommandStatus.FAILED,
                          detail=f"{command.key}={command.value!r}: relays take relay=on|off")
        path = relay_path(device, self.root)
        remaining_ms = command.deadline_ms - now_ms()
        until = time.monotonic() + max(0.0, min(self.timeout_s, remaining_ms / 1000))
        on = wanted == "on"
        if path.family == "gen2":
            params = {"id": path.channel, "on": on}
            try:
                answer = self._rpc(path.command_topic, "Switch.Set", params, until,
                                   command.deadline_ms)
            except _Late as exc:
                return result(CommandStatus.EXPIRED, detail=str(exc))
            written = [{"topic": path.command_topic, "method": "Switch.Set", "params": params}]
            if answer is None or "error" in answer:
                return result(CommandStatus.FAILED, detail=f"Switch.Set: "
                              f"{(answer or {}).get('error', 'no reply from the device')}",
                              written=written)
            status = self._rpc(path.command_topic, "Switch.GetStatus", {"id": path.channel},
                               until)
            output = ((status or {}).get("result") or {}).get("output")
            readback = None if output is None else ("on" if output else "off")
        else:
            payload = (wanted if path.family == "gen1" else wanted.upper()).encode()
            written = [{"topic": path.command_topic, "payload": payload.decode()}]
            suffix = path.command_topic.rsplit("POWER", 1)[-1] if path.family == "tasmota" \
                else ""

            def parse(topic: str, body: bytes) -> str | None:
                if path.family == "tasmota":
                    return tasmota_state(topic, body, suffix)
                word = body.decode(errors="replace").strip().lower()
                return word if word in ("on", "off") else None

            try:
                readback = self._exchange(path.status_topics, parse, path.command_topic,
                                          payload, until, command.deadline_ms)
            except _Late as exc:
                return result(CommandStatus.EXPIRED, detail=str(exc))
        if readback is None:
            return result(CommandStatus.FAILED, detail="no status from the device in time",
                          written=written)
        if readback != wanted:
            return result(CommandStatus.FAILED, readback, f"device reports {readback}",
                          written)
        return result(CommandStatus.ACKNOWLEDGED, readback, f"{path.family} relay",
                      written)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> RelayCommands:
        self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            raise RuntimeError(f"MQTT {self.settings.mqtt_host}:{self.settings.mqtt_port} "
                               "did not accept the control client")
        self.loop.start(timeout_s)
        return self

    def stop(self) -> None:
        self.loop.stop()
        self.client.disconnect()
        self.client.loop_stop()
