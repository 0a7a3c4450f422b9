"""Remote maintenance of an edge over its authenticated MQTT command channel: no shell, no VPN.

Why MQTT and not SSH or a VPN: the edge already holds a certificate for the secure listener and
the broker's ACL (:mod:`ioe.edge.acl`) already confines it to its own topics, so the same
boundary carries maintenance. An edge reads actions on ``edge/<c>/<e>/commands/maintenance``
(only the control centre, on the loopback listener, can write there) and answers on its own
``edge/<c>/<e>/up/maintenance``. The set of actions is closed — push a config, send recent log
lines, restart the agent — so a stolen operator workstation or a forged message can at most do
those three things, never run a command.

Every action is a typed, versioned JSON message that names who asked (``operator:<name>``, as
control commands do) and carries an expiry: an edge that was offline when the action was sent
(its persistent MQTT session queues it) answers ``expired`` and does nothing. The control centre
appends each action and its outcome to ``<IOE_EDGE_DIR>/maintenance.jsonl``.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ioe.edge import topics
from ioe.edge.bundle import Bundle
from ioe.edge.identity import EdgeId
from ioe.logsafe import clean

log = logging.getLogger(__name__)

#: version of the action and outcome messages; an edge refuses a version it does not know
VERSION = 1
SUFFIX = "maintenance"
DEFAULT_TTL_S = 60.0
MAX_LINES = 1000
JOURNAL = "maintenance.jsonl"


class ActionKind(StrEnum):
    PUSH_CONFIG = "push-config"
    LOGS = "logs"
    RESTART = "restart"


class OutcomeStatus(StrEnum):
    APPLIED = "applied"    # push-config: validated and running now
    DONE = "done"          # logs: the lines are in the outcome
    RESTARTING = "restarting"  # restart: the store is flushed next and the agent re-executes
    REFUSED = "refused"    # invalid config, unknown kind or version; nothing changed
    EXPIRED = "expired"    # arrived after its expiry; not executed
    FAILED = "failed"      # tried and failed; the running state was kept


def now_ms() -> int:
    return int(time.time() * 1000)


def config_version(devices: Any) -> str:
    """A short, stable fingerprint of a device list, so an operator (and the heartbeat) can
    tell which config an edge runs without the config being sent back."""
    return hashlib.sha256(orjson.dumps(devices, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


@dataclass(frozen=True)
class MaintenanceAction:
    kind: ActionKind
    requested_by: str
    issued_ms: int
    expires_ms: int
    action_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: push-config: the edge YAML (its ``devices:``); the edge validates it
    config: str | None = None
    #: logs: how many recent lines
    lines: int = 100
    version: int = VERSION

    @classmethod
    def new(cls, kind: ActionKind, requested_by: str, *, ttl_s: float = DEFAULT_TTL_S,
            **values: Any) -> MaintenanceAction:
        if not requested_by.startswith("operator:") or requested_by == "operator:":
            raise ValueError(f"requester {requested_by!r}: expected operator:<name>")
        issued = now_ms()
        return cls(kind=kind, requested_by=requested_by, issued_ms=issued,
                   expires_ms=issued + int(ttl_s * 1000), **values)

    def expired(self, at_ms: int | None = None) -> bool:
        return (at_ms if at_ms is not None else now_ms()) > self.expires_ms

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> MaintenanceAction:
        data = orjson.loads(payload)
        if not isinstance(data, dict):
            raise ValueError("an action is a JSON object")
        config = data.get("config")
        return cls(kind=ActionKind(str(data["kind"])), requested_by=str(data["requested_by"]),
                   issued_ms=int(data["issued_ms"]), expires_ms=int(data["expires_ms"]),
                   action_id=str(data["action_id"]),
                   config=None if config is None else str(config),
                   lines=int(data.get("lines", 100)), version=int(data.get("version", 0)))


@dataclass(frozen=True)
class MaintenanceOutcome:
    action_id: str
    kind: str
    status: OutcomeStatus
    community: str
    edge: str
    detail: str = ""
    #: the config the edge runs after the action (see :func:`config_version`)
    config_version: str | None = None
    lines: tuple[str, ...] = ()
    answered_ms: int = field(default_factory=now_ms)
    version: int = VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> MaintenanceOutcome:
        data = orjson.loads(payload)
        return cls(action_id=str(data["action_id"]), kind=str(data["kind"]),
                   status=OutcomeStatus(str(data["status"])), community=str(data["community"]),
                   edge=str(data["edge"]), detail=str(data.get("detail", "")),
                   config_version=data.get("config_version"),
                   lines=tuple(str(line) for line in data.get("lines") or ()),
                   answered_ms=int(data.get("answered_ms", 0)),
                   version=int(data.get("version", 0)))


# -- the control centre's side -------------------------------------------------------------------
class MaintenanceJournal:
    """Append-only JSONL of every action sent and its outcome (or the lack of one).

    Why append-only lines and not the roster: the record is evidence of who did what to which
    edge; it is never rewritten, and one line is one event even if the writer dies mid-way.
    Log lines an edge sent are not kept here (only how many): they are the edge's, not ours.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL

    def append(self, event: str, edge: EdgeId, body: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps({"at_ms": now_ms(), "event": event, "community": edge.community,
                             "edge": edge.edge, **body})
        with open(self.path, "ab") as handle:
            handle.write(line + b"\n")

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line]


def request(host: str, port: int, edge: EdgeId, action: MaintenanceAction, *,
            journal: MaintenanceJournal | None = None,
            timeout_s: float = 30.0) -> MaintenanceOutcome | None:
    """Send ``action`` to ``edge`` on the broker's loopback listener and wait for its outcome.

    Subscribes to the edge's answer topic before publishing, so a fast answer is not missed.
    ``None`` when no answer came in ``timeout_s`` (the edge is offline or busy): the action
    may still run later if the edge comes back before its expiry.
    """
    answers: queue.Queue[MaintenanceOutcome] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"ioe-maintenance-{action.action_id[:12]}")

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe(topics.up(edge, SUFFIX), qos=1)

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            outcome = MaintenanceOutcome.from_json(bytes(message.payload))
        except (ValueError, KeyError, TypeError):
            log.debug("ignored a malformed outcome on %s", message.topic)
            return
        if outcome.action_id == action.action_id:
            answers.put(outcome)

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    if journal is not None:
        record = asdict(action)
        journal.append("action", edge, record)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError(f"mqtt {host}:{port}: no subscription to the edge's answers")
        client.publish(topics.commands(edge, SUFFIX), action.to_json(), qos=1) \
            .wait_for_publish(10)
        try:
            outcome: MaintenanceOutcome | None = answers.get(timeout=timeout_s)
        except queue.Empty:
            outcome = None
    finally:
        client.disconnect()
        client.loop_stop()
    if journal is not None:
        if outcome is None:
            journal.append("no-answer", edge, {"action_id": action.action_id,
                                               "kind": str(action.kind),
                                               "timeout_s": timeout_s})
        else:
            body = asdict(outcome)
            body["lines"] = len(outcome.lines)
            journal.append("outcome", edge, body)
    return outcome


# -- the edge's side -----------------------------------------------------------------------------
class RecentLines(logging.Handler):
    """The edge's last log lines in memory, for ``ioe edge logs``.

    Why a handler of its own: the agent may log to a journal the maintenance channel cannot
    read, and each kept line is passed through :func:`ioe.logsafe.clean` again here, so no
    password or token leaves the edge even if a handler without the filter logged it.
    """

    def __init__(self, capacity: int = MAX_LINES) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(clean(self.format(record)))
        except Exception:  # noqa: BLE001 - logging must never break the agent
            self.handleError(record)

    def recent(self, count: int) -> tuple[str, ...]:
        count = max(0, min(count, MAX_LINES))
        return tuple(list(self.lines)[-count:]) if count else ()


@dataclass(frozen=True)
class Handled:
    """What an edge-side handler returns: the outcome's status and detail, and what to do once
    the outcome has been sent (restart: only after the operator has the answer)."""

    status: OutcomeStatus
    detail: str = ""
    lines: tuple[str, ...] = ()
    after: Callable[[], None] | None = None


Handler = Callable[[MaintenanceAction], Handled]


class MaintenanceListener:
    """On the edge: reads its maintenance actions over TLS, runs them one at a time, answers.

    A persistent session (fixed client id, ``clean_session=False``) so an action sent while the
    edge was offline is delivered when it returns — and then refused if it has expired. Actions
    run on a worker thread, never on the MQTT network thread: applying a config stops pollers.
    """

    def __init__(self, bundle: Bundle, handlers: Mapping[ActionKind, Handler],
                 running_version: Callable[[], str | None]) -> None:
        from ioe.edge.mqtt import tls_client

        self.bundle = bundle
        self.handlers = dict(handlers)
        self.running_version = running_version
        self.client = tls_client(bundle, client_id=f"{bundle.id.principal}-maintenance",
                                 clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.handled = 0
        self._worker = threading.Thread(target=self._work, name="maintenance", daemon=True)

    def start(self) -> MaintenanceListener:
        self._worker.start()
        self.client.connect_async(self.bundle.endpoints.mqtt_host,
                                  self.bundle.endpoints.mqtt_port, keepalive=60)
        self.client.loop_start()
        return self

    def _on_connect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        c.subscribe(topics.commands(self.bundle.id, SUFFIX), qos=1)

    def _on_message(self, c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.inbox.put(bytes(message.payload))

    def _work(self) -> None:
        while (payload := self.inbox.get()) is not None:
            try:
                self._handle(payload)
            except Exception:  # noqa: BLE001 - one bad action must not end maintenance
                log.exception("maintenance: action failed")

    def outcome(self, action_id: str, kind: str, handled: Handled) -> MaintenanceOutcome:
        return MaintenanceOutcome(action_id=action_id, kind=kind, status=handled.status,
                                  community=self.bundle.id.community, edge=self.bundle.id.edge,
                                  detail=handled.detail, config_version=self.running_version(),
                                  lines=handled.lines)

    def _handle(self, payload: bytes) -> None:
        try:
            action = MaintenanceAction.from_json(payload)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("maintenance: malformed action refused: %s", exc)
            return  # no action id to answer to
        handled = self.execute(action)
        log.info("maintenance: %s %s by %s: %s%s", action.kind, action.action_id[:12],
                 action.requested_by, handled.status, f" ({handled.detail})"
                 if handled.detail else "")
        self.handled += 1
        info = self.client.publish(topics.up(self.bundle.id, SUFFIX),
                                   self.outcome(action.action_id, str(action.kind),
                                                handled).to_json(), qos=1)
        if handled.after is not None:
            info.wait_for_publish(5)
            handled.after()

    def execute(self, action: MaintenanceAction) -> Handled:
        if action.version != VERSION:
            return Handled(OutcomeStatus.REFUSED,
                           f"message version {action.version}; this edge speaks {VERSION}")
        if action.expired():
            return Handled(OutcomeStatus.EXPIRED,
                           f"expired {(now_ms() - action.expires_ms) / 1000:.1f} s ago; "
                           "not executed")
        handler = self.handlers.get(action.kind)
        if handler is None:
            return Handled(OutcomeStatus.REFUSED, f"{action.kind} is not supported here")
        return handler(action)

    def stop(self) -> None:
        self.inbox.put(None)
        self._worker.join(5)
        self.client.disconnect()
        self.client.loop_stop()

