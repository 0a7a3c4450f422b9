"""``ioe export``: a community's readings, balances or alarms to Parquet or CSV (streamed).

Example: ``ioe export --community c1 --from 2026-01-01 --to 2026-01-31 --what balances
--format parquet --out balances-2026-01.parquet``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from ioe.clickhouse import client
from ioe.settings import get_settings
from warehouse.export import DATASETS, FORMATS, export

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--community", required=True, help="community id")
    parser.add_argument("--from", dest="first", required=True, type=date.fromisoformat,
                        help="first day, YYYY-MM-DD (in --tz)")
    parser.add_argument("--to", dest="last", required=True, type=date.fromisoformat,
                        help="last day, inclusive, YYYY-MM-DD (in --tz)")
    parser.add_argument("--what", required=True, choices=sorted(DATASETS))
    parser.add_argument("--format", dest="fmt", default=None, choices=FORMATS,
                        help="default: from the --out suffix")
    parser.add_argument("--out", required=True, type=Path, help="output file")
    parser.add_argument("--tz", default="Europe/Madrid", help="zone of the days")
    parser.add_argument("--chunk-rows", type=int, default=50_000)


def run(args: argparse.Namespace) -> int:
    fmt = args.fmt or args.out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        print(f"ioe export: say --format {'|'.join(FORMATS)} (or use a .parquet/.csv name)",
              file=sys.stderr)
        return 2
    settings = get_settings()
    ch = client(settings)

    def source(sql: str, params: Mapping[str, Any], chunk: int) -> Iterator[tuple[Any, ...]]:
        return ch.execute_iter(sql, dict(params),  # type: ignore[no-any-return]
                               settings={"max_block_size": chunk})

    def count(sql: str, params: Mapping[str, Any]) -> int:
        return int(ch.execute(sql, dict(params))[0][0])

    try:
        rows = export(source, count, settings.clickhouse_database, community=args.community,
                      what=args.what, first=args.first, last=args.last, fmt=fmt, out=args.out,
                      tz=args.tz, chunk_rows=args.chunk_rows)
    except ValueError as exc:
        print(f"ioe export: {exc}", file=sys.stderr)
        return 2
    finally:
        ch.disconnect()
    print(f"exported {rows} {args.what} rows of {args.community} to {args.out} ({fmt})")
    return 0
