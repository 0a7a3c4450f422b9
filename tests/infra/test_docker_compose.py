"""infra/docker-compose.yml describes the same stack (no Docker engine here, so its structure is
checked instead of `docker compose config`)."""

from __future__ import annotations

import pytest
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
    assert services["worker"]["deploy"]["replicas"] == 2  # issue 15: two workers of one group
    for volume in services["mosquitto"]["volumes"]:
        host = volume.split(":")[0]
        if host.startswith("./"):
            assert (ROOT / "infra" / host[2:]).exists()


def test_the_image_has_every_package_the_project_installs():
    """`pip install .` in the image finds only what was copied: control/, warehouse/ and
    devtools/ were missing, so the compose worker could not run `--rules`."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    copied = {line.split()[1] for line in (ROOT / "infra" / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")}
    assert {p.rstrip("*") for p in packages} <= copied


# -- the secure overlay (docker-compose.secure.yml) -----------------------------------------------
class ComposeLoader(yaml.SafeLoader):
    """Compose's merge tags (`!override`, `!reset`) read as plain values."""


for _tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(
        _tag, lambda loader, node: (loader.construct_sequence(node)
                                    if isinstance(node, yaml.SequenceNode) else
                                    loader.construct_mapping(node)
                                    if isinstance(node, yaml.MappingNode) else
                                    loader.construct_scalar(node)))


def secure_overlay() -> dict:
    return yaml.load((ROOT / "infra" / "docker-compose.secure.yml").read_text(),
                     Loader=ComposeLoader)


def kafka_env_to_property(name: str) -> str:
    """The apache/kafka image's rule: KAFKA_ dropped, ___ -> '-', __ -> '_', _ -> '.'."""
    body = name.removeprefix("KAFKA_").replace("___", "\0").replace("__", "\1")
    return body.replace("_", ".").replace("\0", "-").replace("\1", "_").lower()


def test_secure_overlay_publishes_only_the_secure_listeners():
    services = secure_overlay()["services"]
    assert services["mosquitto"]["ports"] == ["8883:8883"]
    assert services["kafka"]["ports"] == ["9094:9094"]
    for broker in ("mosquitto", "kafka"):
        assert services[broker]["depends_on"]["secure-init"]["condition"] == \
            "service_completed_successfully"
    init = services["secure-init"]
    assert init["build"]["dockerfile"] == "infra/Dockerfile"
    assert "ioe edge broker-files" in init["command"][0]


def test_secure_overlay_kafka_matches_the_native_secure_broker(tmp_path):
    """The compose Kafka's security settings are those `ioe stack up --secure` writes."""
    from devtools import stack
    from ioe.settings import get_settings

    env = secure_overlay()["services"]["kafka"]["environment"]
    compose = {kafka_env_to_property(k): str(v).strip() for k, v in env.items()}
    native = dict(line.partition("=")[::2] for line in stack._kafka_secure_properties(
        get_settings(), tmp_path, stack.SecureOptions(state_dir=tmp_path),
        tmp_path / "ks.pem").splitlines() if "=" in line)
    for key in ("sasl.enabled.mechanisms", "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                "ssl.keystore.type", "connections.max.reauth.ms", "authorizer.class.name",
                "super.users", "allow.everyone.if.no.acl.found",
                "listener.security.protocol.map"):
        assert compose[key] == native[key], key
    assert "SASL_SSL://:9094" in compose["listeners"]


@pytest.mark.stack
def test_secure_mosquitto_conf_starts_on_what_broker_files_writes(tmp_path):
    """`ioe edge broker-files` (the overlay's secure-init) + its install step, then the real
    Mosquitto with infra/mosquitto.secure.conf (volume paths and ports mapped to tmp): it
    starts, its TLS listener presents the broker certificate of the project's CA, and a client
    without a certificate is refused."""
    import json
    import os
    import shutil
    import socket
    import ssl
    import subprocess
    import sys
    import time

    state = tmp_path / "edge"
    env = {**os.environ, "IOE_EDGE_DIR": str(state), "IOE_SECURE_HOST": "localhost"}
    done = subprocess.run([sys.executable, "-m", "ioe.cli", "edge", "broker-files", "--name",
                           "localhost", "--name", "127.0.0.1"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    files = json.loads(done.stdout)
    assert all(os.path.exists(files[k]) for k in ("ca", "cert", "key", "kafka_keystore", "crl",
                                                  "acl"))
    assert os.stat(files["kafka_keystore"]).st_mode & 0o077 == 0
    shutil.copy(files["key"], state / "server" / "broker.mosquitto.key")  # the install step

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    plain, tls = port(), port()
    conf = (ROOT / "infra" / "mosquitto.secure.conf").read_text()
    conf = (conf.replace("/ioe-edge/", f"{state}/").replace("/mosquitto/data/", f"{tmp_path}/")
            .replace("listener 1883 0.0.0.0", f"listener {plain} 127.0.0.1")
            .replace("listener 8883 0.0.0.0", f"listener {tls} 127.0.0.1"))
    if os.geteuid() == 0:
        conf = "user root\n" + conf
    (tmp_path / "mosquitto.conf").write_text(conf)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=files["ca"])
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", tls), timeout=2) as raw, \
                        context.wrap_socket(raw, server_hostname="localhost") as secure:
                    assert secure.getpeercert()["subject"]
                    # no client certificate: the broker closes the session
                    secure.settimeout(3)
                    secure.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
                    try:
                        refused = secure.recv(16) == b""
                    except (ssl.SSLError, ConnectionResetError):
                        refused = True
                    assert refused, "a client without a certificate was let in"
                break
            except (ConnectionRefusedError, OSError) as exc:
                assert broker.poll() is None, broker.stdout.read().decode() if broker.stdout \
                    else exc
                assert time.monotonic() < deadline, f"no TLS listener: {exc}"
                time.sleep(0.2)
    finally:
        broker.terminate()
        broker.wait(10)
