"""The current ClickHouse engine in-process (PyPI's ``chdb``), behind the same ``Engine`` shape as
the server, so migrations and shipped queries run unchanged on both.

Why: no current ClickHouse *server* can be installed on the development machines (only Debian's
18.16), while production runs a current release; chdb embeds that release. It is a test and
benchmark tool (the ``dev`` extra), imported only when used.

Results are converted to what clickhouse-driver returns for the same types (ints, floats,
``datetime``/``date``, ``None``), so code that parses server rows parses chdb rows too. Query
parameters (``%(name)s``) are substituted client-side with clickhouse-driver's own escaping, as
clickhouse-driver does for the server.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from clickhouse_driver.util.escape import escape_param

from ioe.clickhouse import Version, parse_version


def _datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _date(text: str) -> date:
    return date.fromisoformat(text)


def _int(value: Any) -> int:
    return int(value)


def _float(value: Any) -> float:
    return float(value)


# Type name prefix (after Nullable/LowCardinality are unwrapped) → converter, first match wins.
_CONVERTERS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("DateTime", _datetime),
    ("Date", _date),
    ("UInt", _int),
    ("Int", _int),
    ("Float", _float),
)
_WRAPPER = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")


def _converter(type_name: str) -> Callable[[Any], Any] | None:
    while (match := _WRAPPER.match(type_name)) is not None:
        type_name = match.group(1)
    return next((f for prefix, f in _CONVERTERS if type_name.startswith(prefix)), None)


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"'{value.strftime('%Y-%m-%d %H:%M:%S')}'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    return str(escape_param(value, None))


def substitute(sql: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return sql
    return sql % {k: _literal(v) for k, v in params.items()}


class ChdbEngine:
    """One embedded engine per process (chdb allows a single data path per process)."""

    name = "chdb"
    _session: Any = None
    _path: str | None = None

    def __init__(self, path: str | None = None) -> None:
        from chdb import session  # a dev extra: imported only when used

        if ChdbEngine._session is None:
            ChdbEngine._path = path or tempfile.mkdtemp(prefix="ioe-chdb-")
            ChdbEngine._session = session.Session(ChdbEngine._path)
        self.session = ChdbEngine._session
        self._version: Version | None = None

    def version(self) -> Version:
        if self._version is None:
            self._version = parse_version(str(self.execute("SELECT version()")[0][0]))
        return self._version

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        text = substitute(sql, params).strip().rstrip(";")
        result = self.session.query(text, "JSONCompact")
        raw = result.bytes() if hasattr(result, "bytes") else bytes(result)
        if not raw.strip():
            return []
        payload = json.loads(raw)
        converters = [_converter(m["type"]) for m in payload.get("meta", [])]
        return [tuple(v if v is None or f is None else f(v) for f, v in zip(converters, row,
                                                                             strict=True))
                for row in payload.get("data", [])]

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """``INSERT … VALUES`` built from Python values (what clickhouse-driver sends natively)."""
        if not rows:
            return
        values = ",".join("(" + ",".join("NULL" if v is None else _literal(v) for v in row) + ")"
                          for row in rows)
        self.session.query(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}")
