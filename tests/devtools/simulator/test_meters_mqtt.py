"""The simulated meters on the real Mosquitto: real topics, real payload formats, counters that
grow by power × time."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devtools.simulator import load
from devtools.simulator.engine import SimConfig, Simulator
from ioe.settings import Settings

from .conftest import Recorder, SimCommunity, recording, write_registry

START_MS = int(datetime(2026, 5, 12, 18, 0, tzinfo=ZoneInfo("Europe/Madrid")).timestamp() * 1000)


def run_sim(config: SimConfig) -> Simulator:
    simulator = Simulator(config)
    asyncio.run(simulator.run())
    return simulator


def config_for(community: SimCommunity, tmp_path: Path, **kw: object) -> SimConfig:
    values: dict[str, object] = dict(
        registry_path=community.path, seed=7, speed=600.0, start_ms=START_MS, duration_s=3.0,
        state_dir=tmp_path / "state", min_interval_s=0.2, enable_inverters=False)
    values.update(kw)
    return SimConfig(**values)  # type: ignore[arg-type]


def riemann_wh(h: load.Household, start_ms: int, end_ms: int) -> float:
    """Independent integration of the profile: power sampled every 2 s, left sum."""
    return sum(load.household_power_w(h, t) for t in range(start_ms, end_ms, 2000)) * 2 / 3600


@pytest.fixture(scope="module")
def shared(mosquitto: Settings, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Simulator, SimCommunity, Recorder]]:
    """One 3-second run at 600× shared by the format tests of this module."""
    tmp = tmp_path_factory.mktemp("meters")
    community = write_registry(tmp, uuid.uuid4().hex[:10])
    with recording(mosquitto, community.topic_filters) as recorder:
        simulator = run_sim(config_for(community, tmp))
        time.sleep(0.3)  # the last messages are in flight
        yield simulator, community, recorder


@pytest.fixture
def run(shared: tuple[Simulator, SimCommunity, Recorder]) -> Simulator:
    return shared[0]


@pytest.fixture
def community(shared: tuple[Simulator, SimCommunity, Recorder]) -> SimCommunity:
    return shared[1]


@pytest.fixture
def recorder(shared: tuple[Simulator, SimCommunity, Recorder]) -> Recorder:
    return shared[2]


def test_shelly_gen1_topics_and_units(run: Simulator, community: SimCommunity,
                                      recorder: Recorder) -> None:
    base = f"shellies/{community.gen1}/emeter/0"
    totals = [float(p) for p in recorder.of(f"{base}/total")]
    powers = [float(p) for p in recorder.of(f"{base}/power")]
    voltages = [float(p) for p in recorder.of(f"{base}/voltage")]
    returned = [float(p) for p in recorder.of(f"{base}/total_returned")]
    assert len(totals) >= 5 and len(powers) == len(totals)
    assert totals == sorted(totals) and totals[-1] > totals[0]
    assert all(p >= 0 for p in powers) and all(200 < v < 250 for v in voltages)
    assert set(returned) == {0.0}
    # availability: retained "true" first, "false" on the clean stop (like the broker's LWT)
    online = recorder.of(f"shellies/{community.gen1}/online", include_retained=True)
    assert online[0] == b"true" and online[-1] == b"false"
    # Wh, not kWh: ten minutes of a home at ≥ 50 W add more than 5 Wh per publication gap
    meter = next(m for m in run.meters if m.decoder == "shelly-gen1")
    assert totals[-1] == pytest.approx(meter.energy_wh, abs=0.11)


def test_shelly_gen2_notify_status_and_counters(run: Simulator, community: SimCommunity,
                                                recorder: Recorder) -> None:
    frames = [json.loads(p) for p in recorder.of(f"{community.gen2}/events/rpc")]
    em = [(f["params"]["ts"], f["params"]["em:0"]) for f in frames if "em:0" in f["params"]]
    emdata = [(f["params"]["ts"], f["params"]["emdata:0"]) for f in frames
              if "emdata:0" in f["params"]]
    assert all(f["method"] == "NotifyStatus" and f["src"] == community.gen2 for f in frames)
    assert len(em) >= 5 and len(emdata) == len(em)
    end_ms = run.clock.now_ms()
    for ts, status in em:
        assert START_MS / 1000 <= ts <= end_ms / 1000
        phases = sum(status[f"{p}_act_power"] for p in "abc")
        assert status["total_act_power"] == pytest.approx(phases, abs=0.2)
        assert 200 < status["a_voltage"] < 250
    for _, data in emdata:
        assert data["total_act"] == pytest.approx(
            sum(data[f"{p}_total_act_energy"] for p in "abc"), abs=0.05)
        assert data["total_act_ret"] == 0
    # counter increments ≈ ∫ power dt between the frames' own timestamps
    meter = next(m for m in run.meters if m.decoder == "shelly-gen2")
    (t0, first), (t1, last) = emdata[0], emdata[-1]
    expected = riemann_wh(meter.household, int(round(t0 * 1000)), int(round(t1 * 1000)))
    assert t1 - t0 > 600
    assert last["total_act"] - first["total_act"] == pytest.approx(expected, rel=0.03, abs=1.0)
    status = json.loads(recorder.of(f"{community.gen2}/status/em:0")[-1])
    assert status["id"] == 0 and "total_act_power" in status


def test_tasmota_local_time_and_kwh(run: Simulator, community: SimCommunity,
                                    recorder: Recorder) -> None:
    sensors = [json.loads(p) for p in recorder.of(f"tele/{community.tasmota}/SENSOR")]
    assert len(sensors) >= 5
    madrid = ZoneInfo("Europe/Madrid")
    stamps = []
    for s in sensors:
        local = datetime.fromisoformat(s["Time"])
        assert local.tzinfo is None  # Tasmota sends local time without an offset
        stamps.append(int(local.replace(tzinfo=madrid).timestamp() * 1000))
        energy = s["ENERGY"]
        assert {"Total", "Today", "Yesterday", "Power", "Voltage", "Current"} <= set(energy)
        assert 200 < energy["Voltage"] < 250
    assert START_MS - 1000 <= stamps[0] and stamps[-1] <= run.clock.now_ms()
    totals = [s["ENERGY"]["Total"] for s in sensors]
    meter = next(m for m in run.meters if m.decoder == "tasmota")
    expected_kwh = riemann_wh(meter.household, stamps[0], stamps[-1]) / 1000
    # Total is kWh with 3 decimals, Time whole seconds
    assert totals[-1] - totals[0] == pytest.approx(expected_kwh, rel=0.04, abs=0.003)
    assert (sensors[-1]["ENERGY"]["Today"] - sensors[0]["ENERGY"]["Today"]
            == pytest.approx(totals[-1] - totals[0], abs=0.002))


def test_emonhub_plain_numbers(run: Simulator, community: SimCommunity,
                               recorder: Recorder) -> None:
    powers = [float(p) for p in recorder.of(f"emon/{community.emon}/P1")]
    energies = [float(p) for p in recorder.of(f"emon/{community.emon}/E1")]
    volts = [float(p) for p in recorder.of(f"emon/{community.emon}/vrms")]
    assert len(powers) >= 5 and len(energies) == len(powers) == len(volts)
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert all(200 < v < 250 for v in volts)


def test_publication_timestamps_follow_the_simulated_clock(run: Simulator, community: SimCommunity,
                                                           recorder: Recorder) -> None:
    frames = [json.loads(p) for p in recorder.of(f"{community.gen2}/events/rpc")]
    ts = sorted({f["params"]["ts"] for f in frames})
    # 600× for ~3 s real: about 30 simulated minutes, published no faster than every 0.2 s real
    assert ts[-1] - ts[0] > 15 * 60
    gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
    assert min(gaps) >= 0.2 * 600 * 0.9
