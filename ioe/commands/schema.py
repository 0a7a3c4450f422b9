"""``ioe schema``: Kafka topics with their partitions, and ClickHouse migrations."""

from __future__ import annotations

import argparse

from ioe.clickhouse import migrate
from ioe.kafka import ensure_topics
from ioe.settings import get_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions of new topics (default IOE_PARTITIONS or 12)")


def apply_schema(partitions: int | None = None) -> None:
    settings = get_settings()
    topics = ensure_topics(settings, partitions=partitions)
    print(f"topics      ready            {', '.join(topics)}")
    applied = migrate(settings)
    print(f"clickhouse  migrations       {', '.join(applied) if applied else 'up to date'} "
          f"(database {settings.clickhouse_database})")


def run(args: argparse.Namespace) -> int:
    apply_schema(args.partitions)
    return 0
