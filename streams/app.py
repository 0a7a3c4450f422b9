"""The Faust application of ``ioe worker``: live shares, interval balances, ClickHouse sink.

One agent consumes ``ioe.readings`` (keyed by community, so the worker owning a partition owns
whole communities and nothing is repartitioned) in batches (:mod:`streams.processor`). Its
state lives in changelog-backed Faust tables (``memory://`` store: on start a worker rebuilds
its tables from the changelog topics of the partitions it is assigned; ``--store rocksdb``
keeps them on disk instead, and a restart reads only the changelog written since), written with the
typed, versioned codec of :mod:`streams.state`. Every table key is small (one device, one
device-slot, one community-interval), so a reading never rewrites a whole community's state.

Two plain aiokafka loops run beside it as app tasks: the registry follower
(:class:`ioe.registry_follower.RegistryFollower`: every worker needs every community) and the
ClickHouse sink (explicit commit-after-insert). The anomaly agent is imported like any module
and set up with the typed :class:`streams.context.WorkerContext`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from ioe.registry_follower import RegistryFollower
from ioe.settings import Settings
from ioe.topics import ANOMALIES, BALANCES, DEADLETTER, LIVE, READINGS
from streams import control as worker_rules
from streams.anomalies import agent as anomaly_agent
from streams.context import BatchHook, Routed, WorkerConfig, WorkerContext
from streams.faust_glue import InlineDrainConsumer, hold_then_release
from streams.processor import TABLES, ReadingsProcessor
from streams.sink import Sink
from streams.state import CODEC, upgrade

__all__ = ["BatchHook", "Routed", "WorkerConfig", "WorkerContext", "app_id", "create_app"]

log = logging.getLogger(__name__)


#: ``--store`` -> Faust store URL. RocksDB goes through faust's rocksdict driver (wheels on
#: PyPI, no system library): one database per table partition under the data directory.
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}


def app_id(settings: Settings, config: WorkerConfig) -> str:
    """The topic prefix makes tests (and tenants) independent consumer groups and changelogs."""
    return f"{settings.topic_prefix}{config.worker_id}"


def create_app(settings: Settings, config: WorkerConfig) -> tuple[faust.App, WorkerContext]:
    ident = app_id(settings, config)
    app = faust.App(
        ident,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=STORES[config.store],
        datadir=str(config.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,  # batch the changelog writes (measured: bench/bench_worker.py)
        producer_max_batch_size=256 * 1024,
        broker_max_poll_records=config.batch_max,
        broker_commit_interval=1.0,
        # a SIGKILLed worker's partitions move to the others after this long
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        web_enabled=config.web_port is not None,
        web_port=config.web_port or 6066,
        web_bind=config.bind,
        autodiscover=False,
    )
    # the fetch loop without four tasks per reading (:class:`streams.faust_glue.InlineDrainConsumer`)
    transport: Any = app.transport
    transport.Consumer = InlineDrainConsumer
    topics = {
        name: app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw",
                        partitions=settings.partitions)
        for name in (READINGS, LIVE, BALANCES, ANOMALIES, DEADLETTER)
    }
    metrics = CollectorRegistry()
    follower = RegistryFollower(settings)
    ctx = WorkerContext(app=app, settings=settings, config=config, follower=follower,
                        topics=topics, metrics=metrics)
    tables = {name: state_table(app, name, settings.partitions) for name in TABLES}
    processor = ReadingsProcessor(ctx, tables)

    releases: set[asyncio.Task[bool]] = set()
    readings_topic = settings.topic(READINGS)

    @app.on_partitions_assigned.connect
    async def _assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        """Hold the readings partitions in the Kafka client until Faust is ready, then seek
        and release them (:func:`streams.faust_glue.release_stream` says why)."""
        processor.on_rebalance()
        tps = sorted((tp.topic, tp.partition) for tp in assigned if tp.topic == readings_topic)
        # a task, not awaited here: the Kafka client's thread waits for this handler, and
        # pausing runs on that thread
        task = asyncio.ensure_future(hold_then_release(app, app.consumer_generation_id, tps))
        releases.add(task)
        task.add_done_callback(releases.discard)

    if config.stall_s > 0:
        app.timer(interval=max(1.0, config.stall_s / 6))(processor.check_stall)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness for a load balancer or Kubernetes: 200 once this worker can process."""
        reasons = not_ready_reasons(app, follower.ready.is_set())
        return web.json({"ready": not reasons, "reasons": reasons},
                        status=503 if reasons else 200)

    app.agent(topics[READINGS], name=f"{ident}.readings")(processor.agent)
    app.timer(interval=max(0.05, min(config.live_interval_s, 1.0) / 4))(processor.flush_live)
    app.task(_forever(follower.run, "registry follower"))
    if config.sink:
        sink = Sink(settings, follower.registry, group_id=f"{ident}-sink",
                    batch_size=config.sink_batch, flush_s=config.sink_flush_s, metrics=metrics)
        app.task(_forever(lambda: sink.run(follower.ready), "clickhouse sink"))
    if config.anomalies:
        anomaly_agent.setup(ctx)
    worker_rules.setup(ctx)
    return app, ctx


def not_ready_reasons(app: faust.App, registry_known: bool) -> list[str]:
    """Why this worker cannot process readings yet (empty = ready).

    A worker is ready when it knows the registry (readings of unknown communities would be
    dead-lettered), is not in the middle of a rebalance, and its tables are recovered from their
    changelogs (before that, a balance would start from nothing)."""
    reasons = []
    if not registry_known:
        reasons.append("registry not loaded yet")
    if app.rebalancing:
        reasons.append("rebalancing")
    recovery = app.tables.recovery
    if not recovery.completed.is_set():
        reasons.append("tables recovering")
    return reasons


class StateTable(faust.Table):
    """A changelog-backed table written with the worker's state codec (:mod:`streams.state`).

    faust-streaming 0.15.3's ``Table`` takes no serializer argument (it derives one from the
    value type, a Faust model), so it is set before the store and the changelog topic are made;
    recovered values also pass through :func:`streams.state.upgrade`, whichever codec decoded
    them."""

    def __init__(self, app: faust.App, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.value_serializer = CODEC

    def _to_value(self, v: Any) -> Any:
        return upgrade(v)


def state_table(app: faust.App, name: str, partitions: int) -> Any:
    table = StateTable(app, name=name, default=None, beacon=app.tables.beacon,
                       partitions=partitions, key_type=str, value_type=None)
    return app.tables.add(table)


def _forever(run: Callable[[], Awaitable[None]], what: str) -> Callable[[], Awaitable[None]]:
    """A background loop that logs and restarts instead of silently dying."""
    async def task() -> None:
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting in 2 s", what)
                await asyncio.sleep(2)
    task.__name__ = what.replace(" ", "_")
    return task
