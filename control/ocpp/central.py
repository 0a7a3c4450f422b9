"""The OCPP 1.6J Central System: chargers connect here; readings out, commands in.

Why one process does both: an OCPP charger has one websocket, to its central system, and
everything travels on it — its meter values one way, our charging profiles the other.

* **Connections.** ``ws://HOST:PORT/<anything>/<chargePointId>`` with subprotocol ``ocpp1.6``;
  a charge point the registry does not know (``protocol: {type: ocpp, charge_point: …}``) is
  refused at the handshake (HTTP 404), one without ``ocpp1.6`` is closed. A charger with
  ``auth_key_env`` must present its key (security profile 1, HTTP Basic; 401 otherwise); TLS
  (profile 2) is the reverse proxy's, as for the web server. A second connection
  of the same charge point replaces the first (a charger reconnecting after a network loss
  while its old TCP connection is still half open).
* **Readings.** ``MeterValues`` (and the energy registers of ``StartTransaction`` /
  ``StopTransaction``) become contract readings (:mod:`control.ocpp.meter`) of the registry
  device on ``ioe.readings``; the charger gets its answer only once Kafka has them (a charger
  retries an unanswered message: nothing is lost while Kafka is away). A reading the contract
  refuses goes to ``ioe.deadletter``.
* **Commands.** :class:`control.bus.ExecutorLoop` hands over the ``ioe.commands.<community>`` of the
  registry's chargers (``ev_current_a``, ``ev_power_w``). A command for a charger that is
  connected and accepted runs at once (one at a time per charger, in order): bounds
  (:mod:`control.ocpp.limits`; refused: nothing sent), ``SetChargingProfile`` with a duration,
  ``GetCompositeSchedule`` for the read-back. A command for a charger that is not connected
  waits *until its deadline* and is then answered ``expired``; a charger that connects later
  never sees it. The deadline is checked again just before anything is sent.

Authorisation of drivers (``Authorize``, ``StartTransaction``) is accepted for every id tag:
the charger's own local list or free-vend mode decides who charges; the product only steers
how fast. Id tags are never logged (they open the charger).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from kafka.errors import KafkaError
from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    ChargingRateUnitType,
    ClearChargingProfileStatus,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from control.bus import ExecutorLoop, now_ms
from control.commands import device_kind
from control.ocpp import meter
from control.ocpp.limits import (
    LIMIT_KEYS,
    ChargerSpec,
    Composite,
    OutOfBounds,
    holds,
    iso,
    plan,
    readback,
)
from ioe.deadletter import dead_letter, encode_dead_letter
from ioe.kafka import make_producer
from ioe.logsafe import clean
from ioe.messages import Command, CommandResult, CommandStatus
from ioe.reading import Reading, ReadingError
from ioe.registry import Registry
from ioe.settings import Settings
from ioe.topics import DEADLETTER, READINGS

log = logging.getLogger(__name__)
#: the library logs every frame at INFO: useful by hand (``--log-frames``), noise otherwise
WIRE = logging.getLogger("control.ocpp.wire")
WIRE.setLevel(logging.WARNING)

EXECUTOR = "ocpp-central"
SUBPROTOCOL = Subprotocol("ocpp1.6")
#: not 9000, the usual OCPP example port: ClickHouse's native port on the same machine
DEFAULT_PORT = 8887


def chargers(registry: Registry) -> dict[str, ChargerSpec]:
    """charge point id → spec, for every OCPP device of the registry (a device whose protocol
    is unusable is logged and left out: it cannot connect)."""
    out: dict[str, ChargerSpec] = {}
    for device in registry.devices():
        if device_kind(device) != "ev":
            continue
        try:
            spec = ChargerSpec.of(device)
        except OutOfBounds as exc:
            log.error("ocpp: %s", exc)
            continue
        out[spec.charge_point] = spec
    return out


def charge_point_id(path: str) -> str:
    """The last segment of the websocket path (``/ocpp/CP-1`` → ``CP-1``)."""
    return unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])


def _basic_auth_ok(header: str | None, user: str, key: str) -> bool:
    """``Authorization: Basic base64(user:key)``, compared in constant time."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, sep, given_key = base64.b64decode(token, validate=True).decode().partition(
            ":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(sep) and hmac.compare_digest(given_user.encode(), user.encode()) and (
        hmac.compare_digest(given_key.encode(), key.encode()))


@dataclass
class _Waiting:
    """A command for a charger that is not connected, until its deadline."""

    command: Command
    timer: asyncio.TimerHandle | None = None
    done: bool = False


class Session(ChargePoint):
    """One connected charge point: the library's ChargePoint with the central's handlers."""

    def __init__(self, cp_id: str, connection: ServerConnection, central: CentralSystem
                 ) -> None:
        super().__init__(cp_id, connection, response_timeout=central.timeout_s, logger=WIRE)
        self.central = central
        self.ready = False
        self.lock = asyncio.Lock()
        self.status: dict[int, str] = {}

    @property
    def spec(self) -> ChargerSpec | None:
        return self.central.charger(self.id)

    def _alive(self) -> None:
        """A charger that talks to us after a central restart does not boot again: any
        message of a known charger makes it ready for commands."""
        if not self.ready and self.spec is not None:
            asyncio.get_running_loop().call_soon(self.central.ready, self)

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any
                ) -> call_result.BootNotification:
        known = self.spec is not None
        log.info("ocpp: %s booted (%s %s): %s", clean(self.id), clean(charge_point_vendor),
                 clean(charge_point_model), "accepted" if known else "rejected")
        return call_result.BootNotification(
            current_time=iso(now_ms()), interval=self.central.heartbeat_s,
            status=RegistrationStatus.accepted if known else RegistrationStatus.rejected)

    @after(Action.boot_notification)
    def after_boot(self, **_: Any) -> None:
        if self.spec is not None:
            self.central.ready(self)

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        self._alive()
        return call_result.Heartbeat(current_time=iso(now_ms()))

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any
                  ) -> call_result.StatusNotification:
        self._alive()
        self.status[connector_id] = status
        level = logging.WARNING if status == "Faulted" else logging.INFO
        log.log(level, "ocpp: %s connector %d %s (%s)", clean(self.id), connector_id,
                clean(status), clean(error_code))
        return call_result.StatusNotification()

    def _connector_status(self) -> str | None:
        spec = self.spec
        return self.status.get(spec.connector) if spec is not None else None

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                              **_: Any) -> call_result.MeterValues:
        self._alive()
        spec = self.spec
        # the configured connector's meter (connector 0 is the whole charge point: only when
        # the registry says so, or the same energy would be counted twice)
        if spec is not None and connector_id == spec.connector:
            await self.central.publish(meter.readings(spec, meter_value,
                                                      self._connector_status()))
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        self._alive()
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    async def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                       **_: Any) -> call_result.StartTransaction:
        self._alive()
        spec = self.spec
        if spec is not None and connector_id == spec.connector:
            await self.central.publish([meter.register_reading(spec, meter_start, timestamp,
                                                               "Charging")])
        transaction = self.central.next_transaction()
        log.info("ocpp: %s connector %d: transaction %d started", clean(self.id), connector_id,
                 transaction)
        return call_result.StartTransaction(transaction_id=transaction,
                                            id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.stop_transaction)
    async def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int,
                      transaction_data: list[dict[str, Any]] | None = None, **_: Any
                      ) -> call_result.StopTransaction:
        self._alive()
        spec = self.spec
        if spec is not None:
            found = meter.readings(spec, transaction_data or ())
            found.append(meter.register_reading(spec, meter_stop, timestamp,
                                                self._connector_status()))
            await self.central.publish(found)
        log.info("ocpp: %s: transaction %d stopped", clean(self.id), transaction_id)
        return call_result.StopTransaction()


@dataclass
class _Outcome:
    status: str
    readback: float | None = None
    detail: str = ""
    written: list[dict[str, Any]] = field(default_factory=list)


class CentralSystem:
    """The websocket server and the command executor for the registry's chargers.

    ``registry`` is read at every connection and command (the follower swaps it in place), so
    a charger added to the registry can connect without restart. :meth:`start` returns once the
    server listens (``port`` is then the real port, also when 0 was asked) and the executor has
    its partitions."""

    def __init__(self, settings: Settings, registry: Registry, *, host: str = "0.0.0.0",
                 port: int = DEFAULT_PORT, heartbeat_s: int = 60, timeout_s: float = 10.0,
                 group_id: str | None = None, require_auth: bool = False) -> None:
        self.settings = settings
        self.require_auth = require_auth
        self.registry = registry
        self.host = host
        self.port = port
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.sessions: dict[str, Session] = {}
        self.waiting: dict[str, list[_Waiting]] = {}
        self.commands = ExecutorLoop(settings, group_id=group_id or
                                     f"ioe-ocpp-{socket.gethostname()}", executor=EXECUTOR,
                                     handles=self.handles, execute=self.execute,
                                     known=registry.communities)
        #: transaction ids continue from the clock, so a restart never reuses the id of a
        #: transaction a charger still has open (int32 until 2038, one id per second on average)
        self._transactions = int(time.time())
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._error: BaseException | None = None

    # -- registry ----------------------------------------------------------------------------
    def charger(self, cp_id: str) -> ChargerSpec | None:
        """The registry's charger of this charge point id (read at every use: the follower
        may have changed the registry)."""
        for device in self.registry.devices():
            if device_kind(device) == "ev" and str(
                    device.protocol.get("charge_point") or device.id) == cp_id:
                try:
                    return ChargerSpec.of(device)
                except OutOfBounds:
                    return None
        return None

    def charger_of_device(self, device_id: str) -> ChargerSpec | None:
        device = self.registry.device(device_id)
        if device is None or device_kind(device) != "ev":
            return None
        try:
            return ChargerSpec.of(device)
        except OutOfBounds:
            return None

    def next_transaction(self) -> int:
        self._transactions += 1
        return self._transactions

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> CentralSystem:
        self._producer = make_producer(self.settings)
        self._thread = threading.Thread(target=self._main, name="ocpp-central", daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout_s) or self._error is not None:
            raise RuntimeError(f"OCPP central system did not listen on {self.host}:"
                               f"{self.port}: {self._error}")
        known = chargers(self.registry)
        log.info("ocpp: central system on ws://%s:%d/, %d chargers in the registry",
                 self.host, self.port, len(known))
        for cp_id in sorted(cp for cp, spec in known.items() if spec.auth_key_env is None):
            log.warning("ocpp: %s connects without a key (no protocol.auth_key_env)%s",
                        cp_id, ": refused (--require-auth)" if self.require_auth else "")
        self.commands.start(timeout_s)
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - start() reports it
            self._error = exc
            self._listening.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, self.host, self.port, subprotocols=[SUBPROTOCOL],
                         process_request=self._check_path) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._listening.set()
            await self._stop.wait()
        for entries in self.waiting.values():
            for entry in entries:
                if not entry.done:
                    entry.done = True
                    await self._report(entry.command, _Outcome(
                        CommandStatus.FAILED,
                        detail="central system stopped before the charger connected"))
        self.waiting.clear()

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(15)
        self.commands.stop()
        if self._producer is not None:
            self._producer.close(timeout=5)

    # -- connections -------------------------------------------------------------------------
    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse at the handshake what must not connect: an unknown charge point, or one
        without its key (OCPP 1.6 security profile 1). Never logs the key."""
        cp_id = charge_point_id(request.path)
        spec = self.charger(cp_id)
        if spec is None:
            log.warning("ocpp: refused connection of unknown charge point %r from %s",
                        clean(cp_id), connection.remote_address)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        if spec.auth_key_env is None:
            if self.require_auth:
                log.warning("ocpp: refused %s: no auth_key_env in the registry and "
                            "--require-auth", clean(cp_id))
                return connection.respond(HTTPStatus.FORBIDDEN, "authentication required\n")
            return None
        key = os.environ.get(spec.auth_key_env)
        if not key:
            log.error("ocpp: refused %s: its key variable %s is not set", clean(cp_id),
                      spec.auth_key_env)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "no key configured\n")
        if not _basic_auth_ok(request.headers.get("Authorization"), cp_id, key):
            log.warning("ocpp: refused %s from %s: wrong or missing credentials", clean(cp_id),
                        connection.remote_address)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
            return response
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        cp_id = charge_point_id(connection.request.path if connection.request else "")
        if connection.subprotocol != SUBPROTOCOL:
            log.warning("ocpp: %s did not offer ocpp1.6: closed", clean(cp_id))
            await connection.close(1002, "subprotocol ocpp1.6 required")
            return
        old = self.sessions.get(cp_id)
        session = Session(cp_id, connection, self)
        self.sessions[cp_id] = session
        if old is not None:
            log.info("ocpp: %s reconnected: closing its previous connection", clean(cp_id))
            old.ready = False
            await old._connection.close(1000, "replaced by a new connection")
        log.info("ocpp: %s connected from %s", clean(cp_id), connection.remote_address)
        try:
            await session.start()
        except ConnectionClosed:
            pass
        finally:
            session.ready = False
            if self.sessions.get(cp_id) is session:
                del self.sessions[cp_id]
            log.info("ocpp: %s disconnected", clean(cp_id))

    def ready(self, session: Session) -> None:
        """The charger may take commands: run what waited for it (still within deadline)."""
        if session.ready or self.sessions.get(session.id) is not session:
            return
        session.ready = True
        for entry in self.waiting.pop(session.id, []):
            if entry.done:
                continue
            entry.done = True
            if entry.timer is not None:
                entry.timer.cancel()
            asyncio.get_running_loop().create_task(self._run(session, entry.command))

    # -- readings ----------------------------------------------------------------------------
    async def publish(self, readings: Iterable[Reading]) -> None:
        """Send and wait for Kafka: the charger's answer means the readings are safe."""
        topic = self.settings.topic
        futures = []
        for reading in readings:
            try:
                valid = reading.validated()
            except ReadingError as exc:
                record = dead_letter(source=meter.SOURCE, reason="invalid_reading",
                                     detail=str(exc), payload=reading.to_json(),
                                     origin=reading.device_id)
                futures.append(self._producer.send(topic(DEADLETTER), key=meter.SOURCE,
                                                   value=encode_dead_letter(record)))
                log.error("ocpp: %s: reading refused by the contract: %s", reading.device_id,
                          exc)
                continue
            futures.append(self._producer.send(topic(READINGS), key=valid.community_id,
                                               value=valid.to_json()))
        if futures:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, lambda: [f.get(timeout=30) for f in futures])
            except KafkaError as exc:  # the charger gets a CallError and sends them again
                raise OCPPError(f"readings not stored: {exc}") from exc

    # -- commands ----------------------------------------------------------------------------
    def handles(self, command: Command) -> bool:
        return self.charger_of_device(command.device_id) is not None

    def execute(self, command: Command) -> None:
        """On the executor's thread: hand the command to the event loop, answer later."""
        if self._loop is None:
            raise RuntimeError("central system not running")
        asyncio.run_coroutine_threadsafe(self._submit(command), self._loop)

    async def _submit(self, command: Command) -> None:
        spec = self.charger_of_device(command.device_id)
        if spec is None:
            await self._report(command, _Outcome(CommandStatus.FAILED,
                                                 detail="not a charger of the registry"))
            return
        log.info("ocpp: %s asks %s %s=%r (%s)", command.requested_by, spec.charge_point,
                 command.key, command.value, command.reason)
        session = self.sessions.get(spec.charge_point)
        if session is not None and session.ready:
            await self._run(session, command)
            return
        loop = asyncio.get_running_loop()
        entry = _Waiting(command)
        delay_s = max(0.0, (command.deadline_ms - now_ms()) / 1000) + 0.002
        entry.timer = loop.call_later(delay_s, self._expire, spec.charge_point, entry)
        self.waiting.setdefault(spec.charge_point, []).append(entry)
        log.info("ocpp: %s is not connected: command %s waits until its deadline",
                 spec.charge_point, command.command_id)

    def _expire(self, cp_id: str, entry: _Waiting) -> None:
        if entry.done:
            return
        entry.done = True
        entries = self.waiting.get(cp_id, [])
        if entry in entries:
            entries.remove(entry)
        log.warning("ocpp: command %s for %s expired: the charger did not connect in time",
                    entry.command.command_id, cp_id)
        asyncio.get_running_loop().create_task(self._report(entry.command, _Outcome(
            CommandStatus.EXPIRED, detail=f"deadline {entry.command.deadline_ms} passed: "
            f"charger {cp_id} not connected; never sent")))

    async def _run(self, session: Session, command: Command) -> None:
        async with session.lock:  # one command at a time per charger, in order
            try:
                outcome = await self._apply(session, command)
            except TimeoutError:
                outcome = _Outcome(CommandStatus.FAILED,
                                   detail=f"no answer from the charger in {self.timeout_s:g} s")
            except ConnectionClosed:
                outcome = _Outcome(CommandStatus.FAILED, detail="charger disconnected")
            except OCPPError as exc:
                outcome = _Outcome(CommandStatus.FAILED, detail=f"charger error: {exc}")
        await self._report(command, outcome)

    async def _apply(self, session: Session, command: Command) -> _Outcome:
        spec = session.spec
        if spec is None or spec.device_id != command.device_id:
            return _Outcome(CommandStatus.FAILED, detail="charger no longer in the registry")
        try:
            limit = spec.check(command.key, command.value)
        except OutOfBounds as exc:
            return _Outcome(CommandStatus.FAILED, detail=f"refused: {exc}; nothing sent")
        unit = LIMIT_KEYS[command.key]
        now = now_ms()
        if command.expired(now):  # never late, even by the time spent queueing here
            return _Outcome(CommandStatus.EXPIRED, detail=f"deadline {command.deadline_ms} "
                            f"passed before sending; never sent")
        if limit is None:
            written = [{"action": "ClearChargingProfile", "id": spec.profile_id}]
            cleared = await session.call(call.ClearChargingProfile(id=spec.profile_id),
                                         suppress=False)
            if cleared.status not in (ClearChargingProfileStatus.accepted,
                                      ClearChargingProfileStatus.unknown):
                return _Outcome(CommandStatus.FAILED, detail=f"ClearChargingProfile: "
                                f"{cleared.status}", written=written)
            duration = spec.profile_s
        else:
            profile = plan(spec, command.key, limit, now, command.revert_s)
            written = [{"action": "SetChargingProfile", "connectorId": profile.connector,
                        "csChargingProfiles": profile.profile()}]
            answer = await session.call(call.SetChargingProfile(
                connector_id=profile.connector, cs_charging_profiles=profile.profile()),
                suppress=False)
            if answer.status != "Accepted":
                return _Outcome(CommandStatus.FAILED, detail=f"SetChargingProfile: "
                                f"{answer.status}", written=written)
            duration = profile.duration_s
        schedule = await session.call(call.GetCompositeSchedule(
            connector_id=spec.connector, duration=min(duration, 3600),
            charging_rate_unit=ChargingRateUnitType(str(unit))), suppress=False)
        at = now_ms()
        composite = Composite.of(schedule.schedule_start, schedule.charging_schedule, at) \
            if schedule.status == "Accepted" else None
        reported = readback(spec, composite, unit, at)
        if not holds(limit, reported, spec, unit):
            return _Outcome(CommandStatus.FAILED, reported,
                            f"charger reports {reported!r} {unit} in force, asked {limit!r}",
                            written)
        detail = "profile cleared" if limit is None else (
            f"TxDefaultProfile {limit:g} {unit} for {duration} s, then the charger's default")
        return _Outcome(CommandStatus.ACKNOWLEDGED, reported, detail, written)

    async def _report(self, command: Command, outcome: _Outcome) -> None:
        result = CommandResult(command.command_id, command.community_id, command.device_id,
                               command.key, outcome.status, command.value, outcome.readback,
                               EXECUTOR, now_ms(), outcome.detail, outcome.written)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.commands.report,
                                                             result)
        except Exception:  # noqa: BLE001 - logged: the sender times out and says expired
            log.exception("ocpp: result of %s not sent", command.command_id)
