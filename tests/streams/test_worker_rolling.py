"""Operators restart and scale workers while readings flow: nothing lost, nothing twice.

Readings of three communities (one per partition) flow at a steady pace from a background
producer while each of two workers is gracefully restarted in turn five times, and then the
group scales 1 → 3 → 1 workers. At the end the hourly and 15-minute balances in ClickHouse
(FINAL) equal the independent computation of ``test_worker_balances`` within 1 Wh, every
reading is stored exactly once, and no worker's guard fired (no stall re-exec, no skipped
offset range re-read): the rebalances themselves lose nothing.

Long (≈ 6 min on 2 cores): marked ``long``, run with ``pytest -m long``.
"""

from __future__ import annotations

import threading
import time

import pytest
from test_worker_balances import (
    BETAS,
    DAY,
    HOUR,
    community_ids,
    day_samples,
    expected_rows,
    mismatches,
    readings_for,
)
from worker_helpers import (
    WorkerProcess,
    make_community,
    publish_registry,
    query,
    send_readings,
    wait_until,
)

from ioe.kafka import make_producer
from ioe.reading import Reading
from ioe.topics import READINGS

pytestmark = [pytest.mark.stack, pytest.mark.long]

OPTIONS = ("--lateness-s", "600", "--emit-min-s", "0", "--live-interval-s", "5")


class SteadyFlow:
    """Sends the readings in small chunks at a steady pace on its own thread."""

    def __init__(self, settings, readings: list[Reading], seconds: float) -> None:
        self.producer = make_producer(settings)
        self.topic = settings.topic(READINGS)
        self.readings = readings
        self.pause_s = seconds / max(1, len(readings) // 100)
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for start in range(0, len(self.readings), 100):
                self.sent += send_readings(self.producer, self.topic,
                                           self.readings[start:start + 100])
                time.sleep(self.pause_s)
        finally:
            self.done.set()

    def close(self) -> None:
        self.done.wait(600)
        self.producer.close()


READY = "[^Worker]: Ready"


class OutputPauses:
    """The longest time without new balance rows in ClickHouse while workers restart (the
    operators' figure: how long members wait for their hour during a rolling upgrade)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.longest_s = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_count, last_change = -1, time.monotonic()
        while not self.stop.wait(1.0):
            count = query(self.settings, "SELECT count() FROM {db}.balances")[0][0]
            now = time.monotonic()
            if count != last_count:
                if last_count > 0:
                    self.longest_s = max(self.longest_s, now - last_change)
                last_count, last_change = count, now


def readies(worker: WorkerProcess) -> int:
    return worker.log_text().count(READY) if worker.log_path.exists() else 0


def ready(worker: WorkerProcess, before: int, timeout_s: float = 120) -> None:
    """Until the worker said it is ready (its tables recovered) once more than ``before``."""
    wait_until(lambda: readies(worker) > before, timeout_s, f"{worker.name} ready")


def test_rolling_restarts_and_scaling_under_load(stack_settings, tmp_path):
    settings = stack_settings
    cids = community_ids(3, settings.partitions)
    communities = {cid: make_community(cid, BETAS, cups_base=1000 + 100 * n)
                   for n, cid in enumerate(cids)}
    publish_registry(settings, communities.values())
    samples = {cid: day_samples(cid, seed=n) for n, cid in enumerate(cids)}
    readings = sorted((r for cid in cids for r in readings_for(cid, samples[cid])),
                      key=lambda r: r.ts_ms)
    everyone: list[WorkerProcess] = []

    def start(name: str) -> WorkerProcess:
        """Start (or restart: same name, same app id, same log) a worker; wait until ready."""
        before = max([readies(w) for w in everyone if w.name == name] or [0])
        worker = WorkerProcess(settings, tmp_path, name, *OPTIONS)
        everyone.append(worker)
        ready(worker, before)
        return worker

    workers = [start("w1"), start("w2")]
    flow = SteadyFlow(settings, readings, seconds=240)
    try:
        flow.thread.start()
        wait_until(lambda: query(settings, "SELECT count() FROM {db}.balances")[0][0] > 0,
                   180, "the first balances in ClickHouse")
        pauses = OutputPauses(settings)
        pauses.thread.start()
        for _round in range(5):  # each worker gracefully restarted in turn, same app id
            for i, worker in enumerate(workers):
                worker.stop()
                workers[i] = start(worker.name)
        # scale 1 → 3 → 1 while the flow goes on
        workers[1].stop()
        workers = [workers[0], start("w3"), start("w4")]
        for worker in workers[1:]:
            worker.stop()
        workers = workers[:1]
        flow.close()
        pauses.stop.set()
        print(f"longest pause in balance output during restarts and scaling: "
              f"{pauses.longest_s:.1f} s")
        # one more reading per community so the last intervals are emitted
        ticks = [Reading(device_id=f"{cid}-m01-1", ts_ms=DAY + 24 * HOUR + 41 * 60_000,
                         source="test", community_id=cid, power_w=100.0) for cid in cids]
        producer = make_producer(settings)
        send_readings(producer, settings.topic(READINGS), ticks)
        producer.close()

        expected = {cid: expected_rows(cid, samples[cid], 3600, {}) for cid in cids}
        expected_q = {cid: expected_rows(cid, samples[cid], 900, {}) for cid in cids}

        def wrong() -> list[str]:
            return (mismatches(settings, cids, expected, 3600)
                    + mismatches(settings, cids, expected_q, 900))

        try:
            wait_until(lambda: not wrong(), 240, "exact balances", interval_s=3)
        except AssertionError:
            bad = wrong()
            raise AssertionError(f"{len(bad)} wrong member-intervals, e.g. {bad[:5]}") from None
        assert flow.sent == len(readings)
        distinct = len({(r.device_id, r.ts_ms) for r in readings + ticks})
        wait_until(lambda: query(settings, "SELECT count() FROM {db}.readings FINAL")[0][0]
                   == distinct, 120, "every reading once in ClickHouse")
        # exactly once in the totals: the day's consumption of every member, hour by hour
        totals = query(settings, f"""
            SELECT community_id, member_id, sum(consumption_wh), count()
            FROM {{db}}.balances FINAL WHERE interval_s = 3600
              AND interval_start >= toDateTime({DAY // 1000})
              AND interval_start < toDateTime({(DAY + 24 * HOUR) // 1000})
            GROUP BY community_id, member_id""")
        assert len(totals) == len(cids) * len(BETAS)
        for cid, mid, consumption, hours in totals:
            assert hours == 24
            assert abs(consumption - sum(v[1] for (m, _s), v in expected[cid].items()
                                         if m == mid)) < 24
    finally:
        flow.done.wait(1)
        for worker in workers:
            worker.stop()
    fired = [line for worker in everyone for line in worker.guards_fired()]
    assert fired == [], fired[:5]
