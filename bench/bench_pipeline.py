"""The whole pipeline: Kafka → ``ioe worker`` → ClickHouse, and meter → ``ioe web`` websocket.

Issue 9 asks for two figures this module measures against the real local stack, each next to a
baseline taken in the same run (so the ratio means something on any machine):

* **ingest throughput** — N readings are produced to ``ioe.readings`` *before* anything
  consumes them; the clock runs from the first rows seen in ClickHouse ``readings`` to the moment
  all N are there (polled every 50 ms). Measured for a bare aiokafka consumer + clickhouse-driver
  batch insert (same batch size as the sink, 5,000 rows, into a table of the same shape), for
  one ``ioe worker`` (its sink, with the readings agent, balances and anomaly agent running in
  the same process, as deployed) and for two workers sharing the partitions. The readings are
  spread over four 150-member communities whose keys land on four different partitions:
  readings are keyed by community, so one community can never use more than one worker.
* **live latency** — with one worker caught up and ``ioe web`` running, a paced producer (a
  separate process) sends readings of one 150-member community (150 meters + 1 inverter) with
  ``ts_ms`` = send time at 1×, 10× and 100× the load of such a community at 1 reading/s per
  device. A real websocket client (``websockets``, member token issued by
  ``dashboards.tokens``) is subscribed to ``community:<cid>``. Reported: **meter → websocket**
  per reading (time from a reading's ``ts_ms`` to the arrival of the first community frame whose
  ``ts_ms`` is at least that reading's; this includes the worker's live throttle of
  1 update/s per community, the production default), and the age of the newest reading in each
  frame. Baseline: the same readings timed from producer to a raw aiokafka consumer of
  ``ioe.readings`` in the same run. When the worker cannot keep up, the achieved processing
  rate (while the generator runs, and once it stopped: the catch-up rate), the latency growth
  and the backlog left are reported, not hidden. Each load starts with the worker caught up
  (bounded wait). The latency part runs on its own fresh topics (the ingest backlog must not sit
  in front of it), after a short 1× warm-up so every device has been seen once, with the worker
  at the production default ``--emit-min-s 1`` (``EMIT_MIN_S``; the readings agent's rate on
  the ingest backlog is reported as ``agent_per_s``).

Everything is private to the run: topic prefix, ClickHouse databases, Faust app ids, token
secret, registry file; subprocesses run in their own process groups and are killed at the end,
the databases and topics dropped. The machine has 2 cores shared by Kafka, ClickHouse, the
worker(s), the web server, the load generator and the measuring client (and whatever else is
running): the figures are what that box does, not a capacity plan.

Run alone: ``.venv/bin/python -m bench --only pipeline [--quick]``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from ioe.settings import ROOT, Settings, get_settings

MEMBERS = 150
COMMUNITIES = 4
PARTITIONS = 4
SINK_BATCH = 5000
DISTRIBUTOR = "0021"
#: loads of the latency phases: (label, readings/s per device)
LOADS = (("1x", 1), ("10x", 10), ("100x", 100))
#: ``--emit-min-s`` of the latency worker: the production default. (Before the fix of the
#: balance recalculation stall — every first reading of a device re-planned ~31 intervals for
#: 150 members — this had to be 30 s for the warm-up to pass; ``agent_per_s`` of the ingest part
#: is the figure that showed it.)
EMIT_MIN_S = 1.0


# -- registry -----------------------------------------------------------------------------------
def _cups(n: int, suffix: str = "") -> str:
    from stdnum.es import cups as stdnum_cups

    body = f"{DISTRIBUTOR}{n:012d}"
    return "ES" + body + stdnum_cups.calc_check_digits(body) + suffix


def _community_ids(partitions: int) -> list[str]:
    """Community ids whose keys land on distinct partitions (kafka-python's murmur2), so the
    ingest load can be shared by two workers at all."""
    from kafka.partitioner.default import murmur2

    chosen: dict[int, str] = {}
    k = 0
    while len(chosen) < min(COMMUNITIES, partitions):
        cid = f"ce-bench-{k}"
        chosen.setdefault((murmur2(cid.encode()) & 0x7FFFFFFF) % partitions, cid)
        k += 1
    return [chosen[p] for p in sorted(chosen)]


def _devices(cid: str) -> list[str]:
    return [f"{cid}-inv1"] + [f"{cid}-m{i:03d}" for i in range(1, MEMBERS + 1)]


def _write_registry(directory: Path, cids: list[str]) -> Path:
    """150 members per community, one plant, one meter per member, static coefficient file."""
    (directory / "coefficients").mkdir(parents=True, exist_ok=True)
    betas = [round(1 / MEMBERS, 6)] * MEMBERS
    betas[-1] = round(1 - sum(betas[:-1]), 6)
    lines = ["communities:"]
    for c, cid in enumerate(cids):
        plant_cups = _cups(900_000 + c, "1F")
        cau = plant_cups + "A001"
        member_cups = [_cups(c * 1000 + i) for i in range(1, MEMBERS + 1)]
        coeff = f"coefficients/{cau}_2026.txt"
        (directory / coeff).write_text("".join(
            f"{cups};{beta:.6f}\n".replace(".", ",") for cups, beta in zip(member_cups, betas,
                                                                           strict=True)),
            encoding="utf-8")
        lines += [f"  - id: {cid}", f"    name: Bench {cid}", f"    cau: {cau}",
                  "    timezone: Europe/Madrid",
                  "    location: {latitude: 39.4863, longitude: -0.3586}",
                  "    plants:",
                  f"      - {{id: plant-1, name: roof, cups: {plant_cups}, peak_power_kw: 450}}",
                  "    members:"]
        lines += [f"      - {{id: m{i:03d}, cups: {cups}, contracted_power_kw: 4.6}}"
                  for i, cups in enumerate(member_cups, start=1)]
        lines += ["    devices:",
                  f"      - {{id: {cid}-inv1, role: generation, plant: plant-1, "
                  "rated_power_w: 450000, expected_interval_s: 1}"]
        lines += [f"      - {{id: {cid}-m{i:03d}, role: consumption, member: m{i:03d}, "
                  "expected_interval_s: 1}" for i in range(1, MEMBERS + 1)]
        lines += ["    coefficients:", "      - effective_from: 2020-01-01", f"        file: {coeff}"]
    path = directory / "community.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _reading_json(device: str, cid: str, ts_ms: int, power: float) -> bytes:
    """A ``Reading.to_json()`` document, formatted directly so the load generator is cheap
    (checked against ``Reading.from_json`` once per run). Power and a cumulative energy
    counter (a steady 500 W, so the counter only grows), as Shelly/Tasmota meters report."""
    return (b'{"device_id":"%s","ts_ms":%d,"source":"bench","community_id":"%s",'
            b'"power_w":%.1f,"energy_wh":%.3f,"quality":"measured","v":1}'
            % (device.encode(), ts_ms, cid.encode(), power, ts_ms * (500 / 3_600_000)))


# -- processes ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: Settings, registry: Path) -> dict[str, str]:
    return {**os.environ, "IOE_TOPIC_PREFIX": settings.topic_prefix,
            "IOE_CLICKHOUSE_DB": settings.clickhouse_database, "IOE_REGISTRY": str(registry),
            "IOE_TOKEN_SECRET": settings.token_secret, "IOE_LOCAL_DIR": str(settings.local_dir),
            "IOE_PARTITIONS": str(settings.partitions), "IOE_KAFKA": settings.kafka_bootstrap,
            "PYTHONUNBUFFERED": "1"}


class Proc:
    """A subprocess in its own process group, logging to a file; killed as a group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                               f"{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        pgid = self.proc.pid
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # children left in the group
            os.killpg(pgid, signal.SIGKILL)
        self._log.close()


def _worker(settings: Settings, registry: Path, tmp: Path, name: str, app: str,
            metrics_port: int, *extra: str) -> Proc:
    args = ["-m", "ioe.cli", "--log-level", "WARNING", "worker", "--data-dir", str(tmp / name),
            "--workers-id", app, "--metrics-port", str(metrics_port), *extra]
    return Proc(name, args, _env(settings, registry), tmp)


def _processed(ports: list[int]) -> int:
    """Readings the workers' readings agents have processed (their Prometheus counters)."""
    total = 0.0
    for port in ports:
        with contextlib.suppress(OSError):
            total += _metric(port, "ioe_worker_readings_total")
    return int(total)


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


# -- ingest -------------------------------------------------------------------------------------
def _produce_ingest(settings: Settings, cids: list[str], count: int) -> int:
    """``count`` readings, round-robin over every device of every community, 1 s apart per
    device, ending ~10 minutes ago (event time in the past, as a replayed backlog)."""
    from ioe.kafka import make_producer
    from ioe.topics import READINGS

    devices = [(cid, d) for cid in cids for d in _devices(cid)]
    per_device = -(-count // len(devices))
    start_ms = int(time.time() * 1000) - 600_000 - per_device * 1000
    producer = make_producer(settings, linger_ms=50, batch_size=256 * 1024)
    topic = settings.topic(READINGS)
    for i in range(count):
        cid, device = devices[i % len(devices)]
        ts = start_ms + (i // len(devices)) * 1000
        producer.send(topic, key=cid, value=_reading_json(device, cid, ts, 100.0 + i % 997))
    producer.flush(120)
    producer.close()
    return count


def _count(ch: Any, db: str, table: str, final: bool = False) -> int:
    return int(ch.execute(f"SELECT count() FROM {db}.{table}{' FINAL' if final else ''}")[0][0])


def _wait_rows(settings: Settings, db: str, table: str, expected: int, procs: list[Proc],
               timeout_s: float) -> dict[str, Any]:
    """Poll ClickHouse until ``expected`` rows are there; rate from the first rows seen."""
    from ioe.clickhouse import client as ch_client

    ch = ch_client(settings)
    try:
        t0: float | None = None
        c0 = 0
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        n = 0
        while True:
            n = _count(ch, db, table)
            now = time.perf_counter()
            if n > 0 and t0 is None:
                t0, c0 = now, n
            if n >= expected:
                break
            for proc in procs:
                proc.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{table}: only {n} of {expected} rows after {timeout_s:.0f} s")
            time.sleep(0.05)
        assert t0 is not None
        rate = (expected - c0) / (now - t0) if now - t0 > 0.05 else float("nan")
        distinct = _count(ch, db, table, final=True)
        return {"rows": expected, "rows_final": distinct, "duplicates": n - distinct,
                "first_rows_after_s": round(t0 - started, 2), "first_batch_rows": c0,
                "seconds": round(now - t0, 2), "readings_per_s": round(rate, 1)}
    finally:
        ch.disconnect()


def _bare_ingest_main(argv: list[str]) -> None:
    """Baseline process: bare aiokafka consumer + clickhouse-driver batch insert."""
    prefix, db, expected = argv[0], argv[1], int(argv[2])
    settings = dataclasses.replace(get_settings(), topic_prefix=prefix, clickhouse_database=db)

    async def main() -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from ioe.clickhouse import client as ch_client
        from ioe.topics import READINGS

        topic = settings.topic(READINGS)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, max_poll_records=SINK_BATCH)
        await consumer.start()
        ch = ch_client(settings)
        columns = ("community_id, device_id, ts, ts_ms, source, quality, power_w, energy_wh, "
                   "version")
        try:
            partitions = await consumer._client._wait_on_metadata(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            seen, rows = 0, []
            while seen < expected:
                batch = await consumer.getmany(timeout_ms=200, max_records=SINK_BATCH)
                for records in batch.values():
                    for record in records:
                        d = orjson.loads(record.value)
                        ts = d["ts_ms"]
                        rows.append((d.get("community_id") or "", d["device_id"], ts // 1000, ts,
                                     d["source"], d.get("quality", "measured"), d.get("power_w"),
                                     d.get("energy_wh"), ts))
                        seen += 1
                if rows and (len(rows) >= SINK_BATCH or seen >= expected or not batch):
                    ch.execute(f"INSERT INTO {db}.readings_bare ({columns}) VALUES", rows)
                    rows = []
        finally:
            ch.disconnect()
            await consumer.stop()

    asyncio.run(main())


def _agent_rate(ports: list[int], seconds: float) -> dict[str, Any]:
    """The readings agents' progress through the same backlog, watched for ``seconds`` after
    the sink finished (their ClickHouse rows say nothing about live values and balances)."""
    before, t0 = _processed(ports), time.perf_counter()
    time.sleep(seconds)
    after = _processed(ports)
    return {"agent_processed": after, "agent_per_s": round((after - before)
                                                           / (time.perf_counter() - t0), 1)}


def _ingest(settings: Settings, registry: Path, tmp: Path, count: int, timeout_s: float,
            watch_s: float) -> dict[str, Any]:
    from ioe.clickhouse import client as ch_client
    from ioe.clickhouse import migrate

    db1, db2 = settings.clickhouse_database, settings.clickhouse_database + "_w2"
    migrate(settings, db2)
    ch = ch_client(settings)
    try:  # the baseline's table: the same shape as readings
        ch.execute(f"CREATE TABLE {db1}.readings_bare AS {db1}.readings")
    finally:
        ch.disconnect()
    env = _env(settings, registry)

    print("   ingest: bare aiokafka + clickhouse-driver …", flush=True)
    bare = Proc("bare-ingest", ["-m", "bench.bench_pipeline", "bare-ingest",
                                settings.topic_prefix, db1, str(count)], env, tmp)
    try:
        baseline = _wait_rows(settings, db1, "readings_bare", count, [], timeout_s)
    finally:
        bare.stop()
    print(f"   ingest: baseline {baseline['readings_per_s']:,.0f} readings/s", flush=True)

    print("   ingest: 2 workers …", flush=True)
    s2 = dataclasses.replace(settings, clickhouse_database=db2)
    ports = [_free_port(), _free_port()]
    pair = [_worker(s2, registry, tmp, f"w2-{k}", "bench-w2", port)
            for k, port in zip((1, 2), ports, strict=True)]
    try:
        two = _wait_rows(settings, db2, "readings", count, pair, timeout_s)
        two.update(_agent_rate(ports, watch_s))
    finally:
        for proc in pair:
            proc.stop()
    print(f"   ingest: 2 workers {two['readings_per_s']:,.0f} readings/s into ClickHouse; "
          f"their readings agents: {two['agent_processed']:,} of {count:,} processed, "
          f"{two['agent_per_s']:,.1f}/s", flush=True)

    print("   ingest: 1 worker …", flush=True)
    port = _free_port()
    one_proc = _worker(settings, registry, tmp, "w1", "bench-w1", port)
    try:
        one = _wait_rows(settings, db1, "readings", count, [one_proc], timeout_s)
        one.update(_agent_rate([port], watch_s))
    finally:
        one_proc.stop()
    print(f"   ingest: 1 worker {one['readings_per_s']:,.0f} readings/s into ClickHouse; its "
          f"readings agent: {one['agent_processed']:,} of {count:,} processed, "
          f"{one['agent_per_s']:,.1f}/s", flush=True)
    return {"baseline": baseline, "two_workers": two, "one_worker": one}


# -- live latency -------------------------------------------------------------------------------
def _produce_paced_main(argv: list[str]) -> None:
    """Load-generator process: readings of one community at ``rate``/s for ``seconds``;
    ``ts_ms`` is the send time. Prints what it managed to send as JSON."""
    from ioe.kafka import make_producer
    from ioe.topics import READINGS

    prefix, cid, rate, seconds = argv[0], argv[1], float(argv[2]), float(argv[3])
    settings = dataclasses.replace(get_settings(), topic_prefix=prefix)
    # no compression: the generator shares the 2 cores with what it measures, keep it cheap
    producer = make_producer(settings, linger_ms=0, compression_type=None)
    topic, key = settings.topic(READINGS), cid.encode()
    devices = _devices(cid)
    sent, first_ms, last_ms = 0, 0, 0
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        due = min(int(rate * elapsed) + 1, int(rate * seconds)) - sent
        for _ in range(due):
            last_ms = int(time.time() * 1000)
            first_ms = first_ms or last_ms
            producer.send(topic, key=key, value=_reading_json(
                devices[sent % len(devices)], cid, last_ms, 200.0 + sent % 1500))
            sent += 1
        time.sleep(0.002)
    producer.flush(60)
    duration = time.perf_counter() - started
    producer.close()
    print(json.dumps({"sent": sent, "seconds": duration, "first_ms": first_ms,
                      "last_ms": last_ms, "rate": sent / duration}), flush=True)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 1)


def _display_latency(readings: list[int], frames: list[tuple[float, int]]) -> tuple[list[float],
                                                                                    int]:
    """Per reading: arrival of the first frame (in arrival order) whose ts_ms ≥ its ts_ms."""
    arrivals, newest = [], []
    high = -1
    for arrival, ts in frames:
        high = max(high, ts)
        arrivals.append(arrival)
        newest.append(high)
    out, missing = [], 0
    for ts in readings:
        i = bisect.bisect_left(newest, ts)
        if i == len(newest):
            missing += 1
        else:
            out.append(arrivals[i] - ts)
    return out, missing


async def _latency(settings: Settings, ws_url: str, token: str, cid: str,
                   metrics_port: int, seconds: float, drain_s: float, warm_s: float,
                   catch_up_s: float) -> list[dict[str, Any]]:
    import websockets
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ioe.topics import READINGS

    channel = f"community:{cid}"
    frames: list[tuple[float, int]] = []  # (arrival ms, ts_ms of the newest reading included)
    raw: list[tuple[float, int]] = []  # (arrival ms at the raw consumer, ts_ms)
    ws = await websockets.connect(ws_url, max_size=2**22, open_timeout=30, ping_interval=None)
    await ws.send(orjson.dumps({"op": "auth", "token": token}).decode())
    await ws.send(orjson.dumps({"op": "subscribe", "channels": [channel]}).decode())
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame["op"] == "error":
            raise RuntimeError(f"websocket refused: {frame}")
        if frame["op"] == "snapshot" and frame["channel"] == channel:
            break
    topic = settings.topic(READINGS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p)
           for p in sorted(await consumer._client._wait_on_metadata(topic))]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the position now, not at the first fetch
        await consumer.position(tp)

    async def read_ws() -> None:
        async for message in ws:
            now = time.time() * 1000
            frame = orjson.loads(message)
            if frame.get("op") == "delta" and frame.get("channel") == channel:
                frames.append((now, int(frame["data"]["ts_ms"])))

    async def read_raw() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time() * 1000
                for record in records:
                    raw.append((now, int(orjson.loads(record.value)["ts_ms"])))

    tasks = [asyncio.create_task(read_ws()), asyncio.create_task(read_raw())]
    results = []
    sent_total = 0

    async def processed_count() -> int:
        return int(await asyncio.to_thread(_metric, metrics_port, "ioe_worker_readings_total"))

    try:
        for label, per_device in (("warm-up", 1), *LOADS):
            if label != "warm-up":  # each load starts with the worker caught up (bounded wait)
                waited = time.perf_counter()
                while await processed_count() < sent_total and \
                        time.perf_counter() - waited < catch_up_s:
                    await asyncio.sleep(0.25)
                backlog = sent_total - await processed_count()
                if backlog > 0:
                    print(f"   latency {label}: worker still {backlog:,} readings behind after "
                          f"{catch_up_s:g} s; starting anyway", flush=True)
            rate = per_device * (MEMBERS + 1)
            length = warm_s if label == "warm-up" else seconds
            print(f"   latency {label}: offering {rate:,} readings/s for {length:g} s …",
                  flush=True)
            processed0 = await asyncio.to_thread(_metric, metrics_port, "ioe_worker_readings_total")
            t_start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-W", "ignore::DeprecationWarning", "-m", "bench.bench_pipeline",
                "produce", settings.topic_prefix,
                cid, str(rate), str(length), cwd=ROOT, env=_env(settings, Path("-")),
                stdout=asyncio.subprocess.PIPE, start_new_session=True)
            out, _ = await proc.communicate()
            sent = json.loads(out.decode().strip().splitlines()[-1])
            sent_total += sent["sent"]
            processed_on = await processed_count() - processed0
            on_s = time.time() - sent["first_ms"] / 1000
            if label == "warm-up":  # every device seen once: wait for the agent to catch up
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and await asyncio.to_thread(
                        _metric, metrics_port, "ioe_worker_readings_total") < processed0 + \
                        sent["sent"]:
                    await asyncio.sleep(0.5)
                print(f"   latency warm-up: {sent['sent']} readings processed after "
                      f"{time.perf_counter() - t_start:.1f} s", flush=True)
                continue
            drain_started = time.perf_counter()
            while time.perf_counter() - drain_started < drain_s:
                if frames and frames[-1][1] >= sent["last_ms"] and raw and \
                        raw[-1][1] >= sent["last_ms"]:
                    break
                await asyncio.sleep(0.05)
            window = time.perf_counter() - t_start
            processed = await asyncio.to_thread(_metric, metrics_port,
                                                "ioe_worker_readings_total") - processed0
            # without the load generator competing for the cores (lower bound if it caught up)
            drained = round((processed - processed_on)
                            / max(time.perf_counter() - drain_started, 1e-3), 1)
            lo, hi = sent["first_ms"], sent["last_ms"]
            phase_raw = [(a, ts) for a, ts in raw if lo <= ts <= hi]
            phase_frames = [(a, ts) for a, ts in frames if lo <= ts <= hi]
            shown, missing = _display_latency([ts for _, ts in phase_raw], phase_frames)
            base = [a - ts for a, ts in phase_raw]
            age = [a - ts for a, ts in phase_frames]
            newest = max((ts for _, ts in phase_frames), default=None)
            end_lag_s = None if newest is None else round((hi - newest) / 1000, 2)
            result = {
                "load": label, "offered_per_s": rate, "sent": sent["sent"],
                "sent_per_s": round(sent["rate"], 1),
                "worker_processed": int(processed),
                "worker_per_s_while_sending": round(processed_on / on_s, 1),
                "worker_per_s_window": round(processed / window, 1),
                "worker_per_s_after_sending": drained,
                "kept_up": missing == 0 and processed >= sent["sent"],
                "backlog_at_end": max(0, sent["sent"] - int(processed)),
                "backlog_at_end_s": round(max(0, sent["sent"] - processed)
                                          / max(drained, processed_on / on_s, 1.0), 1),
                "frames": len(phase_frames), "readings_timed": len(phase_raw),
                "readings_not_shown_in_window": missing,
                "newest_shown_behind_last_sent_s": end_lag_s,
                "drain_s": round(time.perf_counter() - drain_started, 2),
                "meter_to_ws_p50_ms": _pct(shown, 0.5), "meter_to_ws_p99_ms": _pct(shown, 0.99),
                "frame_age_p50_ms": _pct(age, 0.5), "frame_age_p99_ms": _pct(age, 0.99),
                "raw_kafka_p50_ms": _pct(base, 0.5), "raw_kafka_p99_ms": _pct(base, 0.99),
            }
            results.append(result)
            print(f"   latency {label}: sent {result['sent_per_s']:,.0f}/s, worker "
                  f"{result['worker_per_s_while_sending']:,.0f}/s, meter→ws p50 "
                  f"{result['meter_to_ws_p50_ms']} ms p99 {result['meter_to_ws_p99_ms']} ms "
                  f"({len(shown)} readings, {len(phase_frames)} frames, {missing} not shown); "
                  f"raw Kafka p50 {result['raw_kafka_p50_ms']} ms p99 "
                  f"{result['raw_kafka_p99_ms']} ms; newest shown reading "
                  f"{end_lag_s} s behind the last sent; backlog {result['backlog_at_end']:,}",
                  flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()
        await consumer.stop()
    return results


def _wait_web(port: int, web: Proc, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        web.check()
        with contextlib.suppress(OSError, ValueError):
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read())["live"]["consuming"]:
                    return
        time.sleep(0.2)
    raise TimeoutError("ioe web did not start consuming")


def _wait_metric(port: int, worker: Proc, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check()
        with contextlib.suppress(OSError):
            _metric(port, "ioe_worker_readings_total")
            return
        time.sleep(0.2)
    raise TimeoutError("the worker's metrics endpoint did not come up")


# -- cleanup ------------------------------------------------------------------------------------
def _drop(settings: Settings, databases: list[str]) -> None:
    from kafka import KafkaAdminClient

    from ioe.clickhouse import client as ch_client

    ch = ch_client(settings)
    try:
        for db in databases:
            ch.execute(f"DROP DATABASE IF EXISTS {db}")
    except Exception as exc:  # cleanup must not hide the numbers
        print(f"   could not drop the bench databases: {exc}", file=sys.stderr)
    finally:
        ch.disconnect()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    except Exception as exc:
        print(f"   could not delete the bench topics: {exc}", file=sys.stderr)
    finally:
        admin.close()


# -- the scenario -------------------------------------------------------------------------------
def _figures(ingest: dict[str, Any], phases: list[dict[str, Any]], machine: dict[str, Any]
             ) -> list[dict[str, Any]]:
    base, one, two = ingest["baseline"], ingest["one_worker"], ingest["two_workers"]
    n = base["rows"]
    figures = [
        {"name": f"ingest Kafka→ClickHouse, 1 worker ({n:,} readings)",
         "value": one["readings_per_s"], "baseline": base["readings_per_s"],
         "unit": "readings/s", "baseline_name": "bare aiokafka + clickhouse-driver insert"},
        {"name": "ingest Kafka→ClickHouse, 2 workers",
         "value": two["readings_per_s"], "baseline": base["readings_per_s"],
         "unit": "readings/s", "baseline_name": "bare aiokafka + clickhouse-driver insert"},
        {"name": "ingest scaling: 2 workers vs 1 worker",
         "value": two["readings_per_s"], "baseline": one["readings_per_s"],
         "unit": "readings/s", "baseline_name": "1 worker"},
        {"name": "1 worker: readings agent rate on that backlog (defaults)",
         "value": one["agent_per_s"], "baseline": one["readings_per_s"], "unit": "readings/s",
         "baseline_name": "its ClickHouse sink"},
        {"name": "2 workers: readings agents rate on that backlog",
         "value": two["agent_per_s"], "baseline": two["readings_per_s"], "unit": "readings/s",
         "baseline_name": "their ClickHouse sinks"},
    ]
    for p in phases:
        load = f"{p['load']} ({p['offered_per_s']:,}/s offered)"
        raw = "raw aiokafka consumer of ioe.readings"
        figures += [
            {"name": f"meter→ws p50 (incl. 1/s throttle), {load}",
             "value": p["meter_to_ws_p50_ms"],
             "baseline": p["raw_kafka_p50_ms"], "unit": "ms", "baseline_name": raw},
            {"name": f"meter→ws p99 (incl. 1/s throttle), {load}",
             "value": p["meter_to_ws_p99_ms"],
             "baseline": p["raw_kafka_p99_ms"], "unit": "ms", "baseline_name": raw},
            {"name": f"newest reading age in frame p50, {load}", "value": p["frame_age_p50_ms"],
             "baseline": p["raw_kafka_p50_ms"], "unit": "ms", "baseline_name": raw},
            {"name": f"worker readings/s while sending, {load}",
             "value": p["worker_per_s_while_sending"],
             "baseline": p["sent_per_s"], "unit": "readings/s",
             "baseline_name": "readings/s the load generator achieved"},
        ]
        if p["backlog_at_end"] or p["meter_to_ws_p50_ms"] and p["meter_to_ws_p50_ms"] > 2000:
            figures.append({"name": f"worker readings/s after sending, {load}",
                            "value": p["worker_per_s_after_sending"],
                            "baseline": p["sent_per_s"], "unit": "readings/s",
                            "baseline_name": "the load generator stopped: catch-up rate"})
        if not p["kept_up"]:
            figures.append({"name": f"backlog left at end (worker-s), {load}",
                            "value": p["backlog_at_end_s"], "baseline": None, "unit": "s",
                            "baseline_name": "readings left / catch-up rate"})
    figures.append({"name": "machine: CPU cores (shared by every process of the run)",
                    "value": machine["cpus"], "baseline": None, "unit": "cores",
                    "baseline_name": ""})
    figures.append({"name": "machine: 1-min load average before the run",
                    "value": machine["load_before"], "baseline": None, "unit": "",
                    "baseline_name": ""})
    return figures


def run(quick: bool = True) -> dict[str, Any]:
    from dashboards import tokens
    from ioe.clickhouse import migrate
    from ioe.commands.registry import publish
    from ioe.kafka import ensure_topics
    from ioe.reading import Reading

    count = 30_000 if quick else 120_000
    seconds, drain_s, warm_s = (4.0, 3.0, 3.0) if quick else (12.0, 6.0, 5.0)
    watch_s, catch_up_s = (3.0, 15.0) if quick else (8.0, 30.0)
    timeout_s = 90.0 if quick else 240.0
    machine = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    print(f"   machine: {machine['cpus']} CPU cores shared by Kafka, ClickHouse, worker(s), web, "
          f"load generator and client; load average {machine['load_before']}", flush=True)
    tag = uuid.uuid4().hex[:8]
    cids = _community_ids(PARTITIONS)
    live_cid = cids[0]
    Reading.from_json(_reading_json(_devices(live_cid)[1], live_cid, 1_764_000_000_000, 1.0))
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="ioe-bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        settings = dataclasses.replace(
            get_settings(), topic_prefix=f"benchpipe{tag}.", clickhouse_database=f"bench_pipe_{tag}",
            partitions=PARTITIONS, token_secret=secrets.token_urlsafe(40), local_dir=tmp / "local")
        databases = [settings.clickhouse_database, settings.clickhouse_database + "_w2"]
        live = dataclasses.replace(settings, topic_prefix=f"benchpipe{tag}l.")
        try:
            registry = _write_registry(tmp, cids)
            settings = dataclasses.replace(settings, registry_path=registry)
            live = dataclasses.replace(live, registry_path=registry)
            ensure_topics(settings)
            migrate(settings)
            publish(registry, settings)
            print(f"   setup: {len(cids)} communities × {MEMBERS} members, topics "
                  f"{settings.topic_prefix}* ({PARTITIONS} partitions), db "
                  f"{settings.clickhouse_database}; producing {count:,} readings …", flush=True)
            began = time.perf_counter()
            _produce_ingest(settings, cids, count)
            print(f"   setup: produced in {time.perf_counter() - began:.1f} s", flush=True)
            ingest = _ingest(settings, registry, tmp, count, timeout_s, watch_s)

            # live latency on fresh topics: the ingest backlog must not sit in front of it
            ensure_topics(live)
            publish(registry, live)
            print(f"   latency: fresh topics {live.topic_prefix}*, one worker "
                  f"(--emit-min-s {EMIT_MIN_S:g}), ioe web …", flush=True)
            metrics_port = _free_port()
            worker = _worker(live, registry, tmp, "wl", "bench-live", metrics_port,
                             "--emit-min-s", str(EMIT_MIN_S))
            procs.append(worker)
            web_port = _free_port()
            web = Proc("web", ["-m", "ioe.cli", "--log-level", "WARNING", "web", "--port",
                               str(web_port)], _env(live, registry), tmp)
            procs.append(web)
            _wait_metric(metrics_port, worker)
            _wait_web(web_port, web)
            token = tokens.issue(live, role="member", communities=[live_cid],
                                 member_id="m001")[0]
            phases = asyncio.run(_latency(live, f"ws://127.0.0.1:{web_port}/ws", token,
                                          live_cid, metrics_port, seconds, drain_s, warm_s,
                                          catch_up_s))
            for proc in procs:
                proc.check()
        except BaseException:
            for proc in procs:
                print(f"   --- {proc.name} log tail ---\n{proc.tail()}", file=sys.stderr)
            raise
        finally:
            for proc in procs:
                proc.stop()
            _drop(settings, databases)
            _drop(live, [])
    machine["load_after"] = round(os.getloadavg()[0], 2)
    return {
        "scenario": "pipeline",
        "notes": ("2 CPU cores shared by Kafka, ClickHouse, the worker(s), ioe web, the load "
                  "generator and the measuring client; meter→websocket includes the worker's "
                  "live throttle (1 community update/s, production default)"),
        "machine": machine, "communities": len(cids), "members_per_community": MEMBERS,
        "config": {"ingest_readings": count, "load_seconds": seconds, "drain_s": drain_s,
                   "latency_worker_emit_min_s": EMIT_MIN_S, "live_interval_s": 1.0,
                   "partitions": PARTITIONS, "sink_batch": SINK_BATCH},
        "ingest": ingest, "latency": phases,
        "figures": _figures(ingest, phases, machine),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "produce":
        _produce_paced_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "bare-ingest":
        _bare_ingest_main(sys.argv[2:])
    else:
        print(orjson.dumps(run(quick="--full" not in sys.argv),
                           option=orjson.OPT_INDENT_2).decode())
