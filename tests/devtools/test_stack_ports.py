"""The listeners `ioe stack up [--secure]` configures never share a port.

Found the hard way: the secure Kafka listener's default (9093) was the KRaft controller's port
(the loopback bootstrap's port + 1), so `ioe stack up --secure` could not start Kafka with its
defaults (the tests use free ports and did not see it)."""

from __future__ import annotations

from pathlib import Path

from devtools import stack
from ioe.settings import get_settings


def listener_ports(properties: str) -> list[int]:
    line = next(v for k, _, v in (x.partition("=") for x in properties.splitlines())
                if k == "listeners")
    return [int(address.rpartition(":")[2]) for address in line.split(",")]


def test_default_secure_listeners_take_ports_of_their_own(tmp_path: Path) -> None:
    settings = get_settings()
    options = stack.SecureOptions(state_dir=tmp_path)
    properties = stack._kafka_secure_properties(settings, tmp_path / "data", options,
                                                tmp_path / "keystore.pem")
    kafka = listener_ports(properties)
    assert len(kafka) == 3 and len(set(kafka)) == 3, kafka
    assert options.kafka_port in kafka
    assert options.mqtt_port not in {*kafka, settings.mqtt_port}
