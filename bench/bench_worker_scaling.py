"""Benchmark of ``ioe worker`` on a multi-community backlog: one worker, two workers, raw Kafka.

Issue 14 asks for ≥ 10,000 readings/s through one worker "for 8 communities spread over
partitions" and for two workers ≥ 1.4× one worker on that backlog. This module measures both
against a baseline taken in the same run:

* the backlog: ``COMMUNITIES`` communities of ``MEMBERS`` members (one meter each and one
  inverter), their ids chosen so that the community keys land evenly on ``PARTITIONS``
  partitions (readings are keyed by community: one community is never split between workers);
  every device reports a counter and a power every ``STEP_S`` of event time, ending in the
  recent past; produced *before* any worker starts;
* baseline: a raw aiokafka consumer of the same topic that parses and validates each reading
  (``Reading.from_json``), as the worker's first step does;
* one worker, then two workers of one consumer group (``--workers-id``), each on its own
  private app id over the same backlog, with the production settings but no ClickHouse sink
  (``--no-sink``: the sink is measured by ``bench_pipeline``). Progress is read from the
  workers' Prometheus counter ``ioe_worker_readings_total`` every 0.1 s; the rate is taken
  between 10 % and 90 % of the backlog, so process start, group join and the first rebalance
  (and the tail) are not in it; the wall time to drain the whole backlog is printed beside it.

The machine has 2 cores shared by Kafka and the worker(s): two workers compete for the same
cores as one, so the scaling figure says what this box does, not a capacity plan.
Run alone: ``.venv/bin/python -m bench --only scaling [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ioe.kafka import ensure_topics, make_producer
from ioe.reading import Reading
from ioe.settings import Settings, get_settings
from ioe.topics import READINGS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "streams"))
from worker_helpers import WorkerProcess, make_community, publish_registry  # noqa: E402

from bench.bench_worker import _drop_topics  # noqa: E402

COMMUNITIES = 8
PARTITIONS = 4
MEMBERS = 20
STEP_S = 10


def community_ids(count: int, partitions: int) -> list[str]:
    """``count`` community ids spread evenly over ``partitions`` (kafka-python's murmur2, the
    partitioner of the bench's producer)."""
    from kafka.partitioner.default import murmur2

    per_partition: dict[int, list[str]] = {p: [] for p in range(partitions)}
    k = 0
    while sum(len(v) for v in per_partition.values()) < count:
        cid = f"ce-scale-{k}"
        part = (murmur2(cid.encode()) & 0x7FFFFFFF) % partitions
        if len(per_partition[part]) < -(-count // partitions):
            per_partition[part].append(cid)
        k += 1
    return [cid for p in sorted(per_partition) for cid in per_partition[p]]


def _produce(settings: Settings, cids: list[str], count: int) -> None:
    """``count`` readings round-robin over every device of every community, in event-time
    order per device, the newest a minute ago."""
    devices = [(cid, dev) for cid in cids
               for dev in [f"{cid}-inv1", *(f"{cid}-m{i + 1:02d}-1" for i in range(MEMBERS))]]
    rounds = -(-count // len(devices))
    start_ms = int(time.time() * 1000) - 60_000 - rounds * STEP_S * 1000
    producer = make_producer(settings, linger_ms=20, batch_size=512 * 1024)
    topic = settings.topic(READINGS)
    sent = 0
    for r in range(rounds):
        ts = start_ms + r * STEP_S * 1000
        for cid, dev in devices:
            if sent >= count:
                break
            reading = Reading(device_id=dev, ts_ms=ts, source="bench", community_id=cid,
                              power_w=100.0 + (sent % 997), energy_wh=1000.0 + r * 0.3)
            producer.send(topic, key=cid, value=reading.to_json())
            sent += 1
    producer.flush()
    producer.close()


async def _raw(settings: Settings, count: int, timeout_s: float) -> float:
    topic = settings.topic(READINGS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, time.perf_counter()
        while seen < count and time.perf_counter() - started < timeout_s:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    Reading.from_json(record.value)
                    seen += 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processed(port: int) -> float:
    with contextlib.suppress(OSError), urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("ioe_worker_readings_total "):
                return float(line.split()[1])
    return 0.0


def _workers(settings: Settings, tmp: Path, group: str, n: int, count: int,
             timeout_s: float) -> dict[str, Any]:
    """``n`` workers of one group drain the backlog; their rate between 10 % and 90 % of it."""
    ports = [_free_port() for _ in range(n)]
    procs = [WorkerProcess(settings, tmp, f"{group}-{k}", "--workers-id", group,
                           "--metrics-port", str(port), "--no-sink", "--staleness-s", "3600")
             for k, port in enumerate(ports)]
    started = time.perf_counter()
    marks: dict[float, float] = {}
    try:
        deadline = started + timeout_s
        done = 0.0
        while done < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{n} worker(s) processed {done:,.0f} of {count:,}")
            for proc in procs:
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"worker exited:\n{proc.log_text()[-2000:]}")
            done = sum(_processed(port) for port in ports)
            now = time.perf_counter()
            for share in (0.1, 0.9):
                if done >= share * count and share not in marks:
                    marks[share] = now
            time.sleep(0.1)
        wall = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.stop()
    window = max(marks[0.9] - marks[0.1], 1e-6)
    return {"readings_per_s": 0.8 * count / window, "drain_s": wall}


def run(quick: bool = True) -> dict[str, Any]:
    count = 60_000 if quick else 240_000
    settings = dataclasses.replace(get_settings(), topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                                   partitions=PARTITIONS)
    ensure_topics(settings)
    cids = community_ids(COMMUNITIES, PARTITIONS)
    publish_registry(settings, [make_community(cid, [1 / MEMBERS] * MEMBERS, cups_base=1000 * k)
                                for k, cid in enumerate(cids, start=1)])
    try:
        _produce(settings, cids, count)
        raw = asyncio.run(_raw(settings, count, 120))
        print(f"   raw aiokafka consumer: {raw:,.0f} readings/s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            one = _workers(settings, Path(tmp), "scale-w1", 1, count, 600)
            print(f"   1 worker: {one['readings_per_s']:,.0f} readings/s "
                  f"(backlog drained in {one['drain_s']:.1f} s)", flush=True)
            two = _workers(settings, Path(tmp), "scale-w2", 2, count, 600)
            print(f"   2 workers: {two['readings_per_s']:,.0f} readings/s "
                  f"(backlog drained in {two['drain_s']:.1f} s)", flush=True)
    finally:
        _drop_topics(settings)
    spread = f"{COMMUNITIES} communities × {MEMBERS + 1} devices on {PARTITIONS} partitions"
    return {
        "readings": count,
        "figures": [
            {"name": f"1 worker, readings/s ({spread})", "value": one["readings_per_s"],
             "baseline": raw, "unit": "readings/s"},
            {"name": "2 workers vs 1 worker, same backlog", "value": two["readings_per_s"],
             "baseline": one["readings_per_s"], "unit": "readings/s"},
            {"name": "backlog drain wall time, 2 workers vs 1 (s)", "value": two["drain_s"],
             "baseline": one["drain_s"], "unit": "s"},
        ],
    }


if __name__ == "__main__":
    outcome = run(quick="--full" not in sys.argv)
    for figure in outcome["figures"]:
        print(f"{figure['name']:60} {figure['value']:12,.1f} {figure['baseline']:12,.1f}")
