"""Helpers for the ``ioe worker`` integration tests: a small community, worker processes,
Kafka producers/consumers on the test's private topics, ClickHouse queries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from ioe.clickhouse import client as ch_client
from ioe.coefficients import CoefficientSchedule
from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.registry import Community, Device, Member, Plant
from ioe.settings import ROOT, Settings
from ioe.topics import REGISTRY

LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def make_cups(n: int, distributor: str = "0021") -> str:
    """A CUPS with correct check letters (DESIGN.md §1)."""
    digits = f"{distributor}{n:012d}"
    q, r = divmod(int(digits) % 529, 23)
    return f"ES{digits}{LETTERS[q]}{LETTERS[r]}"


def make_community(cid: str, betas: list[float], *, generators: int = 1,
                   meters_per_member: int = 1, cups_base: int = 1000) -> Community:
    """``len(betas)`` members m01…, one plant with ``generators`` inverters ``<cid>-inv<k>``,
    member meters ``<cid>-m01-<k>`` (plus the implicit ``datadis:<CUPS>`` devices).

    Several communities of one test need different ``cups_base``: a CUPS is one supply point,
    and ``datadis:<CUPS>`` is a device id — two communities with the same CUPS make the
    registry route an official reading to whichever community it read last."""
    members = tuple(Member(id=f"m{i + 1:02d}", name=f"member {i + 1}",
                           cups=make_cups(cups_base + i), contracted_power_kw=4.6)
                    for i in range(len(betas)))
    plant = Plant(id="plant-1", name="roof", cups=make_cups(8000 + cups_base) + "1F",
                  peak_power_kw=30, latitude=39.5, longitude=-0.4)
    devices: list[Device] = [
        Device(id=f"{cid}-inv{k + 1}", community_id=cid, role="generation", plant_id=plant.id)
        for k in range(generators)]
    for m in members:
        devices += [Device(id=f"{cid}-{m.id}-{k + 1}", community_id=cid, role="consumption",
                           member_id=m.id) for k in range(meters_per_member)]
    devices += [Device(id=f"datadis:{m.cups}", community_id=cid, role="consumption",
                       member_id=m.id, protocol={"type": "datadis"}) for m in members]
    devices.append(Device(id=f"datadis:{plant.cups}", community_id=cid, role="generation",
                          plant_id=plant.id, protocol={"type": "datadis"}))
    schedule = CoefficientSchedule("static", {m.cups: b for m, b in zip(members, betas,
                                                                       strict=True)})
    return Community(id=cid, name=cid, cau=None, timezone="Europe/Madrid", latitude=39.5,
                     longitude=-0.4, members=members, plants=(plant,), devices=tuple(devices),
                     schedules=(schedule,))


def publish_registry(settings: Settings, communities: Iterable[Community]) -> None:
    producer = make_producer(settings)
    for community in communities:
        producer.send(settings.topic(REGISTRY), key=community.id, value=community.to_json())
    producer.flush()
    producer.close()


def send_readings(producer: Any, topic: str, readings: Iterable[Reading]) -> int:
    count = 0
    for reading in readings:
        producer.send(topic, key=reading.community_id or reading.device_id,
                      value=reading.to_json())
        count += 1
    producer.flush()
    return count


#: what the worker logs when a guard fires (streams/faust_glue.py: StallWatchdog, Offsets)
GUARD_MARKS = ("the consumer is stalled", "stream skipped")


class WorkerProcess:
    """``ioe worker`` in a subprocess, on the test's private topics and database."""

    def __init__(self, settings: Settings, log_dir: Path, name: str, *extra: str) -> None:
        self.settings = settings
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = dict(os.environ)
        env.update(IOE_TOPIC_PREFIX=settings.topic_prefix,
                   IOE_CLICKHOUSE_DB=settings.clickhouse_database,
                   IOE_PARTITIONS=str(settings.partitions), IOE_KAFKA=settings.kafka_bootstrap,
                   PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioe.cli", "worker", "--stall-s", "20",
             "--data-dir", str(log_dir / name), *extra],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final commit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def guards_fired(self) -> list[str]:
        """The log lines of the worker's guards against the Faust stall and skipped ranges
        (``ioe_worker_stalls``, ``ioe_worker_stream_gaps``): with the root cause fixed they
        must stay silent, so tests assert this is empty."""
        return [line for line in self.log_text().splitlines()
                if any(mark in line for mark in GUARD_MARKS)]


class TopicReader:
    """Reads a topic (all partitions, from the beginning) without a consumer group."""

    def __init__(self, settings: Settings, logical: str) -> None:
        self.topic = settings.topic(logical)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                      enable_auto_commit=False, group_id=None)
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.messages: list[dict[str, Any]] = []

    def poll(self, timeout_ms: int = 500) -> list[dict[str, Any]]:
        new = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            new += [orjson.loads(r.value) for r in records]
        self.messages += new
        return new

    def wait(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float,
             what: str = "messages") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if predicate(self.messages):
                return self.messages
        raise AssertionError(f"timed out waiting for {what} on {self.topic}; "
                             f"got {len(self.messages)}: {self.messages[-5:]}")

    def close(self) -> None:
        self.consumer.close()


def query(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    ch = ch_client(settings)
    try:
        return ch.execute(sql.replace("{db}", settings.clickhouse_database))
    finally:
        ch.disconnect()


def wait_until(check: Callable[[], Any], timeout_s: float, what: str,
               interval_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
