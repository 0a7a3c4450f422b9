"""The enrolment bundle: everything an edge needs to reach the brokers as itself.

Why a directory and not one file: the private key and the Kafka password are separate files
with mode 0600, so ``bundle.yaml`` (addresses, names, paths) holds no secret and can be shown,
logged or diffed. The Modbus edge agent starts from it (``ioe modbus-edge --bundle DIR``).
Paths inside are relative to the bundle directory, so the directory can be moved as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ioe.edge.files import write_file
from ioe.edge.identity import EdgeId

MANIFEST = "bundle.yaml"
CA_FILE = "ca.crt"
CERT_FILE = "edge.crt"
KEY_FILE = "edge.key"
KAFKA_PASSWORD_FILE = "kafka.password"
SCRAM_MECHANISM = "SCRAM-SHA-512"


class BundleError(ValueError):
    pass


@dataclass(frozen=True)
class Endpoints:
    """Where the secure listeners are, as the edge dials them (host must be in the server
    certificate's names)."""

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 8883
    kafka_bootstrap: str | None = "127.0.0.1:9094"


@dataclass(frozen=True)
class Bundle:
    directory: Path
    id: EdgeId
    endpoints: Endpoints
    topic_prefix: str = ""
    kafka_user: str | None = None

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def kafka_password_path(self) -> Path:
        return self.directory / KAFKA_PASSWORD_FILE

    def kafka_password(self) -> str:
        """Read when connecting, never kept in a config object that might be logged."""
        return self.kafka_password_path.read_text(encoding="utf-8").strip()

    def kafka_client_options(self) -> dict[str, object]:
        """kafka-python options of the SASL_SSL listener (the password read now, from its
        file). Empty when the bundle has no Kafka access."""
        if not (self.endpoints.kafka_bootstrap and self.kafka_user):
            return {}
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_plain_username": self.kafka_user,
                "sasl_plain_password": self.kafka_password(),
                "ssl_cafile": str(self.ca_path),
                # a refused (revoked) credential fails the bootstrap: give up in seconds, not
                # the default 30 s, so the agent keeps its pace and stops promptly
                "bootstrap_timeout_ms": 5_000}

    def manifest(self) -> dict[str, object]:
        kafka: dict[str, object] | None = None
        if self.endpoints.kafka_bootstrap and self.kafka_user:
            kafka = {"bootstrap": self.endpoints.kafka_bootstrap, "security": "SASL_SSL",
                     "mechanism": SCRAM_MECHANISM, "username": self.kafka_user,
                     "password_file": KAFKA_PASSWORD_FILE}
        return {"community": self.id.community, "edge": self.id.edge,
                "principal": self.id.principal, "topic_prefix": self.topic_prefix,
                "mqtt": {"host": self.endpoints.mqtt_host, "port": self.endpoints.mqtt_port},
                "kafka": kafka,
                "files": {"ca": CA_FILE, "cert": CERT_FILE, "key": KEY_FILE}}

    def write_manifest(self) -> None:
        text = ("# IoE edge bundle (`ioe modbus-edge --bundle DIR`). No secret in this file:\n"
                "# the key and the Kafka password are the 0600 files next to it.\n"
                + yaml.safe_dump(self.manifest(), sort_keys=False))
        write_file(self.directory / MANIFEST, text.encode())


def load_bundle(directory: str | Path) -> Bundle:
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror}") from exc
    try:
        mqtt = data["mqtt"]
        kafka = data.get("kafka") or {}
        bundle = Bundle(directory=directory, id=EdgeId(str(data["community"]), str(data["edge"])),
                        endpoints=Endpoints(mqtt_host=str(mqtt["host"]),
                                            mqtt_port=int(mqtt["port"]),
                                            kafka_bootstrap=kafka.get("bootstrap")),
                        topic_prefix=str(data.get("topic_prefix") or ""),
                        kafka_user=kafka.get("username"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: missing or invalid {exc}") from exc
    for needed in (bundle.ca_path, bundle.cert_path, bundle.key_path):
        if not needed.exists():
            raise BundleError(f"{directory}: {needed.name} is missing")
    return bundle
