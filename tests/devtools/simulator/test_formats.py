"""The payload builders against the documented formats, values worked out by hand."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from devtools.commands.demo import dashboard_urls, live_value_seen, modbus_edge_config
from devtools.simulator.formats import FORMATS, Measurement, device_channel, tasmota_time
from ioe.messages import LiveCommunity
from ioe.settings import ROOT

# 2026-01-15 10:00:00 UTC = 11:00 in Madrid (CET)
TS = int(datetime(2026, 1, 15, 10, 0, tzinfo=UTC).timestamp() * 1000)
M = Measurement(ts_ms=TS, power_w=1200.0, energy_wh=1_234_567.8, energy_returned_wh=0.0,
                voltage_v=230.0, phase_split=(0.5, 0.3, 0.2), power_factor=1.0,
                today_wh=3456.0, yesterday_wh=8100.0, period_wh=3.0, session_wh=10.0,
                channel=0)


def as_dict(messages: list[tuple[str, bytes, bool]]) -> dict[str, bytes]:
    return {t: p for t, p, _ in messages}


def test_shelly_gen1() -> None:
    out = as_dict(FORMATS["shelly-gen1"]("shellyem-ABC", M))
    assert out["shellies/shellyem-ABC/emeter/0/power"] == b"1200.00"
    assert out["shellies/shellyem-ABC/emeter/0/total"] == b"1234567.8"          # Wh
    assert out["shellies/shellyem-ABC/emeter/0/total_returned"] == b"0.0"
    assert out["shellies/shellyem-ABC/emeter/0/voltage"] == b"230.00"
    assert out["shellies/shellyem-ABC/emeter/0/energy"] == b"600"              # W·min
    assert float(out["shellies/shellyem-ABC/emeter/0/current"]) == round(1200 / 230, 2)


def test_shelly_gen2_pro3em() -> None:
    out = FORMATS["shelly-gen2"]("shellypro3em-abc", M)
    frames = [json.loads(p) for t, p, _ in out if t == "shellypro3em-abc/events/rpc"]
    em = next(f["params"]["em:0"] for f in frames if "em:0" in f["params"])
    emdata = next(f["params"]["emdata:0"] for f in frames if "emdata:0" in f["params"])
    assert all(f["method"] == "NotifyStatus" and f["params"]["ts"] == TS / 1000 for f in frames)
    assert em["total_act_power"] == 1200.0
    assert (em["a_act_power"], em["b_act_power"], em["c_act_power"]) == (600.0, 360.0, 240.0)
    assert em["a_current"] == round(600 / 230, 3)
    assert emdata["total_act"] == 1_234_567.8 and emdata["total_act_ret"] == 0
    assert emdata["a_total_act_energy"] == round(1_234_567.8 * 0.5, 2)
    status = as_dict(out)
    assert json.loads(status["shellypro3em-abc/status/em:0"]) == em
    assert json.loads(status["shellypro3em-abc/status/emdata:0"]) == emdata


def test_tasmota() -> None:
    (topic, payload, retain), = FORMATS["tasmota"]("tasmota_X", M)
    data = json.loads(payload)
    assert topic == "tele/tasmota_X/SENSOR" and not retain
    assert data["Time"] == "2026-01-15T11:00:00" == tasmota_time(TS, "Europe/Madrid")
    e = data["ENERGY"]
    assert (e["Total"], e["Today"], e["Yesterday"]) == (1234.568, 3.456, 8.1)   # kWh
    assert (e["Power"], e["Voltage"], e["Period"]) == (1200, 230, 3)
    assert e["Current"] == round(1200 / 230, 3)


def test_emonhub() -> None:
    m = Measurement(**{**vars(M), "channel": 1})
    out = as_dict(FORMATS["emonhub"]("emontx26", m))
    assert out == {"emon/emontx26/P1": b"1200", "emon/emontx26/E1": b"1234568",
                   "emon/emontx26/vrms": b"230.00"}


def test_emonhub_json_variant() -> None:
    from devtools.simulator.formats import VARIANTS

    m = Measurement(**{**vars(M), "channel": 1})
    (topic, payload, _), = VARIANTS[("emonhub", "json")]("emontx26", m)
    assert topic == "emon/emontx26"
    assert json.loads(payload) == {"P1": 1200, "E1": 1234568, "vrms": 230.0, "time": TS / 1000}


def test_device_channels_follow_the_id_conventions() -> None:
    assert device_channel("shelly-gen1", "shellyem-563B54590D35:0") == 0
    assert device_channel("shelly-gen2", "shellypro3em-0ee8d091881a:0") == 0
    assert device_channel("emonhub", "emontx26:1") == 1
    assert device_channel("tasmota", "tasmota_913B5D") == 0


def test_demo_helpers(tmp_path: Path) -> None:
    example = ROOT / "infra" / "examples" / "community.yaml"
    config = yaml.safe_load(modbus_edge_config(example, tmp_path / "edge.yaml").read_text())
    by_id = {d["id"]: d for d in config["devices"]}
    assert by_id["inv-sunspec-1"]["port"] == 5020 and by_id["inv-sunspec-1"]["map"] == "sunspec"
    assert by_id["inv-huawei-1"]["map"] == "huawei-sun2000"
    urls = dashboard_urls()
    assert set(urls) == {"mobile", "tablet", "control centre"}
    assert all(u.startswith("http://127.0.0.1:8000/") for u in urls.values())
    community = LiveCommunity(community_id="c", ts_ms=TS, generation_w=1500.0,
                              consumption_w=None, self_consumption_w=None, surplus_w=None,
                              import_w=None, members_reporting=0, members_total=3)
    assert live_value_seen(community.encode())
    assert not live_value_seen(dataclasses.replace(community, generation_w=None).encode())
    assert not live_value_seen(b'{"v":1,"type":"alarm"}') and not live_value_seen(b"junk")


def test_a_run_can_choose_the_emonhub_json_variant(tmp_path: Path) -> None:
    from devtools.simulator.engine import SimConfig, Simulator

    from .conftest import write_registry

    community = write_registry(tmp_path, "fmt")
    sim = Simulator(SimConfig(registry_path=community.path, start_ms=TS, state_dir=tmp_path,
                              emonhub_format="json", enable_inverters=False))
    topics = {t for t, _, _ in sim.meter_tick(TS + 60_000)}
    assert f"emon/{community.emon}" in topics
    assert not any(t.startswith(f"emon/{community.emon}/") for t in topics)
    assert f"tele/{community.tasmota}/SENSOR" in topics
