"""ClickHouse access and versioned, idempotent schema migrations, portable across engine versions.

Migrations are the numbered ``infra/clickhouse/migrations/NNNN_name.sql`` files; ``{db}`` in them
is the database name (tests use their own database). ``schema_migrations`` records what ran, and
every statement is ``IF NOT EXISTS`` as well, so a half-applied migration can simply run again.

The files are *templates*: a column type written as ``{ID}``, ``{TIME}``… is resolved by
:data:`TYPE_GATES` from the server's version. Rendered for 18.16 (the local and test server) they
give exactly the historical DDL; a current server gets better physical types under the same
column names (dictionary-encoded ids, explicit UTC, compression codecs), so no query changes.

A statement preceded by ``-- requires: <feature>`` runs only where :data:`FEATURES` says the
engine has it (e.g. SQL access control). A migration with a skipped statement is not recorded,
so it completes on its own once the server can do it (every statement is idempotent).

One setting, ``IOE_CLICKHOUSE_CLUSTER`` (a ``remote_servers`` cluster name, empty by default),
turns every sink table into a ``ReplicatedReplacingMergeTree`` named ``<table>_local`` plus a
``Distributed`` table under the original name, sharded by community (so every natural key lives
on one shard and ``FINAL`` stays exact): queries, views and the sink keep their table names. Run
the migrations on every server of the cluster (the DDL is per server, not ``ON CLUSTER``, so no
distributed DDL queue is needed); the servers need ``<macros>`` ``shard`` and ``replica``.

Everything here talks to an :class:`Engine` — the server through clickhouse-driver, or the
in-process current engine (``warehouse.engines.ChdbEngine``) the tests use to prove every
migration and shipped query on both versions.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clickhouse_driver import Client

from ioe.settings import ROOT, Settings, get_settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = ROOT / "infra" / "clickhouse" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TOKEN = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
_REQUIRES = re.compile(r"^\s*--\s*requires:\s*([a-z_]+)\s*$")
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Version = tuple[int, ...]


class Engine(Protocol):
    """What migrations and shipped queries need from a ClickHouse engine."""

    name: str

    def version(self) -> Version: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        ...

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        ...


@dataclass(frozen=True)
class TypeGate:
    """A column type that is better on newer servers; ``legacy`` is the 18.16 DDL, verbatim."""

    token: str
    legacy: str
    current: str
    since: Version
    why: str


# 20.3 is the first LTS with LowCardinality (GA in 19.x), column codecs (19.11) and
# DateTime('tz') all stable; one threshold keeps the table readable.
_MODERN: Version = (20, 3)
TYPE_GATES: tuple[TypeGate, ...] = (
    TypeGate("ID", "String", "LowCardinality(String)", _MODERN,
             "ids and enum-like strings: dictionary encoded, smaller and faster to group"),
    TypeGate("TIME", "DateTime", "DateTime('UTC')", _MODERN,
             "explicit UTC: results never depend on the server's timezone"),
    TypeGate("NTIME", "Nullable(DateTime)", "Nullable(DateTime('UTC'))", _MODERN,
             "explicit UTC, nullable (alarm closing time)"),
    TypeGate("MS", "UInt64", "UInt64 CODEC(Delta, ZSTD)", _MODERN,
             "millisecond timestamps and versions grow steadily: deltas compress to ~1 byte"),
    TypeGate("COUNTER", "Nullable(Float64)", "Nullable(Float64) CODEC(Delta, ZSTD)", _MODERN,
             "cumulative energy counters grow slowly: Delta then ZSTD"),
    TypeGate("WH", "Float64", "Float64 CODEC(Gorilla, ZSTD)", _MODERN,
             "interval energies change little from hour to hour: Gorilla for floats"),
)
_GATES = {g.token: g for g in TYPE_GATES}

# Features a ``-- requires:`` line can name: (minimum version, optional runtime probe).
FEATURES: dict[str, tuple[Version, Callable[[Engine], bool] | None]] = {}


def _can_manage_access(engine: Engine) -> bool:
    """SQL access control needs a writable user directory and the right to use it: a
    current server's ``default`` user without ``access_management`` (the Docker image's default)
    or an embedded engine (chdb) cannot create users, so those statements are skipped."""
    try:
        grants = " ".join(str(r[0]) for r in engine.execute("SHOW GRANTS"))
    except Exception:  # noqa: BLE001 - any refusal means "not supported here"
        return False
    return "ACCESS MANAGEMENT" in grants or "GRANT ALL ON *.*" in grants


FEATURES["access_management"] = ((20, 5), _can_manage_access)


@dataclass(frozen=True)
class Cluster:
    """Replicated + Distributed tables over a ``remote_servers`` cluster."""

    name: str
    sharding_key: str = "cityHash64(community_id)"
    zk_root: str = "/clickhouse/tables/{shard}"


def cluster_from_env() -> Cluster | None:
    name = os.environ.get("IOE_CLICKHOUSE_CLUSTER", "").strip()
    if not name:
        return None
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"invalid cluster name {name!r}")
    return Cluster(name)


_SINK_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)\s*\((.*)\)\s*"
    r"ENGINE = ReplacingMergeTree\((\w+)\)(.*)$", re.S)


def clustered(statement: str, cluster: Cluster | None) -> list[str]:
    """The statement for a single server, or its replicated + distributed pair."""
    match = _SINK_TABLE.match(statement) if cluster is not None else None
    if match is None or cluster is None:
        return [statement]
    db, table, columns, version, rest = match.groups()
    local = f"{table}_local"
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.{local}\n({columns})\n"
        f"ENGINE = ReplicatedReplacingMergeTree('{cluster.zk_root}/{db}/{table}', '{{replica}}', "
        f"{version}){rest}",
        f"CREATE TABLE IF NOT EXISTS {db}.{table} AS {db}.{local} "
        f"ENGINE = Distributed({cluster.name}, {db}, {local}, {cluster.sharding_key})",
    ]


def parse_version(text: str) -> Version:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:4])


def render(sql: str, version: Version, db: str) -> str:
    """The template for a server of ``version``; unknown ``{TOKENS}`` are an error, not SQL."""
    if not _DB_NAME.fullmatch(db):
        raise ValueError(f"invalid database name {db!r}")

    def resolve(match: re.Match[str]) -> str:
        gate = _GATES.get(match.group(1))
        if gate is None:
            raise ValueError(f"unknown type token {{{match.group(1)}}} in a migration")
        return gate.current if version >= gate.since else gate.legacy

    return _TOKEN.sub(resolve, sql.replace("{db}", db))


class ServerEngine:
    """A ClickHouse server through clickhouse-driver (native protocol)."""

    name = "server"

    def __init__(self, ch: Client) -> None:
        self.ch = ch
        self._version: Version | None = None

    def version(self) -> Version:
        if self._version is None:
            self._version = parse_version(str(self.ch.execute("SELECT version()")[0][0]))
        return self._version

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.ch.execute(sql, dict(params) if params is not None else None)  # type: ignore[no-any-return]

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.ch.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", rows)


def client(settings: Settings | None = None, database: str | None = None, *,
           user: str = "default", password: str = "") -> Client:
    settings = settings or get_settings()
    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                  database=database or "default", user=user, password=password,
                  connect_timeout=5, send_receive_timeout=120)


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
    return [s for _, s in split_gated(sql)]


def split_gated(sql: str) -> list[tuple[str | None, str]]:
    """(required feature or None, statement) pairs; a ``-- requires: f`` line gates the
    statement it precedes."""
    result: list[tuple[str | None, str]] = []
    for chunk in sql.split(";\n"):
        feature = None
        lines = []
        for line in chunk.splitlines():
            gate = _REQUIRES.match(line)
            if gate:
                feature = gate.group(1)
            elif not line.lstrip().startswith("--"):
                lines.append(line)
        statement = "\n".join(lines).strip().rstrip(";").strip()
        if statement:
            result.append((feature, statement))
    return result


def supports(engine: Engine, feature: str) -> bool:
    since, probe = FEATURES[feature]
    return engine.version() >= since and (probe is None or probe(engine))


def migrate_engine(engine: Engine, db: str,
                   files: Sequence[tuple[int, str, Path]] | None = None,
                   cluster: Cluster | None = None) -> list[str]:
    """Apply pending migrations on ``engine``; returns the names of those applied in this call.
    With ``cluster``, sink tables are replicated + distributed (module docstring)."""
    if not _DB_NAME.fullmatch(db):
        raise ValueError(f"invalid database name {db!r}")
    engine.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    engine.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime) "
        "ENGINE = MergeTree() ORDER BY version"
    )
    done = {int(row[0]) for row in engine.execute(f"SELECT version FROM {db}.schema_migrations")}
    version = engine.version()
    available: dict[str, bool] = {}
    applied = []
    for number, name, path in files if files is not None else migration_files():
        if number in done:
            continue
        skipped = []
        for feature, statement in split_gated(render(path.read_text(), version, db)):
            if feature is not None:
                if feature not in available:
                    available[feature] = supports(engine, feature)
                if not available[feature]:
                    skipped.append(feature)
                    continue
            for part in clustered(statement, cluster):
                engine.execute(part)
        if skipped:
            log.info("migration %04d_%s: skipped statements needing %s on %s %s; "
                     "it stays pending", number, name, ", ".join(sorted(set(skipped))),
                     engine.name, ".".join(map(str, version)))
            continue
        engine.execute(f"INSERT INTO {db}.schema_migrations (version, name, applied_at) "
                       f"SELECT {int(number)}, '{name}', now()")
        applied.append(f"{number:04d}_{name}")
    return applied


def migrate(settings: Settings | None = None, database: str | None = None) -> list[str]:
    """Apply pending migrations on the configured server; returns those applied in this call."""
    settings = settings or get_settings()
    db = database or settings.clickhouse_database
    if not _DB_NAME.fullmatch(db):
        raise ValueError(f"invalid database name {db!r}")
    ch = client(settings)
    try:
        return migrate_engine(ServerEngine(ch), db, cluster=cluster_from_env())
    finally:
        ch.disconnect()
