"""Remote maintenance over the authenticated MQTT command channel (no shell, no VPN): a real
secure Mosquitto (private ports, tmp state) and a real ``ioe modbus-edge --bundle`` process
polling a simulated SDM630.

The agent is one process for the module: a pushed config must change its poll cadence
without a restart (same pid, one start line in its log), a refused one must leave it polling
as before, and ``ioe edge restart`` must bring the same pid back. Its Kafka is a closed port:
readings stay in its store, which is not what is tested here.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from connectors.modbus_edge.simserver import SimServer
from devtools import stack
from ioe import cli
from ioe.edge import topics
from ioe.edge.authority import EdgeAuthority
from ioe.edge.bundle import Bundle, Endpoints
from ioe.edge.identity import EdgeId
from ioe.edge.maintenance import (
    SUFFIX,
    ActionKind,
    MaintenanceAction,
    MaintenanceJournal,
    MaintenanceOutcome,
    OutcomeStatus,
    now_ms,
    request,
)
from ioe.edge.mqtt import tls_client
from ioe.settings import Settings, get_settings

from .edge_helpers import REGISTRY_YAML, free_port, start_agent, stop_agent, wait_for

pytestmark = pytest.mark.stack

EDGE = EdgeId("ce-test", "roof")
OTHER = EdgeId("ce-test", "shed")
SECRET = "hunter2-not-for-logs"
#: an offline device whose id carries a credential-looking value: the agent logs it
PROBE = {"id": f"probe password={SECRET}", "map": "sdm630", "host": "127.0.0.1",
         "poll_interval_s": 0.5, "timeout_s": 0.3}

@dataclass
class Edge:
    settings: Settings  # the loopback listener: the control centre's side
    state: Path
    bundle_dir: Path
    bundles: dict[EdgeId, Bundle]
    agent: subprocess.Popen[bytes]
    log: Path
    polls: list[int]
    meter_port: int
    dead_port: int

    @property
    def config_path(self) -> Path:
        return self.bundle_dir / "edge.yaml"

    def devices(self, interval_s: float) -> list[dict[str, Any]]:
        return [{"id": "meter-1", "map": "sdm630", "host": "127.0.0.1", "port": self.meter_port,
                 "poll_interval_s": interval_s, "timeout_s": 2},
                {**PROBE, "port": self.dead_port}]

    def send(self, kind: ActionKind, ttl_s: float = 20.0, **values: Any) -> MaintenanceOutcome:
        action = MaintenanceAction.new(kind, "operator:test", ttl_s=ttl_s, **values)
        return self.deliver(action)

    def deliver(self, action: MaintenanceAction) -> MaintenanceOutcome:
        outcome = request(self.settings.mqtt_host, self.settings.mqtt_port, EDGE, action,
                          journal=MaintenanceJournal(self.state), timeout_s=20)
        assert outcome is not None, f"no answer to {action.kind}"
        return outcome

    def rate(self, seconds: float) -> float:
        """Polls of the meter per second, measured now."""
        before = self.polls[0]
        time.sleep(seconds)
        return (self.polls[0] - before) / seconds

    def starts(self) -> int:
        return self.log.read_text(errors="replace").count("modbus edge: running as")


def counting_meter(polls: list[int]) -> SimServer:
    image = {a: 0 for a in range(0, 0x50)}

    def on_read(unit, fc, address, count, live):  # noqa: ANN001, ANN202
        if address <= 0x48 < address + count:
            polls[0] += 1
        return None

    return SimServer({1: image}, on_read=on_read).start()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    root = tmp_path_factory.mktemp("maintenance")
    settings = dataclasses.replace(get_settings(), mqtt_port=free_port(),
                                   local_dir=root / "local")
    options = stack.SecureOptions(state_dir=root / "edge", mqtt_port=free_port(),
                                  bind="127.0.0.1", server_names=("localhost", "127.0.0.1"))
    endpoints = Endpoints("127.0.0.1", options.mqtt_port, None)
    authority = EdgeAuthority(options.state_dir)
    bundles = {e: authority.enrol(e, root / "bundles" / e.principal, endpoints)
               for e in (EDGE, OTHER)}
    stack.up(settings, only=["mosquitto"], out=lambda line: None, secure=options)
    polls = [0]
    meter = counting_meter(polls)
    (root / "registry.yaml").write_text(REGISTRY_YAML)
    bundle_dir = bundles[EDGE].directory
    state = Edge(settings, options.state_dir, bundle_dir, bundles, None,  # type: ignore[arg-type]
                 root / "agent.log", polls, meter.port, free_port())
    (bundle_dir / "edge.yaml").write_text(yaml.safe_dump({
        "edge": {"queue_path": str(root / "edge.sqlite"), "registry": str(root / "registry.yaml"),
                 "kafka_bootstrap": f"127.0.0.1:{free_port()}"},
        "devices": state.devices(0.1)}))
    state.agent = start_agent(bundle_dir, state.log)
    try:
        wait_for(lambda: polls[0] >= 5, 30, "the agent polling the meter")
        # the maintenance session is up once it answers
        wait_for(lambda: request(settings.mqtt_host, settings.mqtt_port, EDGE,
                                 MaintenanceAction.new(ActionKind.LOGS, "operator:test"),
                                 timeout_s=1) is not None, 20, "the maintenance session")
        yield state
    finally:
        stop_agent(state.agent)
        meter.stop()
        stack.down(settings, out=lambda line: None)


# -- tests ---------------------------------------------------------------------------------------
def test_pushed_config_changes_the_cadence_without_restart(
        edge: Edge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert edge.rate(1.0) >= 5, "the first config polls every 0.1 s"
    before = edge.send(ActionKind.LOGS, lines=1).config_version
    pid = edge.agent.pid
    pushed = tmp_path / "edge.yaml"
    pushed.write_text(yaml.safe_dump({"devices": edge.devices(0.5)}))
    # the real command, on the loopback listener, as operator ana
    monkeypatch.setenv("IOE_MQTT_PORT", str(edge.settings.mqtt_port))
    capsys.readouterr()
    assert cli.main(["edge", "--state", str(edge.state), "push-config", EDGE.edge,
                     "--file", str(pushed), "--as", "operator:ana"]) == 0
    assert "applied" in capsys.readouterr().out
    time.sleep(0.6)
    assert edge.rate(2.0) <= 3, "the pushed 0.5 s poll interval is not running"
    assert edge.agent.poll() is None and edge.agent.pid == pid and edge.starts() == 1
    after = edge.send(ActionKind.LOGS, lines=1).config_version
    assert after and after != before
    on_disk = yaml.safe_load(edge.config_path.read_text())
    assert on_disk["devices"][0]["poll_interval_s"] == 0.5 and "edge" in on_disk
    # recorded with who asked, action and outcome
    entries = MaintenanceJournal(edge.state).entries()
    action = next(e for e in entries if e["event"] == "action"
                  and e["requested_by"] == "operator:ana")
    outcome = next(e for e in entries if e["event"] == "outcome"
                   and e["action_id"] == action["action_id"])
    assert outcome["status"] == "applied" and outcome["config_version"] == after
    assert action["edge"] == EDGE.edge and action["community"] == EDGE.community


@pytest.mark.parametrize("devices, reason", [
    ([{"id": "meter-1", "map": "no-such-map", "host": "127.0.0.1", "port": 1}], "no-such-map"),
    ([{"id": "meter-1", "map": "sdm630", "host": "127.0.0.1", "poll_interval_s": -1}],
     "poll_interval_s"),
    ([{"id": "meter-1", "map": "sdm630", "host": "127.0.0.1", "colour": "red"}], "colour"),
    ("not a list", "devices"),
])
def test_invalid_config_is_refused_and_the_old_one_keeps_running(
        edge: Edge, devices: object, reason: str) -> None:
    running = edge.send(ActionKind.LOGS, lines=1).config_version
    on_disk = edge.config_path.read_text()
    outcome = edge.send(ActionKind.PUSH_CONFIG, config=yaml.safe_dump({"devices": devices}))
    assert outcome.status is OutcomeStatus.REFUSED and reason in outcome.detail
    assert outcome.config_version == running
    assert edge.config_path.read_text() == on_disk
    assert edge.rate(1.5) > 0, "the running config stopped polling"


def test_pinned_sections_cannot_be_pushed(edge: Edge) -> None:
    outcome = edge.send(ActionKind.PUSH_CONFIG, config=yaml.safe_dump(
        {"edge": {"queue_path": "/tmp/elsewhere.sqlite"}, "devices": edge.devices(0.2)}))
    assert outcome.status is OutcomeStatus.REFUSED and "'edge:'" in outcome.detail


def test_logs_return_lines_and_no_secret(edge: Edge) -> None:
    outcome = edge.send(ActionKind.LOGS, lines=1000)
    assert outcome.status is OutcomeStatus.DONE and outcome.lines
    text = "\n".join(outcome.lines)
    assert "device offline: probe password=[REDACTED]" in text  # the probe's line, redacted
    assert SECRET not in text and "PRIVATE KEY" not in text
    key_line = edge.bundles[EDGE].key_path.read_text().splitlines()[1]
    assert key_line not in text
    assert len(edge.send(ActionKind.LOGS, lines=3).lines) == 3
    assert SECRET not in edge.log.read_text(errors="replace")


def test_expired_action_is_not_executed(edge: Edge) -> None:
    running = edge.send(ActionKind.LOGS, lines=1).config_version
    on_disk = edge.config_path.read_text()
    stale = MaintenanceAction(kind=ActionKind.PUSH_CONFIG, requested_by="operator:test",
                              issued_ms=now_ms() - 120_000, expires_ms=now_ms() - 60_000,
                              config=yaml.safe_dump({"devices": edge.devices(0.05)}))
    outcome = edge.deliver(stale)
    assert outcome.status is OutcomeStatus.EXPIRED
    assert outcome.config_version == running and edge.config_path.read_text() == on_disk
    assert edge.rate(1.0) <= 3, "the expired config (0.05 s) was applied"


class Session:
    """Another edge's TLS session, recording what it receives."""

    def __init__(self, bundle: Bundle, port: int) -> None:
        self.received: list[str] = []
        self.client = tls_client(bundle, client_id=f"{bundle.id.principal}-{time.time_ns()}")
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert connected.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_another_edge_can_neither_send_nor_read_maintenance(edge: Edge) -> None:
    watcher_seen: list[tuple[str, bytes]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_message = lambda c, u, m: watcher_seen.append((m.topic, bytes(m.payload)))
    watcher.connect(edge.settings.mqtt_host, edge.settings.mqtt_port)
    watcher.loop_start()
    watcher.subscribe(f"{topics.ROOT}/#", qos=1)
    port = int(yaml.safe_load((edge.bundle_dir / "bundle.yaml").read_text())["mqtt"]["port"])
    other = Session(edge.bundles[OTHER], port)
    try:
        assert subscribed.wait(5)
        other.client.subscribe([(topics.commands(EDGE, SUFFIX), 1), (topics.up(EDGE, SUFFIX), 1),
                                (topics.commands(OTHER, SUFFIX), 1)])
        forged = MaintenanceAction.new(ActionKind.RESTART, "operator:mallory")
        other.client.publish(topics.commands(EDGE, SUFFIX), forged.to_json(), qos=1) \
            .wait_for_publish(5)
        other.client.publish(topics.up(OTHER, "sentinel"), b"after", qos=1).wait_for_publish(5)
        wait_for(lambda: (topics.up(OTHER, "sentinel"), b"after") in watcher_seen, 5,
                 "the sentinel")
        # the broker dropped the forged action: it never reached the command topic
        assert not any(forged.action_id.encode() in payload for _, payload in watcher_seen)
        # the operator's own action is answered; the other edge sees neither side of it
        assert edge.send(ActionKind.LOGS, lines=5).status is OutcomeStatus.DONE
        other.client.publish(topics.up(OTHER, "sentinel"), b"after-2", qos=1) \
            .wait_for_publish(5)
        wait_for(lambda: (topics.up(OTHER, "sentinel"), b"after-2") in watcher_seen, 5,
                 "the second sentinel")
        assert other.received == []
        assert edge.agent.poll() is None and edge.starts() == 1, "the forged restart ran"
    finally:
        other.close()
        watcher.disconnect()
        watcher.loop_stop()


def test_restart_flushes_and_reexecutes_the_same_process(edge: Edge) -> None:
    pid = edge.agent.pid
    starts = edge.starts()
    outcome = edge.send(ActionKind.RESTART)
    assert outcome.status is OutcomeStatus.RESTARTING
    wait_for(lambda: edge.starts() == starts + 1, 30, "the agent to start again")
    assert edge.agent.poll() is None and edge.agent.pid == pid
    # the restarted agent runs the pushed config (0.5 s) and answers maintenance again
    wait_for(lambda: request(edge.settings.mqtt_host, edge.settings.mqtt_port, EDGE,
                             MaintenanceAction.new(ActionKind.LOGS, "operator:test"),
                             timeout_s=1) is not None, 20, "maintenance after the restart")
    assert 0 < edge.rate(2.0) <= 3
