"""``ioe mqtt-bridge decode``: the field-debugging command, run as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import yaml
from mqtt_helpers import registry_document

from ioe.settings import ROOT


def ioe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ioe.cli", "mqtt-bridge", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_decode_prints_contract_json_lines() -> None:
    result = ioe("decode", "--topic", "emon/emonpi", "--payload",
                 '{"time": 1700000000, "P1": 100, "P2": -20, "E1": 1500, "vrms": 240}')
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["device_id"], r["power_w"]) for r in lines] == [("emonpi:1", 100.0),
                                                               ("emonpi:2", -20.0)]
    assert lines[0]["energy_wh"] == 1500.0 and lines[0]["ts_ms"] == 1700000000000
    assert all(r["v"] == 1 and "community_id" not in r for r in lines)


def test_decode_tasmota_with_zone_and_received_at() -> None:
    payload = '{"Time":"2024-10-27T02:30:00","ENERGY":{"Total":1.5,"Power":10}}'
    first = ioe("decode", "--topic", "tele/t/SENSOR", "--payload", payload,
                "--received-at", "2024-10-27T00:30:02Z")
    second = ioe("decode", "--topic", "tele/t/SENSOR", "--payload", payload,
                 "--received-at", "2024-10-27T01:30:02Z")
    assert orjson.loads(first.stdout)["ts_ms"] == 1729989000000   # 00:30Z (CEST)
    assert orjson.loads(second.stdout)["ts_ms"] == 1729992600000  # 01:30Z (CET)
    lisbon = ioe("decode", "--topic", "tele/t/SENSOR", "--payload", payload,
                 "--tz", "Europe/Lisbon", "--received-at", "2024-10-27T02:30:02Z")
    assert orjson.loads(lisbon.stdout)["ts_ms"] == 1729996200000  # 02:30Z (WET)
    assert orjson.loads(first.stdout)["energy_wh"] == 1500.0


def test_decode_receipt_time_for_devices_without_clock() -> None:
    result = ioe("decode", "--topic", "shellies/shellyem-1/emeter/0/power", "--payload",
                 "-12.5", "--received-at", "2024-05-20T10:00:00+02:00")
    assert result.returncode == 0
    assert orjson.loads(result.stdout) == {
        "device_id": "shellyem-1:0", "ts_ms": 1716192000000, "source": "shelly-gen1",
        "power_w": -12.5, "quality": "measured", "v": 1}


def test_undecodable_payload_exits_2_with_reason() -> None:
    result = ioe("decode", "--topic", "tele/t/SENSOR", "--payload", "{oops")
    assert result.returncode == 2 and result.stdout == ""
    assert "decode_error" in result.stderr and "tasmota" in result.stderr
    unknown = ioe("decode", "--topic", "somewhere/else", "--payload", "1")
    assert unknown.returncode == 2 and "no_decoder" in unknown.stderr
    invalid = ioe("decode", "--topic", "tele/t/SENSOR", "--payload",
                  '{"Time":"1970-01-01T00:00:00","ENERGY":{"Power":1}}')
    assert invalid.returncode == 2 and "invalid_reading" in invalid.stderr


def test_availability_is_not_a_reading_but_not_an_error() -> None:
    result = ioe("decode", "--topic", "tele/t/LWT", "--payload", "Offline")
    assert result.returncode == 0 and result.stdout == ""
    assert "availability" in result.stderr


def test_decode_json_map_from_registry(tmp_path: Path) -> None:
    device = {"id": "acme-1", "role": "consumption", "member": "m1",
              "protocol": {"type": "mqtt", "decoder": "json-map", "topic": "acme/1",
                           "fields": {"power_w": {"path": "kw", "unit": "kW"}}}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(registry_document([], [device])))
    result = ioe("decode", "--registry", str(path), "--topic", "acme/1", "--payload",
                 '{"kw": 1.5}')
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["power_w"] == 1500.0
