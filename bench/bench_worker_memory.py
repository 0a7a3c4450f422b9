"""Memory of one worker holding 10,000 devices' state (issue 14: under 300 MB RSS).

50 communities × (1 inverter + 199 member meters) = 10,000 devices, four readings each five
minutes apart (counter and power, so every device has slots, a latest value and its
community a watermark). Baseline in the same run: the same worker process idle — started,
registry loaded, no reading yet — so the ratio is what the state itself costs.

Run: ``.venv/bin/python -m bench --only memory``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from ioe.kafka import ensure_topics, make_producer
from ioe.messages import LiveCommunity, decode_live
from ioe.reading import Reading
from ioe.settings import get_settings
from ioe.topics import LIVE, READINGS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "streams"))
from worker_helpers import WorkerProcess, make_community, publish_registry  # noqa: E402

from bench.bench_worker import _consumer, _drop_topics  # noqa: E402

COMMUNITIES = 50
MEMBERS = 199
STEP_MS = 300_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _readings(cids: list[str], start_ms: int, members: int = MEMBERS,
              per_device: int = 4) -> list[Reading]:
    """``per_device`` readings of every device of ``cids`` (the devices of
    ``make_community(cid, [...] * members)``), STEP_MS apart, counter and power."""
    out = []
    for k in range(per_device):
        for cid in cids:
            devices = [f"{cid}-inv1"] + [f"{cid}-m{i + 1:02d}-1" for i in range(members)]
            for n, device in enumerate(devices):
                out.append(Reading(device_id=device, ts_ms=start_ms + k * STEP_MS + n,
                                   source="bench", community_id=cid, power_w=100.0 + n,
                                   energy_wh=1000.0 + k * 10 + n))
    return out


async def _caught_up(settings: Any, cids: list[str], last_ts: int, timeout_s: float) -> None:
    """Until every community's live message carries its newest reading."""
    consumer: AIOKafkaConsumer = await _consumer(settings, LIVE, from_end=False)
    waiting = set(cids)
    deadline = time.monotonic() + timeout_s
    try:
        while waiting and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    msg = decode_live(record.value)
                    if isinstance(msg, LiveCommunity) and msg.ts_ms >= last_ts - STEP_MS:
                        waiting.discard(msg.community_id)
        if waiting:
            raise TimeoutError(f"{len(waiting)} communities not caught up")
    finally:
        await consumer.stop()


def run(quick: bool = True) -> dict[str, Any]:
    settings = dataclasses.replace(get_settings(), topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                                   partitions=3)
    ensure_topics(settings)
    cids = [f"ce-mem{c:02d}" for c in range(COMMUNITIES)]
    publish_registry(settings, [
        make_community(cid, [1 / MEMBERS] * MEMBERS, cups_base=1000 * (c + 1))
        for c, cid in enumerate(cids)])
    start_ms = int(time.time() * 1000) - 4 * STEP_MS
    readings = _readings(cids, start_ms)
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(settings, Path(tmp), "mem", "--no-sink", "--staleness-s", "3600",
                               "--live-interval-s", "1")
        try:
            deadline = time.monotonic() + 120
            while "[^Worker]: Ready" not in worker.log_text():
                if time.monotonic() > deadline:
                    raise TimeoutError("worker not ready")
                time.sleep(0.5)
            time.sleep(3)  # registry loaded
            idle = rss_mb(worker.proc.pid)
            producer = make_producer(settings)
            for r in readings:
                producer.send(settings.topic(READINGS), key=r.community_id, value=r.to_json())
            producer.flush()
            producer.close()
            asyncio.run(_caught_up(settings, cids, readings[-1].ts_ms, 600))
            time.sleep(2)
            loaded = rss_mb(worker.proc.pid)
        finally:
            worker.stop()
            _drop_topics(settings)
    devices = COMMUNITIES * (MEMBERS + 1)
    print(f"   worker RSS with {devices:,} devices' state: {loaded:.0f} MB "
          f"(idle {idle:.0f} MB, ratio {loaded / idle:.2f}; target < 300 MB)", flush=True)
    return {"figures": [{"name": f"worker RSS, {devices} devices' state (vs the same worker idle)",
                         "value": round(loaded, 1), "baseline": round(idle, 1), "unit": "MB",
                         "ratio": round(loaded / idle, 2)}],
            "devices": devices, "readings": len(readings)}


if __name__ == "__main__":
    print(run())
