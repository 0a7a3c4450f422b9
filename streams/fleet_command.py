"""``ioe workers status``: the worker group's members, partitions, communities, lag and rate.

Reads Kafka's own view (group membership, committed offsets, end offsets) with the admin
client, twice ``--sample-s`` apart, and prints :func:`streams.fleet.render` (or ``--json``).
Exit code 0, or 1 when a member is stalled (so it can drive an alert).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from ioe.registry import load_registry
from ioe.settings import get_settings
from ioe.topics import READINGS
from streams.fleet import FleetStatus, fleet_status, render

STALLED = 1


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="members, partitions, lag, rate, stalls")
    status.add_argument("--workers-id", default="ioe-worker",
                        help="the workers' id (as given to ioe worker --workers-id)")
    status.add_argument("--sample-s", type=float, default=3.0,
                        help="seconds between the two offset samples (the rate's window)")
    status.add_argument("--registry", default=None,
                        help="registry YAML naming the communities (default: $IOE_REGISTRY)")
    status.add_argument("--json", action="store_true", help="one JSON document")


def _members(admin: KafkaAdminClient, group: str, topic: str
             ) -> tuple[str, dict[tuple[str, str, str], list[int]]]:
    described: dict[str, Any] = admin.describe_groups([group]).get(group) or {}
    members: dict[tuple[str, str, str], list[int]] = {}
    for member in described.get("members") or []:
        assignment = member.get("member_assignment") or {}
        parts: list[int] = []
        if isinstance(assignment, dict):
            for item in assignment.get("assigned_partitions") or []:
                if item.get("topic") == topic:
                    parts.extend(int(p) for p in item.get("partitions") or [])
        members[(str(member.get("member_id")), str(member.get("client_id")),
                 str(member.get("client_host", "")).lstrip("/"))] = parts
    return str(described.get("group_state") or "Unknown"), members


def _committed(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int | None]:
    offsets = admin.list_group_offsets(group).get(group) or {}
    return {tp.partition: (om.offset if om.offset >= 0 else None)
            for tp, om in offsets.items() if tp.topic == topic}


def collect(group: str, topic: str, sample_s: float, community_ids: list[str]) -> FleetStatus:
    settings = get_settings()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                             request_timeout_ms=20_000)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        before = _committed(admin, group, topic)
        started = time.monotonic()
        time.sleep(max(0.0, sample_s))
        state, members = _members(admin, group, topic)
        after = _committed(admin, group, topic)
        window = time.monotonic() - started
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()} if tps else {}
    finally:
        consumer.close()
        admin.close()
    return fleet_status(group=group, topic=topic, state=state, partitions=len(partitions),
                        assignments=members, committed_before=before, committed_after=after,
                        ends=ends, window_s=window, community_ids=community_ids)


def run(args: argparse.Namespace) -> int:
    from streams.app import WorkerConfig, app_id

    settings = get_settings()
    registry_path = args.registry or settings.registry_path
    communities = sorted(load_registry(registry_path).communities)
    group = app_id(settings, dataclasses.replace(WorkerConfig(), worker_id=args.workers_id))
    status = collect(group, settings.topic(READINGS), args.sample_s, communities)
    if args.json:
        sys.stdout.write(orjson.dumps(status.to_dict()).decode() + "\n")
    else:
        print("\n".join(render(status)))
    return STALLED if status.stalled else 0
