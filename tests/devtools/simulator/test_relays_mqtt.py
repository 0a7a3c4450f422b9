"""The simulated water heater behind a Shelly Gen1 relay, on the real Mosquitto: it takes the
real command topic, answers with its state and shows its load as power."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from devtools.simulator.engine import SimConfig, Simulator
from ioe.settings import Settings

from .conftest import SimCommunity, recording


def with_heater(community: SimCommunity, topic_id: str) -> None:
    document = yaml.safe_load(community.path.read_text())
    document["communities"][0]["devices"].append(
        {"id": f"{topic_id}:0", "role": "consumption", "member": "m1", "rated_power_w": 1200,
         "expected_interval_s": 1, "protocol": {"type": "mqtt", "decoder": "shelly-gen1", "topic_id": topic_id,
                      "controllable": True}})
    community.path.write_text(yaml.safe_dump(document, sort_keys=False))


def send(settings: Settings, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def wait_for(condition, timeout_s: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_heater_relay_switches_on_command_and_shows_its_load(
        mosquitto: Settings, community: SimCommunity, tmp_path: Path, unique_id: str) -> None:
    topic_id = f"shelly1pm-T{unique_id}"
    with_heater(community, topic_id)
    base = f"shellies/{topic_id}/relay/0"
    config = SimConfig(registry_path=community.path, seed=7, speed=1.0, duration_s=6.0,
                       state_dir=tmp_path / "state", min_interval_s=0.2,
                       enable_inverters=False)
    simulator = Simulator(config)
    assert [r.device_id for r in simulator.relays] == [f"{topic_id}:0"]
    assert all(m.device_id != f"{topic_id}:0" for m in simulator.meters)
    with recording(mosquitto, [f"shellies/{topic_id}/#"]) as rec:
        async def scenario() -> None:
            task = asyncio.create_task(simulator.run())
            await asyncio.wait_for(simulator.ready.wait(), 10)
            assert await asyncio.to_thread(wait_for, lambda: rec.of(f"{base}/power"))
            assert simulator.relays[0].on is False
            await asyncio.to_thread(send, mosquitto, f"{base}/command", b"on")
            assert await asyncio.to_thread(wait_for, lambda: b"on" in rec.of(base))
            assert await asyncio.to_thread(wait_for, lambda: b"1200.00" in rec.of(f"{base}/power"))
            await asyncio.to_thread(send, mosquitto, f"{base}/command", b"bogus")  # ignored
            await asyncio.sleep(0.5)
            assert simulator.relays[0].on is True
            await asyncio.to_thread(send, mosquitto, f"{base}/command", b"off")
            assert await asyncio.to_thread(wait_for, lambda: rec.of(base)[-1:] == [b"off"])
            await task
        asyncio.run(scenario())
    powers = [float(p) for p in rec.of(f"{base}/power")]
    assert powers[0] == 0.0  # it starts off: the safe default
    assert 1200.0 in powers and powers[-1] == 0.0
    assert simulator.relays[0].switches == 2  # on, off: the unknown word changed nothing
