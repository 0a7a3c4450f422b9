"""The ready queries of docs/data-engineering.md, one ``queries/<name>.sql`` file each.

The files are the single source: the doc quotes them verbatim (a test checks it), ``ioe export``
and the tests run them. They name tables without a database (an analyst's connection has the
database ``ioe`` as default) and take clickhouse-driver parameters ``%(name)s``; both ClickHouse
18.16 and the current engine run them unchanged (18.16-compatible syntax: subqueries rather
than CTEs, ``ALL INNER JOIN … USING``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ioe.clickhouse import Engine

QUERIES_DIR = Path(__file__).parent / "queries"


def names() -> list[str]:
    return sorted(p.stem for p in QUERIES_DIR.glob("*.sql"))


def sql(name: str) -> str:
    path = QUERIES_DIR / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no shipped query {name!r} (have: {', '.join(names())})")
    return path.read_text()


def body(text: str) -> str:
    """The statement without its leading ``--`` comment lines."""
    return "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith("--")).strip()


def run(engine: Engine, db: str, name: str,
        params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """Run a shipped query with ``db`` as the current database (``USE`` lasts per connection)."""
    engine.execute(f"USE {db}")
    return engine.execute(body(sql(name)), params)
