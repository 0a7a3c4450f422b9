"""``ioe demo --check``, the README's first command in its bounded form, on the real stack: the
example community's live values reach ``ioe.live`` and both example rules act on devices — the
export limit on the simulated SunSpec inverter (written by the Modbus edge, read back) and
m03's water heater (switched by the MQTT bridge, its relay answering) — and the command log the
control centre shows has both, with who asked and why."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import orjson
import pytest

from ioe.settings import ROOT

pytestmark = pytest.mark.stack

#: a clear June day for the simulated plant (seed 1): the same sky on every run
AS_IF = "2026-06-21T12:30"


def test_the_demo_shows_live_values_and_both_example_rules_acting(stack_settings) -> None:
    settings = stack_settings
    env = {**os.environ, "IOE_KAFKA": settings.kafka_bootstrap,
           "IOE_TOPIC_PREFIX": settings.topic_prefix,
           "IOE_CLICKHOUSE_DB": settings.clickhouse_database,
           "IOE_PARTITIONS": str(settings.partitions)}
    run = subprocess.run([sys.executable, "-m", "ioe.cli", "demo", "--check", "--as-if", AS_IF,
                          "--check-timeout", "240"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=420)
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    assert f"the simulated community lives as at {AS_IF}" in out
    limit = re.search(r"CHECK rule export-limit: inv-sunspec-1 power_limit_pct=([\d.]+) "
                      r"acknowledged, read back ([\d.]+)", out)
    assert limit and float(limit[1]) == float(limit[2]) and float(limit[1]) < 100, out[-3000:]
    assert ("CHECK rule termo-m03: shelly1pm-termo-m03:0 relay='on' acknowledged, read back "
            "'on'") in out
    assert "CHECK control centre: the command log shows 2 acknowledged" in out
    assert "CHECK OK" in out
    log = subprocess.run([sys.executable, "-m", "ioe.cli", "control", "log", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    rows = [orjson.loads(line) for line in log.stdout.splitlines()]
    acted = {r["rule_id"]: r for r in rows if r["result"] == "acknowledged"}
    assert {"export-limit", "termo-m03"} <= set(acted), rows
    assert acted["termo-m03"]["requested_by"] == "rule:termo-m03"
    assert re.match(r"surplus \d+ W >= 400 W for \d+ s: on", acted["termo-m03"]["reason"])
    first_limit = min((r for r in rows if r["rule_id"] == "export-limit"),
                      key=lambda r: r["issued_at_ms"])
    assert re.search(r"export [\d.]+ kW > 5 kW: limit 100 -> [\d.]+ %", first_limit["reason"])
