"""Heartbeats: each edge says, every minute, that it is alive, which software it runs and how
long it has been up; ``ioe edge list`` shows the last one as the edge's last contact.

Why retained MQTT on the edge's own topic (``edge/<community>/<edge>/heartbeat``): the edge
already holds a certificate for the secure listener, the ACL lets it write only its own
heartbeat topic (so an edge cannot fake another's), and a retained message means the control
centre learns every edge's last contact the moment it subscribes, with no store of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ioe.edge import topics
from ioe.edge.bundle import Bundle
from ioe.edge.identity import EdgeId

log = logging.getLogger(__name__)

INTERVAL_S = 60.0


def software_version() -> str:
    try:
        from importlib.metadata import version

        return version("ioe-comunidades")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "unknown"


@dataclass(frozen=True)
class Heartbeat:
    community: str
    edge: str
    version: str
    uptime_s: float
    sent_ms: int
    queue_depth: int | None = None
    #: last poll error per device (device id -> message), empty when all is well
    errors: dict[str, str] = field(default_factory=dict)
    #: fingerprint of the device list it runs (:func:`ioe.edge.maintenance.config_version`)
    config_version: str | None = None

    @property
    def id(self) -> EdgeId:
        return EdgeId(self.community, self.edge)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, payload: bytes) -> Heartbeat:
        data = orjson.loads(payload)
        return cls(community=str(data["community"]), edge=str(data["edge"]),
                   version=str(data.get("version", "")),
                   uptime_s=float(data.get("uptime_s", 0.0)), sent_ms=int(data["sent_ms"]),
                   queue_depth=data.get("queue_depth"),
                   errors={str(k): str(v) for k, v in (data.get("errors") or {}).items()},
                   config_version=data.get("config_version"))


class HeartbeatSender:
    """Publishes the edge's heartbeat over TLS every ``interval_s`` (and once at start)."""

    def __init__(self, bundle: Bundle, *, interval_s: float = INTERVAL_S,
                 status: Callable[[], dict[str, Any]] | None = None) -> None:
        from ioe.edge.mqtt import tls_client

        self.bundle = bundle
        self.interval_s = interval_s
        self.status = status or (lambda: {})
        self.started = time.monotonic()
        self.client = tls_client(bundle, client_id=f"{bundle.id.principal}-heartbeat")
        self.stop_event = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> Heartbeat:
        extra = self.status()
        return Heartbeat(community=self.bundle.id.community, edge=self.bundle.id.edge,
                         version=software_version(),
                         uptime_s=round(time.monotonic() - self.started, 1),
                         sent_ms=int(time.time() * 1000),
                         queue_depth=extra.get("queue_depth"), errors=extra.get("errors") or {},
                         config_version=extra.get("config_version"))

    def start(self) -> HeartbeatSender:
        self.client.connect_async(self.bundle.endpoints.mqtt_host,
                                  self.bundle.endpoints.mqtt_port, keepalive=60)
        self.client.loop_start()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.stop_event.is_set():
            if self.client.is_connected():
                info = self.client.publish(topics.heartbeat(self.bundle.id),
                                           self.beat().to_json(), qos=1, retain=True)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.sent += 1
                self.stop_event.wait(self.interval_s)
            else:
                self.stop_event.wait(0.5)

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def last_contacts(host: str, port: int, *, wait_s: float = 1.5) -> dict[EdgeId, Heartbeat]:
    """The retained heartbeat of every edge, read on the broker's loopback listener."""
    found: dict[EdgeId, Heartbeat] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe(topics.ALL_HEARTBEATS, qos=1)

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            beat = Heartbeat.from_json(bytes(message.payload))
            # the topic, which the ACL ties to the certificate, names the edge; not the payload
            _, community, edge, _ = message.topic.split("/")
            found[EdgeId(community, edge)] = beat
        except Exception:  # noqa: BLE001 - a malformed heartbeat is just not a contact
            log.debug("ignored heartbeat on %s", message.topic)

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        log.warning("no heartbeats: cannot reach mqtt %s:%d (%s)", host, port, exc)
        return found
    client.loop_start()
    done.wait(wait_s)
    client.disconnect()
    client.loop_stop()
    return found
