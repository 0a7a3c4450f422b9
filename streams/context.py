"""What the parts of ``ioe worker`` share: its configuration and the context handed to agents.

Its own module so that an agent (``streams.anomalies.agent``) can be typed against the context
without importing the Faust application that imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from ioe.messages import LiveMessage
from ioe.reading import Reading
from ioe.registry import Community, Device, Registry
from ioe.registry_follower import RegistryFollower
from ioe.settings import Settings


@dataclass(frozen=True, slots=True)
class Routed:
    """A valid reading of a known device, with the registry objects it was routed by."""

    reading: Reading
    device: Device
    community: Community


#: ``async hook(batch)``, called once per batch with the valid readings of known devices, in
#: offset order, inside the batch's event context (table writes land in its partition)
BatchHook = Callable[[Sequence[Routed]], Awaitable[None]]

#: ``hook(community_id, messages)``: every live update the worker computes for a community it
#: owns, published or not (unchanged values are not re-published, but they are fresh)
LiveHook = Callable[[str, Sequence[LiveMessage]], None]


@dataclass(frozen=True)
class WorkerConfig:
    lateness_s: float = 300.0
    staleness_s: float = 120.0
    #: minimum time between two full live recomputes of one community
    live_interval_s: float = 1.0
    #: minimum time between two emissions of re-opened (late) intervals of one community
    emit_min_s: float = 1.0
    max_gap_s: float = 1800.0
    web_port: int | None = None
    #: address of Faust's web server (``/ready``) and the metrics; 0.0.0.0 in a pod, so the
    #: kubelet's probes reach them
    bind: str = "127.0.0.1"
    data_dir: Path = Path(".local/faust")
    worker_id: str = "ioe-worker"
    sink: bool = True
    sink_batch: int = 5000
    sink_flush_s: float = 1.0
    log_level: str = "info"
    session_timeout_s: float = 10.0
    #: readings waiting and none processed for this long = a stalled consumer: restart
    stall_s: float = 60.0
    #: readings taken from the stream at once, and how long to wait for a batch to fill
    batch_max: int = 2000
    batch_within_s: float = 0.05
    #: anomaly detection (``streams.anomalies.agent``)
    anomalies: bool = True
    #: rule files evaluated by this worker for the communities it owns (``streams.control``)
    rule_files: tuple[Path, ...] = ()
    #: where the tables live (:data:`streams.app.STORES`): in memory, rebuilt from the
    #: changelogs at every start, or in RocksDB under ``data_dir``, where a restarted worker
    #: finds its state and reads only the changelog written since
    store: str = "memory"


@dataclass
class WorkerContext:
    """What an agent needs: the app, the topics, the followed registry, the metrics."""

    app: faust.App
    settings: Settings
    config: WorkerConfig
    follower: RegistryFollower
    topics: dict[str, faust.TopicT]
    metrics: CollectorRegistry
    batch_hooks: list[BatchHook] = field(default_factory=list)
    live_hooks: list[LiveHook] = field(default_factory=list)
    #: called when partitions were (re)assigned: what this worker owns may have changed
    rebalance_hooks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def registry(self) -> Registry:
        return self.follower.registry

    async def publish(self, logical_topic: str, key: str, value: bytes) -> Any:
        """Send now (not attached to the source offset): live data must not wait for commits."""
        return await self.topics[logical_topic].send(key=key.encode(), value=value, force=True)
