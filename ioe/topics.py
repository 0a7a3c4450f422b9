"""The Kafka topics of the system (DESIGN.md §2), as a table.

Keys: readings, balances and anomalies are keyed by ``community_id`` so one worker owns a
whole community; the registry is compacted and keyed by community so the latest version of
each community is all a new consumer needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

READINGS = "ioe.readings"
LIVE = "ioe.live"
BALANCES = "ioe.balances"
ANOMALIES = "ioe.anomalies"
DEADLETTER = "ioe.deadletter"
REGISTRY = "ioe.registry"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    purpose: str
    #: None = the configured default partition count
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(READINGS, "community_id", "normalized readings from every connector",
              config={"retention.ms": str(14 * 24 * 3600 * 1000)}),
    TopicSpec(LIVE, "community_id", "live member and community values for the dashboards",
              config={"retention.ms": str(6 * 3600 * 1000)}),
    TopicSpec(BALANCES, "community_id", "15 min and hourly member balances (versioned)"),
    TopicSpec(ANOMALIES, "community_id", "alarm lifecycle events"),
    TopicSpec(DEADLETTER, "source", "input that could not be used, with the reason",
              config={"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(REGISTRY, "community_id", "latest registry document of each community",
              partitions=1,
              config={"cleanup.policy": "compact", "max.message.bytes": str(16 * 1024 * 1024)}),
)

BY_NAME = {spec.name: spec for spec in TOPICS}

# -- active control (control/) ----------------------------------------------------------------
# Commands go on one topic per community, ``ioe.commands.<community>``: an edge's Kafka ACL can
# then allow it to read its own community's commands and no other's (ioe/edge/kafka_access.py).
# One partition each: a community's commands are read in the order they were sent. A command is
# short-lived (it has a deadline); its result is the audit trail, on one shared topic that edges
# may only write.
COMMANDS_PREFIX = "ioe.commands."
COMMAND_RESULTS = "ioe.command-results"
COMMANDS_RETENTION_MS = 7 * 24 * 3600 * 1000
TOPICS += (
    TopicSpec(COMMAND_RESULTS, "community_id",
              "what each command did: acknowledged, failed or expired, with read-back",
              config={"retention.ms": str(30 * 24 * 3600 * 1000)}),
)
BY_NAME = {spec.name: spec for spec in TOPICS}


def commands_topic(community_id: str) -> str:
    """The (unprefixed) topic of one community's commands to its devices."""
    return COMMANDS_PREFIX + community_id


def commands_spec(community_id: str) -> TopicSpec:
    """Created by ``ioe registry apply`` and by ``ioe edge enrol`` (an edge cannot create it)."""
    return TopicSpec(commands_topic(community_id), "community_id",
                     f"commands to the devices of {community_id} (setting, who, why, deadline)",
                     partitions=1, config={"retention.ms": str(COMMANDS_RETENTION_MS)})
