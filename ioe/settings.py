"""Where the services live, read from the environment.

Every process of the system (worker, bridge, edge, web, tests) finds Kafka, ClickHouse and
Mosquitto the same way, so one `export IOE_KAFKA=...` points the whole system elsewhere.
Defaults are the local stack that `ioe stack up` starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Repository root (the folder holding pyproject.toml).
ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = field(default_factory=lambda: _env("IOE_KAFKA", "127.0.0.1:9092"))
    clickhouse_host: str = field(default_factory=lambda: _env("IOE_CLICKHOUSE_HOST", "127.0.0.1"))
    clickhouse_port: int = field(
        default_factory=lambda: int(_env("IOE_CLICKHOUSE_PORT", "9000"))
    )
    clickhouse_http_port: int = field(
        default_factory=lambda: int(_env("IOE_CLICKHOUSE_HTTP_PORT", "8123"))
    )
    clickhouse_database: str = field(default_factory=lambda: _env("IOE_CLICKHOUSE_DB", "ioe"))
    mqtt_host: str = field(default_factory=lambda: _env("IOE_MQTT_HOST", "127.0.0.1"))
    mqtt_port: int = field(default_factory=lambda: int(_env("IOE_MQTT_PORT", "1883")))
    #: Prefix for every topic name; tests use a unique prefix so runs never collide.
    topic_prefix: str = field(default_factory=lambda: _env("IOE_TOPIC_PREFIX", ""))
    partitions: int = field(default_factory=lambda: int(_env("IOE_PARTITIONS", "12")))
    timezone: str = field(default_factory=lambda: _env("IOE_TZ", "Europe/Madrid"))
    local_dir: Path = field(
        default_factory=lambda: Path(_env("IOE_LOCAL_DIR", str(ROOT / ".local")))
    )
    registry_path: Path = field(
        default_factory=lambda: Path(
            _env("IOE_REGISTRY", str(ROOT / "infra" / "examples" / "community.yaml"))
        )
    )
    #: Secret used to sign dashboard tokens (never logged, never committed).
    token_secret: str = field(default_factory=lambda: _env("IOE_TOKEN_SECRET", ""))

    def topic(self, name: str) -> str:
        """Physical Kafka topic name of a logical topic such as ``ioe.readings``."""
        return f"{self.topic_prefix}{name}"


def get_settings() -> Settings:
    return Settings()
