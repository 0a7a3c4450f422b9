"""Recovery time of a restarted worker holding 100,000 devices' state: memory vs RocksDB.

Issue 15 ("state that outgrows memory"): with ``--store memory`` a worker rebuilds every table
from its changelog topics at each start; with ``--store rocksdb`` the tables live on disk under
its data directory and a restart on the same machine reads only the changelog written since.

For each store, on private topics: 100 communities × (1 inverter + 999 member meters) =
100,000 devices, two readings each five minutes apart (every device gets its latest value and
its slots, every community a watermark and open intervals); one worker processes them all
(until every community's live message carries the newest reading), is stopped gracefully and
started again on the same data directory. The figure is the time from the restart to its
``/ready`` answering 200 (registry loaded, tables recovered); the memory store is the baseline
measured in the same run. Also printed: the changelog records the tables hold and the RSS of
the recovered worker.

Run: ``.venv/bin/python -m bench --only recovery`` (about 4 minutes here).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from ioe.kafka import ensure_topics, make_producer
from ioe.reading import Reading
from ioe.settings import Settings, get_settings
from ioe.topics import READINGS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "streams"))
from worker_helpers import WorkerProcess, make_community, publish_registry  # noqa: E402

from bench.bench_worker import _drop_topics  # noqa: E402
from bench.bench_worker_memory import _caught_up, _readings, rss_mb  # noqa: E402

COMMUNITIES = 100
MEMBERS = 999
STEP_MS = 300_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, worker: WorkerProcess, timeout_s: float) -> float:
    """Seconds until the worker's /ready answers 200."""
    started = time.monotonic()
    with httpx.Client(timeout=2) as client:
        while True:
            try:
                if client.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if worker.proc.poll() is not None or time.monotonic() - started > timeout_s:
                raise TimeoutError(f"worker not ready:\n{worker.log_text()[-2000:]}")
            time.sleep(0.1)


def _changelog_records(settings: Settings) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    try:
        tps = [TopicPartition(t, p) for t in consumer.topics()
               if t.startswith(settings.topic_prefix) and t.endswith("-changelog")
               for p in consumer.partitions_for_topic(t) or ()]
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        consumer.close()


def _one_store(store: str, readings_of: Any, cids: list[str]) -> dict[str, float]:
    settings = dataclasses.replace(get_settings(), partitions=4,
                                   topic_prefix=f"bench{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings)
    publish_registry(settings, [
        make_community(cid, [1 / MEMBERS] * MEMBERS, cups_base=10_000 * (c + 1))
        for c, cid in enumerate(cids)])
    readings = readings_of()
    options = ("--no-sink", "--staleness-s", "3600", "--live-interval-s", "1",
               "--store", store)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            port = _free_port()
            worker = WorkerProcess(settings, Path(tmp), "w", *options, "--web-port", str(port))
            try:
                _wait_ready(port, worker, 180)
                producer = make_producer(settings)
                for r in readings:
                    producer.send(settings.topic(READINGS), key=r.community_id,
                                  value=r.to_json())
                producer.flush()
                producer.close()
                started = time.monotonic()
                asyncio.run(_caught_up(settings, cids, readings[-1].ts_ms, 900))
                processed_s = time.monotonic() - started
                time.sleep(3)  # the changelog's last writes are acknowledged
            finally:
                worker.stop()
            records = _changelog_records(settings)
            restarted = WorkerProcess(settings, Path(tmp), "w", *options, "--web-port",
                                      str(port))
            try:
                recovery_s = _wait_ready(port, restarted, 600)
                rss = rss_mb(restarted.proc.pid)
            finally:
                restarted.stop()
    finally:
        _drop_topics(settings)
    print(f"   {store:<8} processed {len(readings):,} readings in {processed_s:.1f} s; "
          f"changelog {records:,} records; restart to ready {recovery_s:.1f} s, "
          f"RSS {rss:.0f} MB", flush=True)
    return {"recovery_s": recovery_s, "records": records, "rss_mb": rss}


def run(quick: bool = True) -> dict[str, Any]:
    cids = [f"ce-rec{c:03d}" for c in range(COMMUNITIES)]
    start_ms = int(time.time() * 1000) - 2 * STEP_MS

    def readings() -> list[Reading]:
        return _readings(cids, start_ms, members=MEMBERS, per_device=2)

    memory = _one_store("memory", readings, cids)
    rocksdb = _one_store("rocksdb", readings, cids)
    devices = COMMUNITIES * (MEMBERS + 1)
    ratio = rocksdb["recovery_s"] / memory["recovery_s"]
    print(f"   restart to ready with {devices:,} devices' state: rocksdb "
          f"{rocksdb['recovery_s']:.1f} s vs memory {memory['recovery_s']:.1f} s "
          f"(ratio {ratio:.2f})", flush=True)
    return {"figures": [
        {"name": f"worker restart to ready, {devices} devices' state, rocksdb (vs memory)",
         "value": round(rocksdb["recovery_s"], 2), "baseline": round(memory["recovery_s"], 2),
         "unit": "s", "ratio": round(ratio, 2)},
        {"name": "RSS of the recovered worker, rocksdb (vs memory)",
         "value": round(rocksdb["rss_mb"]), "baseline": round(memory["rss_mb"]), "unit": "MB",
         "ratio": round(rocksdb["rss_mb"] / memory["rss_mb"], 2)}],
        "changelog_records": {"memory": memory["records"], "rocksdb": rocksdb["records"]},
        "devices": devices}


if __name__ == "__main__":
    print(run())
