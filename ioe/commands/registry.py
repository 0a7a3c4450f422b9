"""``ioe registry validate|apply [FILE]``: check the registry, publish it to ``ioe.registry``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ioe.registry import RegistryError, load_registry
from ioe.settings import get_settings
from ioe.topics import REGISTRY


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["validate", "apply"])
    parser.add_argument("file", nargs="?", type=Path, help="registry YAML (default IOE_REGISTRY)")


def publish(registry_path: Path, settings=None) -> list[str]:  # noqa: ANN001
    from ioe.kafka import ensure_topics, make_producer
    from ioe.topics import BY_NAME, commands_spec

    settings = settings or get_settings()
    registry = load_registry(registry_path)
    # each community's command topic too: an edge may read it but not create it
    ensure_topics(settings, [BY_NAME[REGISTRY],
                             *(commands_spec(cid) for cid in sorted(registry.communities))])
    producer = make_producer(settings)
    try:
        for community in registry.communities.values():
            producer.send(settings.topic(REGISTRY), key=community.id, value=community.to_json())
        producer.flush(timeout=60)
    finally:
        producer.close()
    return sorted(registry.communities)


def run(args: argparse.Namespace) -> int:
    path = args.file or get_settings().registry_path
    try:
        if args.action == "validate":
            registry = load_registry(path)
            for community in registry.communities.values():
                print(f"{community.id}: {len(community.members)} members, "
                      f"{len(community.plants)} plants ({community.peak_power_kw:g} kWp), "
                      f"{len(community.devices)} devices, {len(community.schedules)} "
                      "coefficient schedules — OK")
            return 0
        published = publish(path)
        print(f"published {', '.join(published)} to {get_settings().topic(REGISTRY)}")
        return 0
    except (RegistryError, OSError) as exc:
        print(f"ioe registry {args.action}: {exc}", file=sys.stderr)
        return 2
