"""The MQTT topics of an edge on the secure listener: what it may publish and read.

Why a fixed tree per edge: the broker's ACL can then be one rule set per enrolled edge, with
no wildcard that reaches another edge or community::

    edge/<community>/<edge>/up/...         the edge publishes (readings, results)
    edge/<community>/<edge>/heartbeat      the edge publishes its heartbeat (retained)
    edge/<community>/<edge>/commands/...   the edge reads; only the control centre writes
"""

from __future__ import annotations

from ioe.edge.identity import EdgeId

ROOT = "edge"


def base(edge: EdgeId) -> str:
    return f"{ROOT}/{edge.community}/{edge.edge}"


def up(edge: EdgeId, suffix: str = "#") -> str:
    return f"{base(edge)}/up/{suffix}"


def heartbeat(edge: EdgeId) -> str:
    return f"{base(edge)}/heartbeat"


def commands(edge: EdgeId, suffix: str = "#") -> str:
    return f"{base(edge)}/commands/{suffix}"


#: every edge's heartbeat, for the control centre (loopback listener)
ALL_HEARTBEATS = f"{ROOT}/+/+/heartbeat"
