"""ClickHouse access and versioned, idempotent schema migrations.

Migrations are the numbered ``infra/clickhouse/migrations/NNNN_name.sql`` files; ``{db}`` in them
is the database name (tests use their own database). ``schema_migrations`` records what ran, and
every statement is ``IF NOT EXISTS`` as well, so a half-applied migration can simply run again.
"""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_driver import Client

from ioe.settings import ROOT, Settings, get_settings

MIGRATIONS_DIR = ROOT / "infra" / "clickhouse" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def client(settings: Settings | None = None, database: str | None = None) -> Client:
    settings = settings or get_settings()
    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                  database=database or "default", connect_timeout=5, send_receive_timeout=120)


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: migration files are named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    return found


def split_statements(sql: str) -> list[str]:
    """Statements separated by ``;`` at the end of a line; ``--`` comments dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]


def migrate(settings: Settings | None = None, database: str | None = None) -> list[str]:
    """Apply pending migrations; returns the names of those applied in this call."""
    settings = settings or get_settings()
    db = database or settings.clickhouse_database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        raise ValueError(f"invalid database name {db!r}")
    ch = client(settings)
    try:
        ch.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        ch.execute(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime) "
            "ENGINE = MergeTree() ORDER BY version"
        )
        done = {row[0] for row in ch.execute(f"SELECT version FROM {db}.schema_migrations")}
        applied = []
        for version, name, path in migration_files():
            if version in done:
                continue
            for statement in split_statements(path.read_text()):
                ch.execute(statement.rstrip(";").replace("{db}", db))
            ch.execute(f"INSERT INTO {db}.schema_migrations (version, name, applied_at) "
                       "VALUES", [(version, name, _now())])
            applied.append(f"{version:04d}_{name}")
        return applied
    finally:
        ch.disconnect()


def _now():  # noqa: ANN202 - naive UTC datetime, what clickhouse-driver expects
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
