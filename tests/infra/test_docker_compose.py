"""infra/docker-compose.yml describes the same stack (no Docker engine here, so its structure is
checked instead of `docker compose config`)."""

from __future__ import annotations

import yaml

from ioe.cli import BY_NAME
from ioe.settings import ROOT


def test_compose_has_the_stack_and_the_processes():
    compose = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    for name in ("worker", "web", "mqtt-bridge", "modbus-edge"):
        command = services[name]["command"]
        assert command[0] in BY_NAME, f"{name} runs an unknown ioe command {command[0]}"
        assert services[name]["build"]["dockerfile"] == "infra/Dockerfile"
    assert (ROOT / "infra" / "Dockerfile").exists()
    for volume in services["mosquitto"]["volumes"]:
        host = volume.split(":")[0]
        if host.startswith("./"):
            assert (ROOT / "infra" / host[2:]).exists()
