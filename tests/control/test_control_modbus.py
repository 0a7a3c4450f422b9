"""Commands end to end on the real stack: ``ioe control send`` (a real process) -> Kafka
``ioe.commands.<community>`` -> the Modbus edge's executor -> a pymodbus SunSpec inverter -> read back ->
``ioe.command-results`` -> ClickHouse (``ioe control log``). Refusals and an offline edge."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson
import pytest
from control_helpers import COMMUNITY, write_registry

from connectors.modbus_edge.commands import EdgeCommands
from connectors.modbus_edge.device import DeviceConfig, Link
from connectors.modbus_edge.maps import load_map
from connectors.modbus_edge.writesim import SunSpecInverter
from ioe.settings import ROOT

pytestmark = pytest.mark.stack


def ioe(settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IOE_KAFKA": settings.kafka_bootstrap,
           "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_CLICKHOUSE_DB": settings.clickhouse_database}
    return subprocess.run([sys.executable, "-m", "ioe.cli", "control", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def plant(stack_settings, tmp_path, unique_id):
    inverter = SunSpecInverter(rated_w=10_000, available_w=8_000)
    server = inverter.server().start()
    registry = write_registry(tmp_path / "registry.yaml", inverter_port=server.port)
    device = DeviceConfig(id="inv-1", map=load_map("sunspec"), host="127.0.0.1",
                          port=server.port, unit=1, timeout_s=2)
    edge = EdgeCommands(stack_settings, {"inv-1": (device, Link(device))},
                        communities={COMMUNITY}, group_id=f"edge-{unique_id}")
    try:
        yield inverter, server, registry, edge
    finally:
        edge.stop()
        server.stop()


def test_send_is_executed_read_back_and_logged(stack_settings, plant):
    inverter, server, registry, edge = plant
    edge.start()
    done = ioe(stack_settings, "send", "--device", "inv-1", "--set", "power_limit_pct=40",
               "--revert-s", "300", "--registry", str(registry), "--as", "operator:ana",
               "--reason", "test: export too high")
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["status"] == "acknowledged" and result["readback"] == 40
    assert result["executor"] == "modbus-edge" and "revert written (300 s)" in result["detail"]
    assert [w["point"] for w in result["written"]] == ["WMaxLimPct_RvrtTms", "WMaxLimPct",
                                                       "WMaxLim_Ena"]
    assert inverter.limit_pct == 40
    # the command log: who asked, why, what was written, what was read back
    log = ioe(stack_settings, "log", "--json")
    assert log.returncode == 0, log.stderr
    (row,) = [orjson.loads(x) for x in log.stdout.splitlines()]
    assert row["requested_by"] == "operator:ana" and row["reason"] == "test: export too high"
    assert row["status"] == "sent" and row["result"] == "acknowledged"
    assert orjson.loads(row["value"]) == 40 and orjson.loads(row["readback"]) == 40
    assert orjson.loads(row["written"])[1]["registers"] == [400]
    table = ioe(stack_settings, "log")
    assert "power_limit_pct=40" in table.stdout and "acknowledged" in table.stdout


def test_refusals_are_logged_and_never_sent(stack_settings, plant):
    inverter, server, registry, edge = plant
    edge.start()
    member = ioe(stack_settings, "send", "--device", "inv-1", "--set", "power_limit_pct=0",
                 "--registry", str(registry), "--as", "member:m2")
    assert member.returncode == 2 and "refused" in member.stderr
    assert orjson.loads(member.stdout)["status"] == "refused"
    high = ioe(stack_settings, "send", "--device", "inv-1", "--set", "power_limit_pct=120",
               "--registry", str(registry))
    assert high.returncode == 2 and "outside [0, 100]" in high.stderr
    unknown = ioe(stack_settings, "send", "--device", "inv-1", "--set", "bogus=1",
                  "--registry", str(registry))
    assert unknown.returncode == 2 and "unknown control key" in unknown.stderr
    assert server.writes == []
    rows = [orjson.loads(x) for x in ioe(stack_settings, "log", "--json").stdout.splitlines()]
    assert sorted(r["status"] for r in rows) == ["refused"] * 3
    assert {r["requested_by"] for r in rows} == {"member:m2", "operator:cli"}
    assert any("not theirs" in r["refusal"] for r in rows)


def test_offline_edge_expires_and_never_executes_late(stack_settings, plant):
    inverter, server, registry, edge = plant
    edge.loop.start()  # join the group once (its offsets are kept), then go offline
    edge.loop.stop()
    started = time.monotonic()
    done = ioe(stack_settings, "send", "--device", "inv-1", "--set", "power_limit_pct=10",
               "--ttl-s", "1", "--registry", str(registry))
    assert done.returncode == 2
    result = orjson.loads(done.stdout)
    assert result["status"] == "expired" and result["executor"] == "control"
    assert time.monotonic() - started < 20
    # the edge comes back: it sees the command, past its deadline, and does not write it
    from control.bus import ExecutorLoop

    back = ExecutorLoop(stack_settings, group_id=edge.loop.group_id, executor="modbus-edge",
                        handles=edge.loop.handles, execute=edge.execute,
                        communities={COMMUNITY}).start()
    try:
        deadline = time.monotonic() + 20
        while back.expired == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        back.stop()
    assert back.expired == 1 and back.executed == 0
    assert server.writes == [] and inverter.limit_pct is None
