"""`ioe stack up --secure`: the TLS listener of a real Mosquitto, with client certificates from
the project's CA, the ACL rendered from the enrolled edges, and the CRL that `ioe edge revoke`
rewrites (Mosquitto re-reads both on SIGHUP).

A private Mosquitto (free ports, private state folder under tmp_path), started through
``stack.up(..., secure=...)`` exactly as ``ioe stack up --secure`` does; the shared stack on
1883 is never touched. Every refusal is checked against a privileged subscriber on the loopback
listener, with a sentinel published after the refused message: MQTT keeps one client's order,
so once the sentinel has arrived the refused message will never arrive.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devtools import stack
from ioe import cli
from ioe.edge import topics
from ioe.edge.authority import EdgeAuthority
from ioe.edge.bundle import Bundle, Endpoints, load_bundle
from ioe.edge.identity import EdgeId
from ioe.edge.mqtt import tls_client
from ioe.settings import Settings, get_settings

pytestmark = pytest.mark.stack

A = EdgeId("ce-uno", "plant-a")
B = EdgeId("ce-uno", "plant-b")
X = EdgeId("ce-dos", "plant-x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SecureBroker:
    settings: Settings
    options: stack.SecureOptions
    bundles: dict[EdgeId, Bundle]
    log: Path

    @property
    def state(self) -> Path:
        return self.options.state_dir

    def edge_cli(self, *args: str) -> int:
        return cli.main(["edge", "--state", str(self.state), *args])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    root = tmp_path_factory.mktemp("secure")
    settings = dataclasses.replace(get_settings(), mqtt_port=free_port(),
                                   local_dir=root / "local")
    options = stack.SecureOptions(state_dir=root / "edge", mqtt_port=free_port(),
                                  bind="127.0.0.1", server_names=("localhost", "127.0.0.1"))
    endpoints = Endpoints("127.0.0.1", options.mqtt_port, None)
    authority = EdgeAuthority(options.state_dir)
    bundles = {edge: authority.enrol(edge, root / "bundles" / edge.principal, endpoints)
               for edge in (A, B)}  # X is enrolled while the broker runs (SIGHUP path)
    lines: list[str] = []
    stack.up(settings, only=["mosquitto"], out=lines.append, secure=options)
    assert any("secure listener" in line for line in lines)
    bundles[X] = EdgeAuthority(options.state_dir).enrol(X, root / "bundles" / X.principal,
                                                        endpoints)
    try:
        yield SecureBroker(settings, options, bundles,
                           settings.local_dir / "mosquitto" / "mosquitto.log")
    finally:
        stack.down(settings, out=lambda line: None)


# -- clients -------------------------------------------------------------------------------------
class Watcher:
    """A privileged subscriber on the loopback listener: sees what the broker accepted."""

    def __init__(self, settings: Settings, topic: str = f"{topics.ROOT}/#") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.arrived.notify_all()

    def wait_for(self, topic: str, payload: bytes, timeout_s: float = 5.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: (topic, payload) in self.messages, timeout_s)

    def topics(self) -> set[str]:
        return {t for t, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(broker: SecureBroker) -> Iterator[Watcher]:
    w = Watcher(broker.settings)
    yield w
    w.close()


class EdgeSession:
    """An MQTT session over TLS; ``connected`` is the broker's CONNACK, not the handshake (with
    TLS 1.3 the client finishes its handshake before the server has judged its certificate)."""

    def __init__(self, client: mqtt.Client, port: int, timeout_s: float = 5.0) -> None:
        self.client = client
        self.received: list[tuple[str, bytes]] = []
        self.done = threading.Event()
        self.connected = False
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a: self.done.set()
        client.on_connect_fail = lambda *a: self.done.set()
        client.on_message = lambda c, u, m: self.received.append((m.topic, bytes(m.payload)))
        try:
            client.connect("127.0.0.1", port, keepalive=10)
        except (OSError, ssl.SSLError):
            return
        client.loop_start()
        self.done.wait(timeout_s)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: object, props: object) -> None:
        self.connected = not getattr(reason, "is_failure", True)
        self.done.set()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def session(bundle: Bundle, port: int) -> EdgeSession:
    return EdgeSession(tls_client(bundle, client_id=f"{bundle.id.principal}-{time.time_ns()}"),
                       port)


def bare_tls_session(port: int, ca: Path, cert: Path | None = None,
                     key: Path | None = None) -> EdgeSession:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bare-{time.time_ns()}")
    context = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    client.tls_set_context(context)
    return EdgeSession(client, port)


def wait_refused(bundle: Bundle, port: int, timeout_s: float = 5.0) -> bool:
    """True once the broker refuses ``bundle`` (a SIGHUP reload takes a moment)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = session(bundle, port)
        s.close()
        if not s.connected:
            return True
        time.sleep(0.2)
    return False


# -- tests ---------------------------------------------------------------------------------------
def test_enrolled_edge_publishes_its_own_topics(broker: SecureBroker, watcher: Watcher) -> None:
    edge = session(broker.bundles[A], broker.options.mqtt_port)
    try:
        assert edge.connected
        edge.publish(topics.up(A, "readings"), b"a-1")
        edge.publish(topics.heartbeat(A), b"{}")
        assert watcher.wait_for(topics.up(A, "readings"), b"a-1")
        assert watcher.wait_for(topics.heartbeat(A), b"{}")
    finally:
        edge.close()


def test_edge_enrolled_while_running_is_let_in(broker: SecureBroker, watcher: Watcher) -> None:
    edge = session(broker.bundles[X], broker.options.mqtt_port)
    try:
        assert edge.connected
        edge.publish(topics.up(X, "readings"), b"x-1")
        assert watcher.wait_for(topics.up(X, "readings"), b"x-1")
    finally:
        edge.close()


def test_other_edges_and_communities_topics_are_refused(broker: SecureBroker,
                                                        watcher: Watcher) -> None:
    edge = session(broker.bundles[A], broker.options.mqtt_port)
    forbidden = [topics.up(B, "readings"), topics.heartbeat(B), topics.up(X, "readings"),
                 topics.commands(A, "set"), "ioe/readings", "shellies/x/emeter/0/power"]
    try:
        assert edge.connected
        for topic in forbidden:
            edge.publish(topic, b"forged")
        edge.publish(topics.up(A, "sentinel"), b"after")
        assert watcher.wait_for(topics.up(A, "sentinel"), b"after")
        assert not watcher.topics() & set(forbidden)
    finally:
        edge.close()


def test_edge_reads_only_its_own_commands(broker: SecureBroker) -> None:
    edge = session(broker.bundles[A], broker.options.mqtt_port)
    operator = mqtt.Client(CallbackAPIVersion.VERSION2)
    try:
        assert edge.connected
        subscribed = threading.Event()
        edge.client.on_subscribe = lambda *a: subscribed.set()
        edge.client.subscribe([(topics.commands(A), 1), (topics.commands(B), 1),
                               (f"{topics.ROOT}/#", 1)])
        assert subscribed.wait(5)
        operator.connect(broker.settings.mqtt_host, broker.settings.mqtt_port)
        operator.loop_start()
        for topic in (topics.commands(B, "limit"), topics.up(B, "readings"),
                      topics.commands(A, "limit")):
            operator.publish(topic, b"cmd", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while (topics.commands(A, "limit"), b"cmd") not in edge.received:
            assert time.monotonic() < deadline, "own command not delivered"
            time.sleep(0.05)
        assert {t for t, _ in edge.received} == {topics.commands(A, "limit")}
    finally:
        operator.disconnect()
        operator.loop_stop()
        edge.close()


def test_client_without_certificate_is_refused(broker: SecureBroker) -> None:
    ca = broker.bundles[A].ca_path
    assert not bare_tls_session(broker.options.mqtt_port, ca).connected
    plain = EdgeSession(mqtt.Client(CallbackAPIVersion.VERSION2), broker.options.mqtt_port)
    plain.close()
    assert not plain.connected


def test_certificate_of_another_ca_is_refused(broker: SecureBroker, tmp_path: Path) -> None:
    other = EdgeAuthority(tmp_path / "rogue")  # a CA of its own, same names and principal
    rogue = other.enrol(A, tmp_path / "rogue-bundle",
                        Endpoints("127.0.0.1", broker.options.mqtt_port, None))
    s = bare_tls_session(broker.options.mqtt_port, broker.bundles[A].ca_path,
                         rogue.cert_path, rogue.key_path)
    s.close()
    assert not s.connected


def test_loopback_listener_is_unchanged(broker: SecureBroker, watcher: Watcher) -> None:
    """The services' plaintext listener keeps anonymous access to every topic."""
    anyone = mqtt.Client(CallbackAPIVersion.VERSION2)
    anyone.connect(broker.settings.mqtt_host, broker.settings.mqtt_port)
    anyone.loop_start()
    try:
        anyone.publish(topics.up(B, "readings"), b"loopback", qos=1).wait_for_publish(5)
        assert watcher.wait_for(topics.up(B, "readings"), b"loopback")
    finally:
        anyone.disconnect()
        anyone.loop_stop()


def test_renew_rotates_and_revoke_refuses_while_others_keep_working(
        broker: SecureBroker, watcher: Watcher, tmp_path: Path) -> None:
    port = broker.options.mqtt_port
    bundle_b = broker.bundles[B]
    # renew B: the new certificate works, the superseded one is refused
    old = tmp_path / "old-b"
    old.mkdir()
    for name in ("bundle.yaml", "ca.crt", "edge.crt", "edge.key"):
        (old / name).write_bytes((bundle_b.directory / name).read_bytes())
    assert broker.edge_cli("renew", B.edge) == 0
    assert wait_refused(load_bundle(old), port)
    renewed = session(load_bundle(bundle_b.directory), port)
    renewed.close()
    assert renewed.connected
    # revoke A (the real command): refused from its next connection; B and X keep working
    before = session(broker.bundles[A], port)
    assert before.connected
    assert broker.edge_cli("revoke", A.edge) == 0
    assert wait_refused(broker.bundles[A], port)
    # a session opened before the revocation stays up but its ACL entries are gone: the broker
    # routes (or drops) a QoS 1 message before its PUBACK, so once the PUBACK is in and a later
    # sentinel has arrived, a delivered message would already be there
    before.publish(topics.up(A, "open-session"), b"late")
    sentinel = mqtt.Client(CallbackAPIVersion.VERSION2)
    sentinel.connect(broker.settings.mqtt_host, broker.settings.mqtt_port)
    sentinel.loop_start()
    sentinel.publish(topics.up(A, "sentinel-2"), b"s", qos=1).wait_for_publish(5)
    assert watcher.wait_for(topics.up(A, "sentinel-2"), b"s")
    sentinel.disconnect()
    sentinel.loop_stop()
    before.close()
    assert topics.up(A, "open-session") not in watcher.topics()
    for other in (load_bundle(bundle_b.directory), broker.bundles[X]):
        s = session(other, port)
        try:
            assert s.connected, f"{other.id} was refused after {A} was revoked"
            s.publish(topics.up(other.id, "after-revoke"), b"ok")
            assert watcher.wait_for(topics.up(other.id, "after-revoke"), b"ok")
        finally:
            s.close()
    # enrolled again (a new certificate), A is let in again
    assert broker.edge_cli("enrol", "--community", A.community, "--edge", A.edge,
                           "--out", str(tmp_path / "a-again"), "--kafka", "none",
                           "--mqtt", f"127.0.0.1:{port}") == 0
    again = session(load_bundle(tmp_path / "a-again"), port)
    again.close()
    assert again.connected


def test_heartbeat_is_last_contact_in_edge_list(broker: SecureBroker, capsys,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from ioe.edge.heartbeat import HeartbeatSender, last_contacts

    sender = HeartbeatSender(broker.bundles[X], interval_s=0.2,
                             status=lambda: {"queue_depth": 7}).start()
    try:
        deadline = time.monotonic() + 5
        while sender.sent == 0:
            assert time.monotonic() < deadline, "no heartbeat sent"
            time.sleep(0.05)
    finally:
        sender.stop()
    beats = last_contacts(broker.settings.mqtt_host, broker.settings.mqtt_port, wait_s=0.5)
    assert beats[X].queue_depth == 7 and beats[X].uptime_s >= 0
    monkeypatch.setenv("IOE_MQTT_PORT", str(broker.settings.mqtt_port))
    capsys.readouterr()
    assert broker.edge_cli("list") == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if X.edge in row)
    assert "active" in line and "never" not in line


def test_no_secret_in_the_broker_log(broker: SecureBroker) -> None:
    """After the tests that use the broker: its log carries no key nor password."""
    text = broker.log.read_text(errors="replace")
    secrets = [b.key_path.read_text().splitlines()[1] for b in broker.bundles.values()]
    assert "PRIVATE KEY" not in text
    assert not any(s in text for s in secrets)
    assert os.stat(broker.state / "server" / "broker.key").st_mode & 0o777 == 0o600


def test_secure_up_over_a_plain_broker_warns_and_restarts_nothing(tmp_path: Path) -> None:
    settings = dataclasses.replace(get_settings(), mqtt_port=free_port(), local_dir=tmp_path)
    options = stack.SecureOptions(state_dir=tmp_path / "edge", mqtt_port=free_port(),
                                  bind="127.0.0.1")
    lines: list[str] = []
    stack.up(settings, only=["mosquitto"], out=lines.append)
    try:
        pid = (tmp_path / "mosquitto" / "pid").read_text()
        stack.up(settings, only=["mosquitto"], out=lines.append, secure=options)
        assert any("WARNING" in line and str(options.mqtt_port) in line for line in lines)
        assert (tmp_path / "mosquitto" / "pid").read_text() == pid
        assert not stack.port_open("127.0.0.1", options.mqtt_port)
    finally:
        stack.down(settings, out=lines.append)
