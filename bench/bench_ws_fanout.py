"""Websocket fan-out: many clients subscribed to one community, updates at 1 Hz per member.

Two servers are measured in the same run, each in its own process, with the same clients:

- **ioe**: ``ioe web`` (the real app): updates are produced to a private ``ioe.live`` topic,
  consumed by the server and fanned out through the conflating per-client queues. Clients log
  in with member tokens and subscribe to their member channel and the community channel.
- **baseline**: a bare uvicorn websocket broadcast (raw ASGI, no auth, no Kafka): a publisher
  websocket sends the same updates, the server forwards each one to the subscribers of its
  channel with a plain ``await send`` loop.

Each round publishes one update per member channel and one community update, so every client
expects two frames per round. Figures: p50/p99 delivery latency (publisher's send → client's
receive, same clock), frames dropped (conflated or lost) and clients disconnected.
The ioe latency includes the trip through Kafka (produce acks=all, consume), the baseline's does
not: the ratio is the price of the whole live path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import websockets

from ioe.messages import Channel, LiveCommunity, LiveMember, PlantPower
from ioe.settings import ROOT, Settings, get_settings

MEMBERS = 30
CID = "ce-bench"
LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


# -- the baseline server (run as `uvicorn bench.bench_ws_fanout:bare_app`) ---------------------
_subscribers: dict[str, set[Any]] = {}


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Bare websocket broadcast: subscribe / publish, nothing else."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    mine: list[str] = []
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            request = orjson.loads(message.get("text") or message.get("bytes") or b"{}")
            if request.get("op") == "subscribe":
                for channel in request["channels"]:
                    _subscribers.setdefault(channel, set()).add(send)
                    mine.append(channel)
                await send({"type": "websocket.send", "text": '{"op":"subscribed"}'})
            elif request.get("op") == "publish":
                frame = orjson.dumps({"op": "delta", "channel": request["channel"],
                                      "data": request["data"]}).decode()
                for subscriber in list(_subscribers.get(request["channel"], ())):
                    try:
                        await subscriber({"type": "websocket.send", "text": frame})
                    except Exception:  # a client that left
                        _subscribers[request["channel"]].discard(subscriber)
    finally:
        for channel in mine:
            _subscribers.get(channel, set()).discard(send)


# -- helpers ------------------------------------------------------------------------------------
def _cups(i: int) -> str:
    digits = f"0021{i:012d}"
    q, r = divmod(int(digits) % 529, 23)
    return f"ES{digits}{LETTERS[q]}{LETTERS[r]}"


def _registry_yaml() -> str:
    members = "\n".join(f"      - {{id: m{i:02d}, cups: {_cups(i)}, contracted_power_kw: 3.45}}"
                        for i in range(MEMBERS))
    static = ", ".join(f"{_cups(i)}: {1 / MEMBERS:.6f}" for i in range(MEMBERS - 1))
    last = 1 - round(1 / MEMBERS, 6) * (MEMBERS - 1)
    return f"""communities:
  - id: {CID}
    name: Bench
    plants:
      - {{id: p1, peak_power_kw: 30, location: {{latitude: 39.5, longitude: -0.4}}}}
    members:
{members}
    coefficients:
      - effective_from: 2020-01-01
        static: {{{static}, {_cups(MEMBERS - 1)}: {last:.6f}}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def _member_message(member: int, round_: int) -> dict[str, Any]:
    """A LiveMember on the wire, plus the bench's own ``round``/``sent_ns`` (the server
    forwards the Kafka value untouched, extra fields included)."""
    now_ms = int(time.time() * 1000)
    message = LiveMember(
        community_id=CID, member_id=f"m{member:02d}", ts_ms=now_ms, coefficient=1 / MEMBERS,
        generation_w=20000.0, assigned_w=666.0, consumption_w=400.0 + member,
        self_consumption_w=400.0 + member, surplus_w=266.0 - member, import_w=0.0,
        stale=False)
    return message.to_dict() | {"round": round_, "sent_ns": time.time_ns()}


def _community_message(round_: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    message = LiveCommunity(
        community_id=CID, ts_ms=now_ms, generation_w=20000.0, consumption_w=12000.0,
        self_consumption_w=11000.0, surplus_w=9000.0, import_w=1000.0,
        members_reporting=MEMBERS, members_total=MEMBERS,
        plants={"p1": PlantPower(power_w=20000.0, ts_ms=now_ms)}, generators={})
    return message.to_dict() | {"round": round_, "sent_ns": time.time_ns()}


def _round_messages(round_: int) -> list[dict[str, Any]]:
    return [*(_member_message(m, round_) for m in range(MEMBERS)), _community_message(round_)]


@dataclasses.dataclass
class Tally:
    target: int
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    received: int = 0
    disconnected: int = 0
    ready: int = 0


async def _client(url: str, index: int, auth: str | None, tally: Tally, connect_gate: Any,
                  ready: asyncio.Event, stop: asyncio.Event) -> None:
    member = index % MEMBERS
    channels = [str(Channel.member(CID, f"m{member:02d}")), str(Channel.community(CID))]
    async with connect_gate:
        ws = await websockets.connect(url, max_size=2**22, open_timeout=60, ping_interval=None)
    try:
        if auth:
            await ws.send(orjson.dumps({"op": "auth", "token": auth}).decode())
        await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
        acks = 0
        while acks < (2 if auth else 1):
            frame = orjson.loads(await ws.recv())
            if frame["op"] in ("snapshot", "subscribed"):
                acks += 1
            elif frame["op"] == "error":
                raise RuntimeError(frame)
        tally.ready += 1
        if tally.ready == tally.target:
            ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time_ns()
            frame = orjson.loads(raw)
            if frame.get("op") == "delta" and frame["data"].get("round", 0) >= 1:
                tally.received += 1
                tally.latencies_ms.append((now - frame["data"]["sent_ns"]) / 1e6)
    except websockets.ConnectionClosed:
        tally.disconnected += 1
    finally:
        await ws.close()


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def _measure(url: str, clients: int, rounds: int, tokens: list[str] | None,
                   publish: Any) -> dict[str, Any]:
    tally = Tally(target=clients)
    ready, stop = asyncio.Event(), asyncio.Event()
    gate = asyncio.Semaphore(50)
    tasks = [asyncio.create_task(_client(url, i, tokens[i % MEMBERS] if tokens else None,
                                         tally, gate, ready, stop)) for i in range(clients)]
    try:
        await asyncio.wait_for(ready.wait(), 120)
        started = time.monotonic()
        await publish(rounds)
        await asyncio.sleep(2.0)  # drain
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    expected = clients * rounds * 2
    return {"clients": clients, "rounds": rounds, "expected_frames": expected,
            "received_frames": tally.received, "dropped_frames": expected - tally.received,
            "disconnected": tally.disconnected, "seconds": round(elapsed, 2),
            "p50_ms": _percentile(tally.latencies_ms, 50),
            "p99_ms": _percentile(tally.latencies_ms, 99),
            "max_ms": max(tally.latencies_ms) if tally.latencies_ms else None}


def _server(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _wait_port(port, process)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _run_ioe(base: Settings, clients: int, rounds: int, workdir: Path) -> dict[str, Any]:
    from dashboards import tokens as token_mod
    from ioe.kafka import ensure_topics, make_producer
    from ioe.topics import LIVE, TOPICS

    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(base, topic_prefix=f"bench{tag}.", partitions=3,
                                   token_secret=secrets.token_urlsafe(40),
                                   local_dir=workdir, registry_path=workdir / "registry.yaml")
    ensure_topics(settings, [s for s in TOPICS if s.name == LIVE])
    issued = [token_mod.issue(settings, role="member", communities=[CID],
                              member_id=f"m{m:02d}")[0] for m in range(MEMBERS)]
    port = _free_port()
    env = {**os.environ, "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_TOKEN_SECRET": settings.token_secret, "IOE_LOCAL_DIR": str(workdir),
           "IOE_REGISTRY": str(settings.registry_path)}
    process = _server([sys.executable, "-m", "ioe.cli", "--log-level", "WARNING", "web",
                       "--port", str(port), "--no-follow-registry"], env, port)
    producer = make_producer(settings, linger_ms=0)
    topic = settings.topic(LIVE)

    def produce_rounds(rounds: int) -> None:
        for r in range(1, rounds + 1):
            began = time.monotonic()
            for message in _round_messages(r):
                producer.send(topic, key=CID.encode(), value=orjson.dumps(message))
            producer.flush(30)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    async def publish(rounds: int) -> None:
        await asyncio.to_thread(produce_rounds, rounds)

    try:
        return asyncio.run(_measure(f"ws://127.0.0.1:{port}/ws", clients, rounds, issued,
                                    publish))
    finally:
        producer.close()
        _stop(process)
        _drop_topics(settings)


def _run_bare(clients: int, rounds: int) -> dict[str, Any]:
    port = _free_port()
    process = _server([sys.executable, "-m", "uvicorn", "bench.bench_ws_fanout:bare_app",
                       "--port", str(port), "--log-level", "warning"], dict(os.environ), port)
    url = f"ws://127.0.0.1:{port}/ws"

    async def publish(rounds: int) -> None:
        async with websockets.connect(url, max_size=2**22) as publisher:
            for r in range(1, rounds + 1):
                began = time.monotonic()
                for message in _round_messages(r):
                    await publisher.send(orjson.dumps({"op": "publish",
                                                       "channel": message["channel"],
                                                       "data": message}).decode())
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    try:
        return asyncio.run(_measure(url, clients, rounds, None, publish))
    finally:
        _stop(process)


def _drop_topics(settings: Settings) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        names = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if names:
            admin.delete_topics(names)
    except Exception as exc:  # leftover bench topics are harmless; say so and go on
        print(f"   could not delete bench topics: {exc}", file=sys.stderr)
    finally:
        admin.close()


def run(quick: bool = False) -> dict[str, Any]:
    clients, rounds = (200, 5) if quick else (1000, 8)
    base = get_settings()
    with tempfile.TemporaryDirectory(prefix="ioe-bench-ws-") as tmp:
        workdir = Path(tmp)
        (workdir / "registry.yaml").write_text(_registry_yaml(), encoding="utf-8")
        baseline = _run_bare(clients, rounds)
        ioe = _run_ioe(base, clients, rounds, workdir)
    print(f"   ws fan-out to {clients} clients: ioe p99 {ioe['p99_ms']:.1f} ms, "
          f"dropped {ioe['dropped_frames']}; bare uvicorn p99 {baseline['p99_ms']:.1f} ms, "
          f"dropped {baseline['dropped_frames']}", flush=True)
    return {
        "ioe": ioe, "baseline": baseline,
        "figures": [
            {"name": f"p99 delivery latency, {clients} clients × 2 channels, 1 Hz/member "
                     "(ioe via Kafka vs bare uvicorn broadcast)",
             "value": ioe["p99_ms"], "baseline": baseline["p99_ms"], "unit": "ms"},
            {"name": "p50 delivery latency", "value": ioe["p50_ms"],
             "baseline": baseline["p50_ms"], "unit": "ms"},
            {"name": f"frames dropped of {ioe['expected_frames']}",
             "value": ioe["dropped_frames"], "baseline": baseline["dropped_frames"],
             "unit": "frames"},
            {"name": "clients disconnected", "value": ioe["disconnected"],
             "baseline": baseline["disconnected"], "unit": "clients"},
        ],
    }


if __name__ == "__main__":
    print(orjson.dumps(run(quick="--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
