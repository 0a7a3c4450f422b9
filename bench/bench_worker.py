"""Benchmark of ``ioe worker``: readings/s through one worker and end-to-end live latency.

Baseline in the same run: a raw aiokafka consumer of the same readings topic (decode +
validate only), so the ratios say what the Faust worker costs on top of Kafka itself.

* throughput: N readings are produced *before* the worker starts; the clock runs from the
  worker's first live message to the live message carrying the newest reading's timestamp.
* latency: with the worker caught up, readings are sent at a steady pace with ``ts_ms = now``;
  latency = arrival of the ``ioe.live`` message − its ``ts_ms`` (the newest reading it includes).
  The worker runs with ``--live-interval-s 0`` (no throttle) so the pipeline is measured, not
  the throttle.

Bounded: private topics, a private app id, a few thousand readings (``quick``) and a hard
timeout on every wait. Run: ``.venv/bin/python -m bench.bench_worker [--full]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ioe.kafka import ensure_topics, make_producer
from ioe.reading import Reading
from ioe.settings import get_settings
from ioe.topics import LIVE, READINGS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "streams"))
from worker_helpers import WorkerProcess, make_community, publish_registry  # noqa: E402

from bench.profile import Profile, wanted  # noqa: E402

CID = "ce-bench"
MEMBERS = 10


def _devices() -> list[str]:
    return [f"{CID}-inv1"] + [f"{CID}-m{i + 1:02d}-1" for i in range(MEMBERS)]


def _readings(count: int, start_ms: int, step_ms: int) -> list[Reading]:
    devices = _devices()
    return [Reading(device_id=devices[i % len(devices)], ts_ms=start_ms + i * step_ms,
                    source="bench", community_id=CID, power_w=100.0 + i % 997,
                    energy_wh=1000.0 + i) for i in range(count)]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _consumer(settings: Any, logical: str, *, from_end: bool) -> AIOKafkaConsumer:
    topic = settings.topic(logical)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    partitions = await consumer._client._wait_on_metadata(topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if from_end:
        await consumer.seek_to_end(*tps)
    else:
        await consumer.seek_to_beginning(*tps)
    return consumer


async def _baseline_throughput(settings: Any, count: int, timeout_s: float) -> float:
    consumer = await _consumer(settings, READINGS, from_end=False)
    seen, started = 0, time.perf_counter()
    try:
        while seen < count and time.perf_counter() - started < timeout_s:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    Reading.from_json(record.value)
                    seen += 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _worker_throughput(settings: Any, last_ts: int, timeout_s: float, count: int
                             ) -> float:
    consumer = await _consumer(settings, LIVE, from_end=False)
    first: float | None = None
    deadline = time.perf_counter() + timeout_s
    try:
        while time.perf_counter() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    now = time.perf_counter()
                    first = first or now
                    msg = orjson.loads(record.value)
                    if msg.get("type") == "community" and msg["ts_ms"] >= last_ts:
                        return count / max(now - first, 1e-6)
        raise TimeoutError("the worker did not catch up in time")
    finally:
        await consumer.stop()


async def _latency(settings: Any, count: int, rate: float) -> tuple[list[float], list[float]]:
    live = await _consumer(settings, LIVE, from_end=True)
    raw = await _consumer(settings, READINGS, from_end=True)
    producer = make_producer(settings, linger_ms=0)
    worker_ms: list[float] = []
    raw_ms: list[float] = []

    async def collect(consumer: AIOKafkaConsumer, out: list[float], kind: str | None) -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time() * 1000
                for record in records:
                    msg = orjson.loads(record.value)
                    if kind is None or msg.get("type") == kind:
                        out.append(now - msg["ts_ms"])

    tasks = [asyncio.create_task(collect(live, worker_ms, "community")),
             asyncio.create_task(collect(raw, raw_ms, None))]
    try:
        devices = _devices()
        for i in range(count):
            reading = Reading(device_id=devices[i % len(devices)],
                              ts_ms=int(time.time() * 1000), source="bench", community_id=CID,
                              power_w=200.0 + i, energy_wh=10_000.0 + i)
            producer.send(settings.topic(READINGS), key=CID, value=reading.to_json())
            producer.flush()
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(3)
    finally:
        for task in tasks:
            task.cancel()
        producer.close()
        await live.stop()
        await raw.stop()
    return worker_ms, raw_ms


def _drop_topics(settings: Any) -> None:
    """The benchmark's private topics (and the worker's changelogs) are not kept."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    except Exception as exc:  # cleanup must not hide the numbers
        print(f"could not delete the benchmark topics: {exc}", file=sys.stderr)
    finally:
        admin.close()


def run(quick: bool = True, live_interval_s: float = 0.0) -> dict[str, Any]:
    count = 3000 if quick else 20000
    latency_count, rate = (200, 50.0) if quick else (1000, 100.0)
    settings = dataclasses.replace(get_settings(), topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                                   partitions=3)
    ensure_topics(settings)
    publish_registry(settings, [make_community(CID, [1 / MEMBERS] * MEMBERS)])
    start_ms = int(time.time() * 1000) - count * 10
    readings = _readings(count, start_ms, 10)
    producer = make_producer(settings)
    for r in readings:
        producer.send(settings.topic(READINGS), key=CID, value=r.to_json())
    producer.flush()
    producer.close()
    baseline = asyncio.run(_baseline_throughput(settings, count, 120))
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(settings, Path(tmp), "bench", "--live-interval-s", str(live_interval_s),
                               "--no-sink", "--staleness-s", "3600")
        profile = Profile(worker.proc.pid) if wanted() else None
        try:
            through = asyncio.run(_worker_throughput(settings, readings[-1].ts_ms, 300, count))
            if profile is not None:
                print("\n".join(f"   {line}" for line in profile.stop()), flush=True)
            worker_ms, raw_ms = asyncio.run(_latency(settings, latency_count, rate))
        finally:
            worker.stop()
            _drop_topics(settings)
    result = {
        "readings": count,
        "baseline_readings_per_s": round(baseline, 1),
        "worker_readings_per_s": round(through, 1),
        "throughput_ratio": round(through / baseline, 3) if baseline else None,
        "latency_samples": len(worker_ms),
        "worker_latency_p50_ms": round(_pct(worker_ms, 0.5), 1),
        "worker_latency_p99_ms": round(_pct(worker_ms, 0.99), 1),
        "baseline_latency_p50_ms": round(_pct(raw_ms, 0.5), 1),
        "baseline_latency_p99_ms": round(_pct(raw_ms, 0.99), 1),
    }
    if raw_ms and worker_ms:
        result["latency_p50_ratio"] = round(statistics.median(worker_ms)
                                            / max(statistics.median(raw_ms), 0.1), 1)
    return result


if __name__ == "__main__":
    outcome = run(quick="--full" not in sys.argv)
    for key, value in outcome.items():
        print(f"{key:28} {value}")
